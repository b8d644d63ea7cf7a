"""wayview.auth.audit: recording actions in the audit log (issue #17).

Every change an owner, an organization admin, a moderator or an operator makes to stored data
or to who may do what is one `AuditEntry` in the store: who (`actor_id`; None for an operator
at the command line), what (`action`), to which target, when, and the facts that make the entry
useful later (counts, old and new values, a reason). Tokens, passwords and other secrets are
never put in `details`.
"""

from __future__ import annotations

import logging

from wayview.model.entities import AuditEntry
from wayview.store.base import Store

log = logging.getLogger("wayview.audit")


async def audit(store: Store, action: str, *, actor_id: int | None, target_kind: str,
                target_id: object, organization_id: int | None = None,
                **details: object) -> AuditEntry:
    """Append one entry to the audit log (and say it in the log at INFO)."""
    entry = await store.record_audit(AuditEntry(
        action=action, actor_id=actor_id, target_kind=target_kind, target_id=str(target_id),
        organization_id=organization_id, details=dict(details)))
    log.info("audit #%d: %s by %s on %s %s", entry.id, action,
             "operator" if actor_id is None else f"user {actor_id}", target_kind, target_id)
    return entry
