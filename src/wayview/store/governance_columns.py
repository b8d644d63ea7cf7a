"""wayview.store.governance_columns: the columns and row makers both backends' governance
parts share (memberships, audit entries, reports)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wayview.model.entities import AuditEntry, Membership, Report

MEMBERSHIP_COLUMNS = (
    "m.organization_id, m.user_id, m.role, m.status, m.invited_by, m.created_at_ms, u.username"
)
MEMBERSHIP_FROM = "organization_members m JOIN users u ON u.id = m.user_id"
AUDIT_COLUMNS = (
    "id, at_ms, actor_id, actor_username, action, target_kind, target_id, organization_id,"
    " details"
)
REPORT_COLUMNS = (
    "id, image_id, reporter_id, reason, comment, owner_id, organization_id, status, resolution,"
    " resolver_id, created_at_ms, resolved_at_ms"
)


def membership_from_row(r: tuple[Any, ...]) -> Membership:
    """A `MEMBERSHIP_COLUMNS` row as a Membership."""
    return Membership(organization_id=r[0], user_id=r[1], role=r[2], status=r[3],
                      invited_by=r[4], created_at_ms=r[5], username=r[6])


def audit_from_row(r: tuple[Any, ...]) -> AuditEntry:
    """An `AUDIT_COLUMNS` row as an AuditEntry (details: JSON text or an already decoded
    object)."""
    details = json.loads(r[8]) if isinstance(r[8], str) else dict(r[8] or {})
    return AuditEntry(id=r[0], at_ms=r[1], actor_id=r[2], actor_username=r[3], action=r[4],
                      target_kind=r[5], target_id=r[6], organization_id=r[7], details=details)


def report_from_row(r: tuple[Any, ...]) -> Report:
    """A `REPORT_COLUMNS` row as a Report."""
    return Report(id=r[0], image_id=r[1], reporter_id=r[2], reason=r[3], comment=r[4],
                  owner_id=r[5], organization_id=r[6], status=r[7], resolution=r[8],
                  resolver_id=r[9], created_at_ms=r[10], resolved_at_ms=r[11])


def where(mark: str, equal: dict[str, Any], within: dict[str, Sequence[int] | None],
          before_id: int | None) -> tuple[str, list[Any]]:
    """The WHERE clause (with `mark` placeholders) and parameters of an audit-log, reports or
    hidden-images query: each `equal` column (None values skipped) equals its value, each
    `within` column is one of its values (None skipped; an empty list matches nothing), `id`
    below `before_id`. Column names are the callers' constants, never input.

    >>> where("?", {"actor_id": 7, "status": None}, {"organization_id": None}, 90)
    (' WHERE actor_id = ? AND id < ?', [7, 90])
    >>> where("%s", {"status": "open"}, {"organization_id": ()}, None)
    (' WHERE status = %s AND 1 = 0', ['open'])
    >>> where("?", {}, {"image_id": [3, 4]}, None)
    (' WHERE image_id IN (?,?)', [3, 4])
    """
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in equal.items():
        if value is not None:
            clauses.append(f"{column} = {mark}")
            params.append(value)
    for column, values in within.items():
        if values is None:
            continue
        if not values:
            clauses.append("1 = 0")
        else:
            clauses.append(f"{column} IN ({','.join([mark] * len(values))})")
            params += list(values)
    if before_id is not None:
        clauses.append(f"id < {mark}")
        params.append(before_id)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
