"""wayview.store.sqlite.uploads: the SQLite implementation of UploadsStore."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence as Seq
from typing import Any

from wayview.ids import new_id
from wayview.model.entities import UploadFinish, UploadSession
from wayview.store.columns import (
    UPLOAD_FINISH_SQL,
    UPLOAD_SESSION_COLUMNS,
    upload_session_from_row,
)
from wayview.store.sqlite.connection import Database

# SQLite allows 32,766 host parameters; batch below that.
_BATCH = 900


def _now_ms() -> int:
    return int(time.time() * 1000)


def _finish(r: tuple[Any, ...]) -> UploadFinish:
    return UploadFinish(cluster_id=r[0], session_id=r[1], handle=r[2], user_id=r[3],
                        file_type=r[4], organization_id=r[5], job_id=r[6],
                        result=json.loads(r[7]) if r[7] else None, created_at_ms=r[8])


def _mint_cluster_id(conn: sqlite3.Connection) -> int:
    """A fresh id of the shared id space for a finish (spec §8.1: graph-style, not a counter)."""
    while True:
        candidate = new_id()
        cur = conn.execute("INSERT OR IGNORE INTO nodes (id, kind) VALUES (?, 'upload_cluster')",
                           (candidate,))
        if cur.rowcount:
            return candidate


class UploadsMixin:
    """UploadsStore on SQLite; `self.db` is the store's Database."""

    db: Database

    async def get_upload_session(self, user_id: int, session_key: str) -> UploadSession | None:
        """A user's session by key."""

        def run(conn: sqlite3.Connection) -> UploadSession | None:
            row = conn.execute(
                f"SELECT {UPLOAD_SESSION_COLUMNS} FROM upload_sessions"
                " WHERE user_id = ? AND session_key = ?", (user_id, session_key),
            ).fetchone()
            return upload_session_from_row(row) if row else None

        return await self.db.read(run)

    async def save_upload_session(
        self, user_id: int, session_key: str, *, handle: str, size: int, expires_at_ms: int
    ) -> UploadSession:
        """Insert or update a session row; a stored handle is never replaced."""

        def run(conn: sqlite3.Connection) -> UploadSession:
            now = _now_ms()
            conn.execute(
                "INSERT INTO upload_sessions (user_id, session_key, handle, size, created_at_ms,"
                " updated_at_ms, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, session_key) DO UPDATE SET size = excluded.size,"
                " updated_at_ms = excluded.updated_at_ms,"
                " expires_at_ms = MAX(expires_at_ms, excluded.expires_at_ms)",
                (user_id, session_key, handle, size, now, now, expires_at_ms),
            )
            row = conn.execute(
                f"SELECT {UPLOAD_SESSION_COLUMNS} FROM upload_sessions"
                " WHERE user_id = ? AND session_key = ?", (user_id, session_key),
            ).fetchone()
            return upload_session_from_row(row)

        return await self.db.write(run)

    async def upload_sessions_by_handle(
        self, user_id: int, handles: Seq[str]
    ) -> dict[str, UploadSession]:
        """The caller's sessions among `handles`."""
        unique = list(dict.fromkeys(handles))

        def run(conn: sqlite3.Connection) -> dict[str, UploadSession]:
            out: dict[str, UploadSession] = {}
            for start in range(0, len(unique), _BATCH):
                chunk = unique[start : start + _BATCH]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT {UPLOAD_SESSION_COLUMNS} FROM upload_sessions"
                    f" WHERE user_id = ? AND handle IN ({marks})", (user_id, *chunk),
                ).fetchall()
                out.update((r[3], upload_session_from_row(r)) for r in rows)
            return out

        return await self.db.read(run)

    async def user_upload_bytes(self, user_id: int) -> int:
        """Sum of the sizes of a user's sessions."""

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COALESCE(SUM(size), 0) FROM upload_sessions WHERE user_id = ?",
                (user_id,)).fetchone()
            return int(row[0])

        return await self.db.read(run)

    async def extend_upload_sessions(self, session_ids: Seq[int], expires_at_ms: int) -> None:
        """Push expiries forward (never back)."""
        ids = list(session_ids)

        def run(conn: sqlite3.Connection) -> None:
            for start in range(0, len(ids), _BATCH):
                chunk = ids[start : start + _BATCH]
                marks = ",".join("?" * len(chunk))
                conn.execute(
                    "UPDATE upload_sessions SET expires_at_ms = MAX(expires_at_ms, ?)"
                    f" WHERE id IN ({marks})", (expires_at_ms, *chunk),
                )

        await self.db.write(run)

    async def finish_upload_session(
        self, session: UploadSession, *, file_type: str, organization_id: int | None
    ) -> UploadFinish:
        """Insert the finish once, its id minted in the shared id space; later calls return
        the first one (one writer thread: no race between the look-up and the insert)."""

        def run(conn: sqlite3.Connection) -> UploadFinish:
            sql = f"{UPLOAD_FINISH_SQL} WHERE f.session_id = ?"
            row = conn.execute(sql, (session.id,)).fetchone()
            if row is not None:
                return _finish(row)
            cluster_id = _mint_cluster_id(conn)
            conn.execute(
                "INSERT INTO upload_finishes (id, session_id, user_id, file_type,"
                " organization_id, created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (cluster_id, session.id, session.user_id, file_type, organization_id,
                 _now_ms()),
            )
            return _finish(conn.execute(sql, (session.id,)).fetchone())

        return await self.db.write(run)

    async def set_upload_finish_job(self, cluster_id: int, job_id: int) -> None:
        """Record the queued job of a finish."""
        await self.db.write(lambda conn: conn.execute(
            "UPDATE upload_finishes SET job_id = ? WHERE id = ?", (job_id, cluster_id)))

    async def get_upload_finish(self, cluster_id: int) -> UploadFinish | None:
        """A finish by cluster id."""

        def run(conn: sqlite3.Connection) -> UploadFinish | None:
            row = conn.execute(f"{UPLOAD_FINISH_SQL} WHERE f.id = ?", (cluster_id,)).fetchone()
            return _finish(row) if row else None

        return await self.db.read(run)

    async def set_upload_result(self, cluster_id: int, result: dict[str, object]) -> None:
        """Store the job outcome as JSON."""
        body = json.dumps(result, separators=(",", ":"), sort_keys=True)
        await self.db.write(lambda conn: conn.execute(
            "UPDATE upload_finishes SET result = ? WHERE id = ?", (body, cluster_id)))

    async def expired_upload_sessions(self, now_ms: int, limit: int) -> list[UploadSession]:
        """Expired sessions, oldest expiry first."""

        def run(conn: sqlite3.Connection) -> list[UploadSession]:
            rows = conn.execute(
                f"SELECT {UPLOAD_SESSION_COLUMNS} FROM upload_sessions WHERE expires_at_ms < ?"
                " ORDER BY expires_at_ms LIMIT ?", (now_ms, limit),
            ).fetchall()
            return [upload_session_from_row(r) for r in rows]

        return await self.db.read(run)

    async def delete_upload_session(self, session_id: int, *, expired_before_ms: int) -> bool:
        """Delete a session that is still expired (its finish goes with it)."""

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM upload_sessions WHERE id = ? AND expires_at_ms < ?",
                (session_id, expired_before_ms),
            )
            return cur.rowcount > 0

        return await self.db.write(run)
