"""wayview.store.sqlite.exports: the SQLite implementation of ExportsStore.

Every write runs in the store's single writer (`Database.write`), so the limit check and the
insert of `create_export` are one atomic step, also across processes sharing the file.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from wayview.model.entities import Export
from wayview.store.sqlite.connection import Database

_COLUMNS = ("id, user_id, state, progress, total, size_bytes, blob_key, error, created_at_ms,"
            " updated_at_ms, finished_at_ms, expires_at_ms")
#: Longest error text kept per export.
_MAX_ERROR_CHARS = 2000


def _export_from_row(r: tuple[Any, ...]) -> Export:
    return Export(id=r[0], user_id=r[1], state=r[2], progress=r[3], total=r[4],
                  size_bytes=r[5], blob_key=r[6], error=r[7], created_at_ms=r[8],
                  updated_at_ms=r[9], finished_at_ms=r[10], expires_at_ms=r[11])


def _now_ms() -> int:
    return int(time.time() * 1000)


class ExportsMixin:
    """ExportsStore on SQLite; `self.db` is the store's Database."""

    db: Database

    async def create_export(self, user_id: int, *, max_active: int) -> Export | None:
        """Insert a queued export unless the user has `max_active` queued or running."""

        def run(conn: sqlite3.Connection) -> Export | None:
            (active,) = conn.execute(
                "SELECT COUNT(*) FROM exports WHERE user_id = ? AND state IN"
                " ('queued', 'running')", (user_id,)).fetchone()
            if active >= max_active:
                return None
            now = _now_ms()
            cur = conn.execute(
                "INSERT INTO exports (user_id, created_at_ms, updated_at_ms) VALUES (?, ?, ?)",
                (user_id, now, now))
            row = conn.execute(f"SELECT {_COLUMNS} FROM exports WHERE id = ?",
                               (cur.lastrowid,)).fetchone()
            return _export_from_row(row)

        return await self.db.write(run)

    async def get_export(self, export_id: int) -> Export | None:
        """One export by id."""
        row = await self.db.read(lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM exports WHERE id = ?", (export_id,)).fetchone())
        return _export_from_row(row) if row else None

    async def list_exports(self, user_id: int, *, limit: int = 20) -> list[Export]:
        """A user's exports, newest first."""
        rows = await self.db.read(lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM exports WHERE user_id = ? ORDER BY id DESC LIMIT ?",
            (user_id, limit)).fetchall())
        return [_export_from_row(r) for r in rows]

    async def _export_update(self, sql: str, params: tuple[Any, ...]) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, params).rowcount == 1

        return await self.db.write(run)

    async def start_export(self, export_id: int, total: int) -> bool:
        """Queued or running → running from the start."""
        return await self._export_update(
            "UPDATE exports SET state = 'running', progress = 0, total = ?, error = NULL,"
            " updated_at_ms = ? WHERE id = ? AND state IN ('queued', 'running')",
            (total, _now_ms(), export_id))

    async def set_export_progress(self, export_id: int, progress: int, total: int) -> None:
        """Progress of a running export."""
        await self._export_update(
            "UPDATE exports SET progress = ?, total = ?, updated_at_ms = ?"
            " WHERE id = ? AND state = 'running'", (progress, total, _now_ms(), export_id))

    async def finish_export(self, export_id: int, *, blob_key: str, size_bytes: int,
                            expires_at_ms: int) -> bool:
        """Running → done."""
        now = _now_ms()
        return await self._export_update(
            "UPDATE exports SET state = 'done', progress = total, blob_key = ?, size_bytes = ?,"
            " finished_at_ms = ?, expires_at_ms = ?, updated_at_ms = ?"
            " WHERE id = ? AND state = 'running'",
            (blob_key, size_bytes, now, expires_at_ms, now, export_id))

    async def fail_export(self, export_id: int, error: str) -> bool:
        """Queued or running → failed."""
        now = _now_ms()
        return await self._export_update(
            "UPDATE exports SET state = 'failed', error = ?, finished_at_ms = ?,"
            " updated_at_ms = ? WHERE id = ? AND state IN ('queued', 'running')",
            (error[:_MAX_ERROR_CHARS], now, now, export_id))

    async def exports_to_expire(self, now_ms: int, *, limit: int = 100) -> list[Export]:
        """Done exports past their expiry, oldest first."""
        rows = await self.db.read(lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM exports WHERE state = 'done' AND expires_at_ms <= ?"
            " ORDER BY expires_at_ms, id LIMIT ?", (now_ms, limit)).fetchall())
        return [_export_from_row(r) for r in rows]

    async def expire_export(self, export_id: int) -> bool:
        """Done → expired."""
        return await self._export_update(
            "UPDATE exports SET state = 'expired', updated_at_ms = ?"
            " WHERE id = ? AND state = 'done'", (_now_ms(), export_id))
