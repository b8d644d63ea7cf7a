"""wayview.store.parts.governance: instance roles, organization memberships, the audit log
and image reports (Store protocol part, issue #17)."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Protocol

from wayview.model.entities import AuditEntry, HiddenImage, Membership, Report


class GovernanceStore(Protocol):
    """Who may do what, what they did, and what users reported."""

    # -- instance roles ---------------------------------------------------------------------
    async def set_user_role(self, user_id: int, role: str | None) -> bool:
        """Give a user an instance role ("admin", "moderator") or take it (None); False if
        the user does not exist."""

    async def users_with_roles(self) -> list[tuple[int, str, str]]:
        """(user id, username, role) of every user holding an instance role."""

    # -- organization memberships -------------------------------------------------------------
    async def save_membership(self, membership: Membership) -> Membership:
        """Insert or replace a user's membership of an organization (role, status, inviter);
        the stored row, with `created_at_ms` kept from an earlier row."""

    async def get_membership(self, organization_id: int, user_id: int) -> Membership | None:
        """A user's membership (active or invited) of an organization."""

    async def remove_membership(self, organization_id: int, user_id: int) -> bool:
        """End a membership or withdraw an invitation; False if there was none."""

    async def organization_members(self, organization_id: int) -> list[Membership]:
        """Every membership of an organization (invitations included), with usernames,
        admins first, then by username."""

    async def memberships_of(self, user_id: int) -> list[Membership]:
        """Every organization a user belongs to or is invited to, oldest first."""

    async def get_organization_by_slug(self, slug: str) -> int | None:
        """The id of an organization by slug (case-insensitive)."""

    # -- audit log -----------------------------------------------------------------------------
    async def record_audit(self, entry: AuditEntry) -> AuditEntry:
        """Append an entry (its id and time are assigned here); the stored entry."""

    async def audit_entries(self, *, actor_id: int | None = None,
                            target: tuple[str, str] | None = None,
                            organization_ids: tuple[int, ...] | None = None,
                            before_id: int | None = None, limit: int = 100
                            ) -> list[AuditEntry]:
        """Entries newest first, filtered by actor, by (kind, id) target, or by organization;
        `before_id` pages on."""

    # -- reports -------------------------------------------------------------------------------
    async def create_report(self, report: Report) -> Report:
        """Store a report (its id and time assigned here). A user's second open report of the
        same image replaces the reason and comment of the first instead."""

    async def get_report(self, report_id: int) -> Report | None:
        """A report by id."""

    async def list_reports(self, *, status: str | None = "open",
                           organization_ids: tuple[int, ...] | None = None,
                           image_id: int | None = None, before_id: int | None = None,
                           limit: int = 100) -> list[Report]:
        """Reports newest first; `organization_ids` limits them to images of those
        organizations (an organization admin's queue)."""

    async def resolve_reports(self, image_ids: Seq[int], *, resolver_id: int | None,
                              resolution: str, report_id: int | None = None) -> list[Report]:
        """Resolve one open report (`report_id`, of one of `image_ids`) or every open report
        of some images (at most a few hundred per call: one statement); the reports
        resolved, by id."""

    # -- hidden images ---------------------------------------------------------------------------
    async def set_hidden(self, image_ids: Seq[int], hidden: bool, *, by: int | None = None,
                         reason: str = "") -> list[int]:
        """Hide images (or show them again), in one transaction: a hidden image keeps its
        rows, detections and sequence, but leaves both tile indexes (the lines and overview
        cells of its sequence are rebuilt without it, and the epochs of every tile that showed
        it are bumped); showing it again puts it back. The ids whose state changed (unknown
        ids are ignored)."""

    async def hidden_among(self, image_ids: Seq[int]) -> set[int]:
        """Which of these images are hidden. Called for every Graph answer holding images."""

    async def list_hidden(self, *, organization_ids: tuple[int, ...] | None = None,
                          limit: int = 200) -> list[HiddenImage]:
        """Hidden images, most recently hidden first; `organization_ids` limits them to
        those organizations' images."""

    # -- accounts -----------------------------------------------------------------------------
    async def delete_user(self, user_id: int) -> list[str] | None:
        """Delete an account, in one transaction: its tokens, sessions, authorization codes,
        memberships and upload sessions go with the row and its node id (it then answers
        like an id that never existed); the apps it owns are deleted as `delete_app` does
        (their tokens, other users' included, revoked). The hashes of every token revoked or
        deleted (for the callers' caches); None if there is no such user. Raises Conflict
        while the user still has sequences (delete their images first). Audit entries and
        reports naming the user stay."""
