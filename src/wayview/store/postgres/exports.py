"""wayview.store.postgres.exports: the PostgreSQL implementation of ExportsStore.

`create_export` locks the user's row (`SELECT … FOR UPDATE`) in its transaction, so two
requests of one user at once are serialised and cannot both pass the limit of active exports.
"""

from __future__ import annotations

import time
from typing import Any

from wayview.model.entities import Export
from wayview.store.postgres.connection import Queries

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


class ExportsMixin(Queries):
    """ExportsStore on PostgreSQL; `self.db` is the store's Database."""

    async def create_export(self, user_id: int, *, max_active: int) -> Export | None:
        """Insert a queued export unless the user has `max_active` queued or running."""
        async with self.db.transaction() as conn:
            await conn.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (user_id,))
            cur = await conn.execute(
                "SELECT COUNT(*) FROM exports WHERE user_id = %s AND state IN"
                " ('queued', 'running')", (user_id,))
            row = await cur.fetchone()
            if row is not None and row[0] >= max_active:
                return None
            now = _now_ms()
            cur = await conn.execute(
                f"INSERT INTO exports (user_id, created_at_ms, updated_at_ms)"
                f" VALUES (%s, %s, %s) RETURNING {_COLUMNS}", (user_id, now, now))
            created = await cur.fetchone()
            assert created is not None
            return _export_from_row(created)

    async def get_export(self, export_id: int) -> Export | None:
        """One export by id."""
        row = await self._one(f"SELECT {_COLUMNS} FROM exports WHERE id = %s", (export_id,))
        return _export_from_row(row) if row else None

    async def list_exports(self, user_id: int, *, limit: int = 20) -> list[Export]:
        """A user's exports, newest first."""
        rows = await self._all(
            f"SELECT {_COLUMNS} FROM exports WHERE user_id = %s ORDER BY id DESC LIMIT %s",
            (user_id, limit))
        return [_export_from_row(r) for r in rows]

    async def start_export(self, export_id: int, total: int) -> bool:
        """Queued or running → running from the start."""
        return await self._run(
            "UPDATE exports SET state = 'running', progress = 0, total = %s, error = NULL,"
            " updated_at_ms = %s WHERE id = %s AND state IN ('queued', 'running')",
            (total, _now_ms(), export_id)) == 1

    async def set_export_progress(self, export_id: int, progress: int, total: int) -> None:
        """Progress of a running export."""
        await self._run(
            "UPDATE exports SET progress = %s, total = %s, updated_at_ms = %s"
            " WHERE id = %s AND state = 'running'", (progress, total, _now_ms(), export_id))

    async def finish_export(self, export_id: int, *, blob_key: str, size_bytes: int,
                            expires_at_ms: int) -> bool:
        """Running → done."""
        now = _now_ms()
        return await self._run(
            "UPDATE exports SET state = 'done', progress = total, blob_key = %s,"
            " size_bytes = %s, finished_at_ms = %s, expires_at_ms = %s, updated_at_ms = %s"
            " WHERE id = %s AND state = 'running'",
            (blob_key, size_bytes, now, expires_at_ms, now, export_id)) == 1

    async def fail_export(self, export_id: int, error: str) -> bool:
        """Queued or running → failed."""
        now = _now_ms()
        return await self._run(
            "UPDATE exports SET state = 'failed', error = %s, finished_at_ms = %s,"
            " updated_at_ms = %s WHERE id = %s AND state IN ('queued', 'running')",
            (error[:_MAX_ERROR_CHARS], now, now, export_id)) == 1

    async def exports_to_expire(self, now_ms: int, *, limit: int = 100) -> list[Export]:
        """Done exports past their expiry, oldest first."""
        rows = await self._all(
            f"SELECT {_COLUMNS} FROM exports WHERE state = 'done' AND expires_at_ms <= %s"
            " ORDER BY expires_at_ms, id LIMIT %s", (now_ms, limit))
        return [_export_from_row(r) for r in rows]

    async def expire_export(self, export_id: int) -> bool:
        """Done → expired."""
        return await self._run(
            "UPDATE exports SET state = 'expired', updated_at_ms = %s"
            " WHERE id = %s AND state = 'done'", (_now_ms(), export_id)) == 1
