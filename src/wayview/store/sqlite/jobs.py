"""wayview.store.sqlite.jobs: the SQLite implementation of JobsStore."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from wayview.model.entities import Job
from wayview.store.sqlite.connection import Database

_JOB_COLUMNS = (
    "id, kind, payload, state, attempts, run_after_ms, last_error, dedupe_key, created_at_ms,"
    " updated_at_ms"
)


def _job_from_row(r: tuple[Any, ...]) -> Job:
    return Job(id=r[0], kind=r[1], payload=json.loads(r[2]), state=r[3], attempts=r[4],
               run_after_ms=r[5], last_error=r[6], dedupe_key=r[7], created_at_ms=r[8],
               updated_at_ms=r[9])


class JobsMixin:
    """JobsStore on SQLite; `self.db` is the store's Database."""

    db: Database

    async def enqueue_job(
        self, kind: str, payload: dict[str, object], *, dedupe_key: str | None = None,
        delay_s: float = 0.0,
    ) -> Job:
        """Insert a queued job, or return the pending one with the same dedupe key."""
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True)

        def run(conn: sqlite3.Connection) -> Job:
            if dedupe_key is not None:
                row = conn.execute(
                    f"SELECT {_JOB_COLUMNS} FROM jobs WHERE dedupe_key = ? AND state <> 'done'",
                    (dedupe_key,),
                ).fetchone()
                if row is not None:
                    return _job_from_row(row)
            now = int(time.time() * 1000)
            cur = conn.execute(
                "INSERT INTO jobs (kind, payload, run_after_ms, dedupe_key, created_at_ms,"
                " updated_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (kind, body, now + int(delay_s * 1000), dedupe_key, now, now),
            )
            row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?",
                               (cur.lastrowid,)).fetchone()
            return _job_from_row(row)

        return await self.db.write(run)
