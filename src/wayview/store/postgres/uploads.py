"""wayview.store.postgres.uploads: the PostgreSQL implementation of UploadsStore.

Every method is one statement or one transaction, so an upload started through one process can
be resumed or finished through another: the rows are the only state.
"""

from __future__ import annotations

import time
from collections.abc import Sequence as Seq
from typing import Any

from psycopg.types.json import Jsonb

from wayview.ids import new_id
from wayview.model.entities import UploadFinish, UploadSession
from wayview.store.columns import (
    UPLOAD_FINISH_SQL,
    UPLOAD_SESSION_COLUMNS,
    upload_session_from_row,
)
from wayview.store.postgres.connection import Queries


def _now_ms() -> int:
    return int(time.time() * 1000)


def _finish(r: tuple[Any, ...]) -> UploadFinish:
    return UploadFinish(cluster_id=r[0], session_id=r[1], handle=r[2], user_id=r[3],
                        file_type=r[4], organization_id=r[5], job_id=r[6], result=r[7],
                        created_at_ms=r[8])


class UploadsMixin(Queries):
    """UploadsStore on PostgreSQL; `self.db` is the store's Database."""

    async def get_upload_session(self, user_id: int, session_key: str) -> UploadSession | None:
        """A user's session by key."""
        row = await self._one(
            f"SELECT {UPLOAD_SESSION_COLUMNS} FROM upload_sessions"
            " WHERE user_id = %s AND session_key = %s", (user_id, session_key))
        return upload_session_from_row(row) if row else None

    async def save_upload_session(
        self, user_id: int, session_key: str, *, handle: str, size: int, expires_at_ms: int
    ) -> UploadSession:
        """Insert or update a session row; a stored handle is never replaced."""
        now = _now_ms()
        row = await self._one(
            "INSERT INTO upload_sessions (user_id, session_key, handle, size, created_at_ms,"
            " updated_at_ms, expires_at_ms) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (user_id, session_key) DO UPDATE SET size = excluded.size,"
            " updated_at_ms = excluded.updated_at_ms,"
            " expires_at_ms = GREATEST(upload_sessions.expires_at_ms, excluded.expires_at_ms)"
            f" RETURNING {UPLOAD_SESSION_COLUMNS}",
            (user_id, session_key, handle, size, now, now, expires_at_ms))
        assert row is not None  # INSERT … ON CONFLICT DO UPDATE always returns the row
        return upload_session_from_row(row)

    async def upload_sessions_by_handle(
        self, user_id: int, handles: Seq[str]
    ) -> dict[str, UploadSession]:
        """The caller's sessions among `handles`."""
        unique = list(dict.fromkeys(handles))
        if not unique:
            return {}
        rows = await self._all(
            f"SELECT {UPLOAD_SESSION_COLUMNS} FROM upload_sessions"
            " WHERE user_id = %s AND handle = ANY(%s)", (user_id, unique))
        return {r[3]: upload_session_from_row(r) for r in rows}

    async def user_upload_bytes(self, user_id: int) -> int:
        """Sum of the sizes of a user's sessions."""
        row = await self._one(
            "SELECT COALESCE(SUM(size), 0) FROM upload_sessions WHERE user_id = %s", (user_id,))
        return int(row[0]) if row else 0

    async def extend_upload_sessions(self, session_ids: Seq[int], expires_at_ms: int) -> None:
        """Push expiries forward (never back)."""
        ids = list(session_ids)
        if ids:
            await self._run(
                "UPDATE upload_sessions SET expires_at_ms = GREATEST(expires_at_ms, %s)"
                " WHERE id = ANY(%s)", (expires_at_ms, ids))

    async def finish_upload_session(
        self, session: UploadSession, *, file_type: str, organization_id: int | None
    ) -> UploadFinish:
        """Insert the finish once, its id minted in the shared id space; later calls return
        the first one. Of two concurrent first calls one insert wins; the other gives its
        minted id back and returns the winner's finish."""
        sql = f"{UPLOAD_FINISH_SQL} WHERE f.session_id = %s"
        async with self.db.transaction() as conn:
            cur = await conn.execute(sql, (session.id,))
            row = await cur.fetchone()
            if row is not None:
                return _finish(row)
            while True:
                cur = await conn.execute(
                    "INSERT INTO nodes (id, kind) VALUES (%s, 'upload_cluster')"
                    " ON CONFLICT (id) DO NOTHING RETURNING id", (new_id(),))
                minted = await cur.fetchone()
                if minted is not None:
                    break
            cur = await conn.execute(
                "INSERT INTO upload_finishes (id, session_id, user_id, file_type,"
                " organization_id, created_at_ms) OVERRIDING SYSTEM VALUE"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (session_id) DO NOTHING"
                " RETURNING id",
                (minted[0], session.id, session.user_id, file_type, organization_id, _now_ms()))
            if await cur.fetchone() is None:
                await conn.execute("DELETE FROM nodes WHERE id = %s", (minted[0],))
            cur = await conn.execute(sql, (session.id,))
            row = await cur.fetchone()
        assert row is not None
        return _finish(row)

    async def set_upload_finish_job(self, cluster_id: int, job_id: int) -> None:
        """Record the queued job of a finish."""
        await self._run("UPDATE upload_finishes SET job_id = %s WHERE id = %s",
                        (job_id, cluster_id))

    async def get_upload_finish(self, cluster_id: int) -> UploadFinish | None:
        """A finish by cluster id."""
        row = await self._one(f"{UPLOAD_FINISH_SQL} WHERE f.id = %s", (cluster_id,))
        return _finish(row) if row else None

    async def set_upload_result(self, cluster_id: int, result: dict[str, object]) -> None:
        """Store the job outcome as JSON."""
        await self._run("UPDATE upload_finishes SET result = %s WHERE id = %s",
                        (Jsonb(result), cluster_id))

    async def expired_upload_sessions(self, now_ms: int, limit: int) -> list[UploadSession]:
        """Expired sessions, oldest expiry first."""
        rows = await self._all(
            f"SELECT {UPLOAD_SESSION_COLUMNS} FROM upload_sessions WHERE expires_at_ms < %s"
            " ORDER BY expires_at_ms, id LIMIT %s", (now_ms, limit))
        return [upload_session_from_row(r) for r in rows]

    async def delete_upload_session(self, session_id: int, *, expired_before_ms: int) -> bool:
        """Delete a session that is still expired (its finish goes with it)."""
        deleted = await self._run(
            "DELETE FROM upload_sessions WHERE id = %s AND expires_at_ms < %s",
            (session_id, expired_before_ms))
        return deleted > 0
