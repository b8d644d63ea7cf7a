"""wayview.store.postgres.governance: the PostgreSQL implementation of GovernanceStore."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence as Seq

from psycopg.types.json import Jsonb

from wayview.errors import Conflict
from wayview.model.entities import AuditEntry, HiddenImage, Membership, Report
from wayview.store.deletion import plan_rebuild
from wayview.store.governance_columns import (
    AUDIT_COLUMNS,
    MEMBERSHIP_COLUMNS,
    MEMBERSHIP_FROM,
    REPORT_COLUMNS,
    audit_from_row,
    membership_from_row,
    report_from_row,
    where,
)
from wayview.store.postgres.connection import Queries
from wayview.store.postgres.delete import lock_plan, write_plan
from wayview.store.postgres.edits import lock_sequences, read_plan_rows


def _now_ms() -> int:
    return int(time.time() * 1000)


_HIDDEN_COLUMNS = ("h.image_id, h.hidden_at_ms, h.hidden_by, h.reason, i.creator_id,"
                   " i.organization_id")


class GovernanceMixin(Queries):
    """GovernanceStore on PostgreSQL; `self.db` is the store's Database."""

    # -- instance roles ---------------------------------------------------------------------
    async def set_user_role(self, user_id: int, role: str | None) -> bool:
        """Set or clear a user's instance role."""
        return await self._run("UPDATE users SET role = %s WHERE id = %s", (role, user_id)) > 0

    async def users_with_roles(self) -> list[tuple[int, str, str]]:
        """Users holding an instance role, by username."""
        rows = await self._all("SELECT id, username, role FROM users WHERE role IS NOT NULL"
                               " ORDER BY lower(username)")
        return [(r[0], r[1], r[2]) for r in rows]

    # -- organization memberships -------------------------------------------------------------
    async def save_membership(self, membership: Membership) -> Membership:
        """Upsert a membership."""
        m = membership
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO organization_members (organization_id, user_id, role, status,"
                " invited_by, created_at_ms) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (organization_id, user_id) DO UPDATE SET role = excluded.role,"
                " status = excluded.status, invited_by = excluded.invited_by",
                (m.organization_id, m.user_id, m.role, m.status, m.invited_by, _now_ms()))
            cur = await conn.execute(
                f"SELECT {MEMBERSHIP_COLUMNS} FROM {MEMBERSHIP_FROM}"
                " WHERE m.organization_id = %s AND m.user_id = %s",
                (m.organization_id, m.user_id))
            row = await cur.fetchone()
        assert row is not None
        return membership_from_row(row)

    async def get_membership(self, organization_id: int, user_id: int) -> Membership | None:
        """One membership."""
        row = await self._one(
            f"SELECT {MEMBERSHIP_COLUMNS} FROM {MEMBERSHIP_FROM}"
            " WHERE m.organization_id = %s AND m.user_id = %s", (organization_id, user_id))
        return membership_from_row(row) if row else None

    async def remove_membership(self, organization_id: int, user_id: int) -> bool:
        """Delete a membership row."""
        return await self._run(
            "DELETE FROM organization_members WHERE organization_id = %s AND user_id = %s",
            (organization_id, user_id)) > 0

    async def organization_members(self, organization_id: int) -> list[Membership]:
        """An organization's memberships, admins first."""
        rows = await self._all(
            f"SELECT {MEMBERSHIP_COLUMNS} FROM {MEMBERSHIP_FROM} WHERE m.organization_id = %s"
            " ORDER BY m.role = 'admin' DESC, lower(u.username)", (organization_id,))
        return [membership_from_row(r) for r in rows]

    async def memberships_of(self, user_id: int) -> list[Membership]:
        """A user's memberships, oldest first."""
        rows = await self._all(
            f"SELECT {MEMBERSHIP_COLUMNS} FROM {MEMBERSHIP_FROM} WHERE m.user_id = %s"
            " ORDER BY m.created_at_ms, m.organization_id", (user_id,))
        return [membership_from_row(r) for r in rows]

    async def get_organization_by_slug(self, slug: str) -> int | None:
        """An organization id by slug."""
        row = await self._one("SELECT id FROM organizations WHERE lower(slug) = lower(%s)",
                              (slug,))
        return int(row[0]) if row else None

    # -- audit log -----------------------------------------------------------------------------
    async def record_audit(self, entry: AuditEntry) -> AuditEntry:
        """Append an audit entry."""
        e = entry
        details = json.loads(json.dumps(e.details, default=str))
        row = await self._one(
            "INSERT INTO audit_log (at_ms, actor_id, actor_username, action, target_kind,"
            " target_id, organization_id, details) VALUES (%s, %s,"
            " (SELECT username FROM users WHERE id = %s), %s, %s, %s, %s, %s)"
            f" RETURNING {AUDIT_COLUMNS}",
            (_now_ms(), e.actor_id, e.actor_id, e.action, e.target_kind, e.target_id,
             e.organization_id, Jsonb(details)))
        assert row is not None
        return audit_from_row(row)

    async def audit_entries(self, *, actor_id: int | None = None,
                            target: tuple[str, str] | None = None,
                            organization_ids: tuple[int, ...] | None = None,
                            before_id: int | None = None, limit: int = 100
                            ) -> list[AuditEntry]:
        """Audit entries newest first."""
        equal = {"actor_id": actor_id, "target_kind": target[0] if target else None,
                 "target_id": target[1] if target else None}
        clause, params = where("%s", equal, {"organization_id": organization_ids}, before_id)
        rows = await self._all(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log{clause} ORDER BY id DESC LIMIT %s",
            (*params, limit))
        return [audit_from_row(r) for r in rows]

    # -- reports -------------------------------------------------------------------------------
    async def create_report(self, report: Report) -> Report:
        """Store a report, or update the reporter's open report of the same image."""
        r = report
        row = await self._one(
            "INSERT INTO reports (image_id, reporter_id, reason, comment, owner_id,"
            " organization_id, created_at_ms) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (image_id, reporter_id) WHERE status = 'open'"
            " DO UPDATE SET reason = excluded.reason, comment = excluded.comment"
            f" RETURNING {REPORT_COLUMNS}",
            (r.image_id, r.reporter_id, r.reason, r.comment, r.owner_id, r.organization_id,
             _now_ms()))
        assert row is not None
        return report_from_row(row)

    async def get_report(self, report_id: int) -> Report | None:
        """A report by id."""
        row = await self._one(f"SELECT {REPORT_COLUMNS} FROM reports WHERE id = %s",
                              (report_id,))
        return report_from_row(row) if row else None

    async def list_reports(self, *, status: str | None = "open",
                           organization_ids: tuple[int, ...] | None = None,
                           image_id: int | None = None, before_id: int | None = None,
                           limit: int = 100) -> list[Report]:
        """Reports newest first."""
        clause, params = where("%s", {"status": status, "image_id": image_id},
                               {"organization_id": organization_ids}, before_id)
        rows = await self._all(
            f"SELECT {REPORT_COLUMNS} FROM reports{clause} ORDER BY id DESC LIMIT %s",
            (*params, limit))
        return [report_from_row(r) for r in rows]

    async def resolve_reports(self, image_ids: Seq[int], *, resolver_id: int | None,
                              resolution: str, report_id: int | None = None) -> list[Report]:
        """Close open reports of an image."""
        clause, params = where("%s", {"status": "open", "id": report_id},
                               {"image_id": sorted(set(image_ids))}, None)
        rows = await self._all(
            f"UPDATE reports SET status = 'resolved', resolution = %s, resolver_id = %s,"
            f" resolved_at_ms = %s{clause} RETURNING {REPORT_COLUMNS}",
            (resolution, resolver_id, _now_ms(), *params))
        return sorted((report_from_row(r) for r in rows), key=lambda x: x.id)

    # -- hidden images ---------------------------------------------------------------------------
    async def set_hidden(self, image_ids: Seq[int], hidden: bool, *, by: int | None = None,
                         reason: str = "") -> list[int]:
        """Hide or show images; their sequences' tile rows rebuilt (locks in the order of
        `wayview.store.postgres.delete`)."""
        wanted = sorted(set(image_ids))
        if not wanted:
            return []
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT sequence_id FROM images WHERE id = ANY(%s)", (wanted,))
            sequences = sorted(str(r[0]) for r in await cur.fetchall())
            await lock_sequences(conn, sequences)
            if hidden:
                cur = await conn.execute(
                    "INSERT INTO hidden_images (image_id, hidden_at_ms, hidden_by, reason)"
                    " SELECT id, %s, %s, %s FROM images WHERE id = ANY(%s)"
                    " ON CONFLICT (image_id) DO NOTHING RETURNING image_id",
                    (_now_ms(), by, reason, wanted))
            else:
                cur = await conn.execute(
                    "DELETE FROM hidden_images WHERE image_id = ANY(%s) RETURNING image_id",
                    (wanted,))
            changed = sorted(int(r[0]) for r in await cur.fetchall())
            if changed:
                rows, old_lines = await read_plan_rows(conn, sequences)
                plan = plan_rebuild(rows, rows, old_lines)
                await lock_plan(conn, plan)
                await write_plan(conn, plan)
        return changed

    async def hidden_among(self, image_ids: Seq[int]) -> set[int]:
        """The hidden ones of these images."""
        wanted = sorted(set(image_ids))
        if not wanted:
            return set()
        rows = await self._all("SELECT image_id FROM hidden_images WHERE image_id = ANY(%s)",
                               (wanted,))
        return {int(r[0]) for r in rows}

    async def list_hidden(self, *, organization_ids: tuple[int, ...] | None = None,
                          limit: int = 200) -> list[HiddenImage]:
        """Hidden images, newest first."""
        clause, params = where("%s", {}, {"i.organization_id": organization_ids},
                               None)
        rows = await self._all(
            f"SELECT {_HIDDEN_COLUMNS} FROM hidden_images h JOIN images i ON i.id = h.image_id"
            f"{clause} ORDER BY h.hidden_at_ms DESC, h.image_id LIMIT %s", (*params, limit))
        return [HiddenImage(*r) for r in rows]

    # -- accounts -----------------------------------------------------------------------------
    async def delete_user(self, user_id: int) -> list[str] | None:
        """Delete an account and what hangs on it."""
        async with self.db.transaction() as conn:
            cur = await conn.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE",
                                     (user_id,))
            if await cur.fetchone() is None:
                return None
            cur = await conn.execute("SELECT 1 FROM sequences WHERE creator_id = %s LIMIT 1",
                                     (user_id,))
            if await cur.fetchone():
                raise Conflict("the user still has sequences: delete their images first")
            now = _now_ms()
            cur = await conn.execute(
                "SELECT token_hash FROM tokens WHERE user_id = %s OR app_id IN"
                " (SELECT id FROM apps WHERE owner_id = %s)", (user_id, user_id))
            hashes = [str(r[0]) for r in await cur.fetchall()]
            await conn.execute(
                "UPDATE tokens SET revoked_at_ms = %s WHERE revoked_at_ms IS NULL"
                " AND app_id IN (SELECT id FROM apps WHERE owner_id = %s)", (now, user_id))
            await conn.execute(
                "UPDATE apps SET deleted_at_ms = COALESCE(deleted_at_ms, %s), disabled = true,"
                " owner_id = NULL WHERE owner_id = %s", (now, user_id))
            await conn.execute("DELETE FROM users WHERE id = %s", (user_id,))
            await conn.execute("DELETE FROM nodes WHERE id = %s", (user_id,))
        return hashes
