"""wayview.store.sqlite.governance: the SQLite implementation of GovernanceStore."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence as Seq

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
from wayview.store.sqlite.connection import Database
from wayview.store.sqlite.delete import sequences_holding, write_plan
from wayview.store.sqlite.edits import read_plan_rows


def _now_ms() -> int:
    return int(time.time() * 1000)


_BATCH = 900
_HIDDEN_COLUMNS = ("h.image_id, h.hidden_at_ms, h.hidden_by, h.reason, i.creator_id,"
                   " i.organization_id")


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _set_hidden(conn: sqlite3.Connection, wanted: list[int], hidden: bool, by: int | None,
                reason: str) -> list[int]:
    changed: list[int] = []
    now = _now_ms()
    for start in range(0, len(wanted), _BATCH):
        chunk = wanted[start:start + _BATCH]
        marks = _marks(len(chunk))
        if hidden:
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM images WHERE id IN ({marks})"
                " AND id NOT IN (SELECT image_id FROM hidden_images)", chunk)]
            conn.executemany("INSERT INTO hidden_images VALUES (?, ?, ?, ?)",
                             [(i, now, by, reason) for i in ids])
        else:
            ids = [r[0] for r in conn.execute(
                f"SELECT image_id FROM hidden_images WHERE image_id IN ({marks})", chunk)]
            conn.execute(f"DELETE FROM hidden_images WHERE image_id IN ({marks})", chunk)
        changed += ids
    sequences = sequences_holding(conn, changed)
    if sequences:
        rows, old_lines = read_plan_rows(conn, sequences)
        write_plan(conn, plan_rebuild(rows, rows, old_lines))
    return sorted(changed)


class GovernanceMixin:
    """GovernanceStore on SQLite; `self.db` is the store's Database."""

    db: Database

    # -- instance roles ---------------------------------------------------------------------
    async def set_user_role(self, user_id: int, role: str | None) -> bool:
        """Set or clear a user's instance role."""
        return await self.db.write(lambda c: c.execute(
            "UPDATE users SET role = ? WHERE id = ?", (role, user_id)).rowcount > 0)

    async def users_with_roles(self) -> list[tuple[int, str, str]]:
        """Users holding an instance role, by username."""
        rows = await self.db.read(lambda c: c.execute(
            "SELECT id, username, role FROM users WHERE role IS NOT NULL"
            " ORDER BY username COLLATE NOCASE").fetchall())
        return [(r[0], r[1], r[2]) for r in rows]

    # -- organization memberships -------------------------------------------------------------
    async def save_membership(self, membership: Membership) -> Membership:
        """Upsert a membership."""
        m = membership

        def run(conn: sqlite3.Connection) -> Membership:
            conn.execute(
                "INSERT INTO organization_members (organization_id, user_id, role, status,"
                " invited_by, created_at_ms) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (organization_id, user_id) DO UPDATE SET role = excluded.role,"
                " status = excluded.status, invited_by = excluded.invited_by",
                (m.organization_id, m.user_id, m.role, m.status, m.invited_by, _now_ms()))
            row = conn.execute(
                f"SELECT {MEMBERSHIP_COLUMNS} FROM {MEMBERSHIP_FROM}"
                " WHERE m.organization_id = ? AND m.user_id = ?",
                (m.organization_id, m.user_id)).fetchone()
            return membership_from_row(row)

        return await self.db.write(run)

    async def get_membership(self, organization_id: int, user_id: int) -> Membership | None:
        """One membership."""
        row = await self.db.read(lambda c: c.execute(
            f"SELECT {MEMBERSHIP_COLUMNS} FROM {MEMBERSHIP_FROM}"
            " WHERE m.organization_id = ? AND m.user_id = ?",
            (organization_id, user_id)).fetchone())
        return membership_from_row(row) if row else None

    async def remove_membership(self, organization_id: int, user_id: int) -> bool:
        """Delete a membership row."""
        return await self.db.write(lambda c: c.execute(
            "DELETE FROM organization_members WHERE organization_id = ? AND user_id = ?",
            (organization_id, user_id)).rowcount > 0)

    async def organization_members(self, organization_id: int) -> list[Membership]:
        """An organization's memberships, admins first."""
        rows = await self.db.read(lambda c: c.execute(
            f"SELECT {MEMBERSHIP_COLUMNS} FROM {MEMBERSHIP_FROM} WHERE m.organization_id = ?"
            " ORDER BY m.role = 'admin' DESC, u.username COLLATE NOCASE",
            (organization_id,)).fetchall())
        return [membership_from_row(r) for r in rows]

    async def memberships_of(self, user_id: int) -> list[Membership]:
        """A user's memberships, oldest first."""
        rows = await self.db.read(lambda c: c.execute(
            f"SELECT {MEMBERSHIP_COLUMNS} FROM {MEMBERSHIP_FROM} WHERE m.user_id = ?"
            " ORDER BY m.created_at_ms, m.organization_id", (user_id,)).fetchall())
        return [membership_from_row(r) for r in rows]

    async def get_organization_by_slug(self, slug: str) -> int | None:
        """An organization id by slug."""
        row = await self.db.read(lambda c: c.execute(
            "SELECT id FROM organizations WHERE slug = ? COLLATE NOCASE", (slug,)).fetchone())
        return int(row[0]) if row else None

    # -- audit log -----------------------------------------------------------------------------
    async def record_audit(self, entry: AuditEntry) -> AuditEntry:
        """Append an audit entry."""
        e = entry

        def run(conn: sqlite3.Connection) -> AuditEntry:
            name = None
            if e.actor_id is not None:
                found = conn.execute("SELECT username FROM users WHERE id = ?",
                                     (e.actor_id,)).fetchone()
                name = found[0] if found else None
            cur = conn.execute(
                "INSERT INTO audit_log (at_ms, actor_id, actor_username, action, target_kind,"
                " target_id, organization_id, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (_now_ms(), e.actor_id, name, e.action, e.target_kind, e.target_id,
                 e.organization_id, json.dumps(e.details, sort_keys=True, default=str)))
            row = conn.execute(f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id = ?",
                               (cur.lastrowid,)).fetchone()
            return audit_from_row(row)

        return await self.db.write(run)

    async def audit_entries(self, *, actor_id: int | None = None,
                            target: tuple[str, str] | None = None,
                            organization_ids: tuple[int, ...] | None = None,
                            before_id: int | None = None, limit: int = 100
                            ) -> list[AuditEntry]:
        """Audit entries newest first."""
        equal = {"actor_id": actor_id, "target_kind": target[0] if target else None,
                 "target_id": target[1] if target else None}
        clause, params = where("?", equal, {"organization_id": organization_ids}, before_id)
        rows = await self.db.read(lambda c: c.execute(
            f"SELECT {AUDIT_COLUMNS} FROM audit_log{clause} ORDER BY id DESC LIMIT ?",
            (*params, limit)).fetchall())
        return [audit_from_row(r) for r in rows]

    # -- reports -------------------------------------------------------------------------------
    async def create_report(self, report: Report) -> Report:
        """Store a report, or update the reporter's open report of the same image."""
        r = report

        def run(conn: sqlite3.Connection) -> Report:
            conn.execute(
                "INSERT INTO reports (image_id, reporter_id, reason, comment, owner_id,"
                " organization_id, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (image_id, reporter_id) WHERE status = 'open'"
                " DO UPDATE SET reason = excluded.reason, comment = excluded.comment",
                (r.image_id, r.reporter_id, r.reason, r.comment, r.owner_id,
                 r.organization_id, _now_ms()))
            row = conn.execute(
                f"SELECT {REPORT_COLUMNS} FROM reports WHERE image_id = ? AND reporter_id = ?"
                " AND status = 'open'", (r.image_id, r.reporter_id)).fetchone()
            return report_from_row(row)

        return await self.db.write(run)

    async def get_report(self, report_id: int) -> Report | None:
        """A report by id."""
        row = await self.db.read(lambda c: c.execute(
            f"SELECT {REPORT_COLUMNS} FROM reports WHERE id = ?", (report_id,)).fetchone())
        return report_from_row(row) if row else None

    async def list_reports(self, *, status: str | None = "open",
                           organization_ids: tuple[int, ...] | None = None,
                           image_id: int | None = None, before_id: int | None = None,
                           limit: int = 100) -> list[Report]:
        """Reports newest first."""
        clause, params = where("?", {"status": status, "image_id": image_id},
                               {"organization_id": organization_ids}, before_id)
        rows = await self.db.read(lambda c: c.execute(
            f"SELECT {REPORT_COLUMNS} FROM reports{clause} ORDER BY id DESC LIMIT ?",
            (*params, limit)).fetchall())
        return [report_from_row(r) for r in rows]

    async def resolve_reports(self, image_ids: Seq[int], *, resolver_id: int | None,
                              resolution: str, report_id: int | None = None) -> list[Report]:
        """Close open reports of an image."""

        def run(conn: sqlite3.Connection) -> list[Report]:
            clause, params = where("?", {"status": "open", "id": report_id},
                                   {"image_id": sorted(set(image_ids))}, None)
            rows = conn.execute(
                f"UPDATE reports SET status = 'resolved', resolution = ?, resolver_id = ?,"
                f" resolved_at_ms = ?{clause} RETURNING {REPORT_COLUMNS}",
                (resolution, resolver_id, _now_ms(), *params)).fetchall()
            return sorted((report_from_row(r) for r in rows), key=lambda x: x.id)

        return await self.db.write(run)

    # -- hidden images ---------------------------------------------------------------------------
    async def set_hidden(self, image_ids: Seq[int], hidden: bool, *, by: int | None = None,
                         reason: str = "") -> list[int]:
        """Hide or show images; their sequences' tile rows rebuilt."""
        wanted = sorted(set(image_ids))
        return await self.db.write(lambda c: _set_hidden(c, wanted, hidden, by, reason))

    async def hidden_among(self, image_ids: Seq[int]) -> set[int]:
        """The hidden ones of these images."""
        wanted = sorted(set(image_ids))
        if not wanted:
            return set()

        def run(conn: sqlite3.Connection) -> set[int]:
            found: set[int] = set()
            for start in range(0, len(wanted), _BATCH):
                chunk = wanted[start:start + _BATCH]
                found.update(r[0] for r in conn.execute(
                    f"SELECT image_id FROM hidden_images WHERE image_id IN"
                    f" ({_marks(len(chunk))})", chunk))
            return found

        return await self.db.read(run)

    async def list_hidden(self, *, organization_ids: tuple[int, ...] | None = None,
                          limit: int = 200) -> list[HiddenImage]:
        """Hidden images, newest first."""
        clause, params = where("?", {}, {"i.organization_id": organization_ids},
                               None)
        rows = await self.db.read(lambda c: c.execute(
            f"SELECT {_HIDDEN_COLUMNS} FROM hidden_images h JOIN images i ON i.id = h.image_id"
            f"{clause} ORDER BY h.hidden_at_ms DESC, h.image_id LIMIT ?",
            (*params, limit)).fetchall())
        return [HiddenImage(*r) for r in rows]

    # -- accounts -----------------------------------------------------------------------------
    async def delete_user(self, user_id: int) -> list[str] | None:
        """Delete an account and what hangs on it."""

        def run(conn: sqlite3.Connection) -> list[str] | None:
            if conn.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
                return None
            if conn.execute("SELECT 1 FROM sequences WHERE creator_id = ? LIMIT 1",
                            (user_id,)).fetchone():
                raise Conflict("the user still has sequences: delete their images first")
            now = _now_ms()
            hashes = [r[0] for r in conn.execute(
                "SELECT token_hash FROM tokens WHERE user_id = ? OR app_id IN"
                " (SELECT id FROM apps WHERE owner_id = ?)", (user_id, user_id))]
            conn.execute("UPDATE tokens SET revoked_at_ms = ? WHERE revoked_at_ms IS NULL"
                         " AND app_id IN (SELECT id FROM apps WHERE owner_id = ?)",
                         (now, user_id))
            conn.execute("UPDATE apps SET deleted_at_ms = COALESCE(deleted_at_ms, ?),"
                         " disabled = 1, owner_id = NULL WHERE owner_id = ?", (now, user_id))
            conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
            conn.execute("DELETE FROM nodes WHERE id = ?", (user_id,))
            return hashes

        return await self.db.write(run)
