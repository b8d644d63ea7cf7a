"""wayview.store.sqlite.jobs: the SQLite implementation of JobsStore.

Claims run inside the store's single writer (`Database.write`), so a claim is one atomic
read-then-update: two workers of one process, or of several processes sharing the file
(SQLite's write lock), never take the same job.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from wayview.model.entities import JOB_STATES, Job, JobKindStats
from wayview.store.parts.jobs import RETIRED_OWNER_PREFIX, retired_owner_range
from wayview.store.sqlite.connection import Database

_JOB_COLUMNS = (
    "id, kind, payload, state, attempts, run_after_ms, last_error, dedupe_key, created_at_ms,"
    " updated_at_ms, worker, lease_until_ms"
)
#: Longest error text kept per job.
_MAX_ERROR_CHARS = 4000
#: The claim fence of renew, complete and fail (JobsStore.renew_job_lease): the job's
#: attempt count, when the caller gives it (the parameter twice: NULL = any).
_ATTEMPT_SQL = " AND (? IS NULL OR attempts = ?)"

#: Unfinished jobs per kind; the `jobs_ready (state, run_after_ms)` index skips done jobs.
_QUEUE_STATS = (
    "SELECT kind, sum(state = 'queued'), sum(state = 'queued' AND run_after_ms <= ?),"
    " sum(state = 'running'), sum(state = 'parked'),"
    " min(CASE WHEN state = 'queued' AND run_after_ms <= ? THEN run_after_ms END)"
    " FROM jobs WHERE state IN ('queued', 'running', 'parked') GROUP BY kind ORDER BY kind"
)

def _job_from_row(r: tuple[Any, ...]) -> Job:
    return Job(id=r[0], kind=r[1], payload=json.loads(r[2]), state=r[3], attempts=r[4],
               run_after_ms=r[5], last_error=r[6], dedupe_key=r[7], created_at_ms=r[8],
               updated_at_ms=r[9], worker=r[10], lease_until_ms=r[11])


def _now_ms() -> int:
    return int(time.time() * 1000)


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
            now = _now_ms()
            cur = conn.execute(
                "INSERT INTO jobs (kind, payload, run_after_ms, dedupe_key, created_at_ms,"
                " updated_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (kind, body, now + int(delay_s * 1000), dedupe_key, now, now),
            )
            row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?",
                               (cur.lastrowid,)).fetchone()
            return _job_from_row(row)

        return await self.db.write(run)

    async def claim_job(self, worker: str, *, lease_s: float, now_ms: int | None = None,
                        kinds: tuple[str, ...] | None = None) -> Job | None:
        """Take the oldest due job for `worker` (see JobsStore.claim_job)."""
        kind_sql, kind_args = "", tuple[str, ...]()
        if kinds is not None:
            if not kinds:
                return None
            kind_sql = f" AND kind IN ({','.join('?' * len(kinds))})"
            kind_args = tuple(kinds)

        def run(conn: sqlite3.Connection) -> Job | None:
            now = now_ms if now_ms is not None else _now_ms()
            row = conn.execute(
                "SELECT id FROM jobs WHERE ((state = 'queued' AND run_after_ms <= ?)"
                " OR (state = 'running' AND lease_until_ms < ?))" + kind_sql +
                " ORDER BY run_after_ms, id LIMIT 1",
                (now, now, *kind_args),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = ?,"
                " lease_until_ms = ?, updated_at_ms = ? WHERE id = ?",
                (worker, now + int(lease_s * 1000), now, row[0]),
            )
            got = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?",
                               (row[0],)).fetchone()
            return _job_from_row(got)

        return await self.db.write(run)

    async def renew_job_lease(self, job_id: int, worker: str, *, lease_s: float,
                              attempt: int | None = None) -> bool:
        """Extend the lease of a job `worker` holds (claim `attempt`, when given)."""

        def run(conn: sqlite3.Connection) -> bool:
            now = _now_ms()
            cur = conn.execute(
                "UPDATE jobs SET lease_until_ms = ?, updated_at_ms = ? WHERE id = ?"
                " AND state = 'running' AND worker = ?" + _ATTEMPT_SQL,
                (now + int(lease_s * 1000), now, job_id, worker, attempt, attempt),
            )
            return cur.rowcount == 1

        return await self.db.write(run)

    async def complete_job(self, job_id: int, worker: str, *, attempt: int | None = None
                           ) -> bool:
        """Mark a job `worker` holds as done."""

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE jobs SET state = 'done', lease_until_ms = NULL, last_error = NULL,"
                " updated_at_ms = ? WHERE id = ? AND state = 'running' AND worker = ?"
                + _ATTEMPT_SQL,
                (_now_ms(), job_id, worker, attempt, attempt),
            )
            return cur.rowcount == 1

        return await self.db.write(run)

    async def fail_job(self, job_id: int, worker: str, error: str, *, retry_in_s: float | None,
                       attempt: int | None = None) -> bool:
        """Queue a failed job again after `retry_in_s`, or park it (None)."""
        text = error[:_MAX_ERROR_CHARS]

        def run(conn: sqlite3.Connection) -> bool:
            now = _now_ms()
            if retry_in_s is None:
                cur = conn.execute(
                    "UPDATE jobs SET state = 'parked', lease_until_ms = NULL, last_error = ?,"
                    " updated_at_ms = ? WHERE id = ? AND state = 'running' AND worker = ?"
                    + _ATTEMPT_SQL,
                    (text, now, job_id, worker, attempt, attempt),
                )
            else:
                cur = conn.execute(
                    "UPDATE jobs SET state = 'queued', lease_until_ms = NULL, last_error = ?,"
                    " run_after_ms = ?, updated_at_ms = ? WHERE id = ? AND state = 'running'"
                    " AND worker = ?" + _ATTEMPT_SQL,
                    (text, now + int(retry_in_s * 1000), now, job_id, worker, attempt, attempt),
                )
            return cur.rowcount == 1

        return await self.db.write(run)

    async def get_job(self, job_id: int) -> Job | None:
        """One job by id."""
        row = await self.db.read_point(lambda c: c.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone())
        return _job_from_row(row) if row is not None else None

    async def list_jobs(self, *, states: tuple[str, ...] | None = None, limit: int = 100
                        ) -> list[Job]:
        """Jobs, newest first."""
        where, args = "", tuple[str, ...]()
        if states is not None:
            unknown = set(states) - set(JOB_STATES)
            if unknown:
                raise ValueError(f"unknown job states {sorted(unknown)}")
            where = f" WHERE state IN ({','.join('?' * len(states))})"
            args = tuple(states)

        def run(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs{where} ORDER BY id DESC"
                                " LIMIT ?", (*args, limit)).fetchall()
            return [_job_from_row(r) for r in rows]

        return await self.db.read(run)

    async def retry_jobs(self, job_ids: list[int] | None = None) -> int:
        """Queue parked jobs again with a fresh attempt count."""

        def run(conn: sqlite3.Connection) -> int:
            now = _now_ms()
            sql = ("UPDATE jobs SET state = 'queued', attempts = 0, run_after_ms = ?,"
                   " updated_at_ms = ?, worker = NULL WHERE state = 'parked'")
            if job_ids is None:
                return conn.execute(sql, (now, now)).rowcount
            count = 0
            for job_id in job_ids:
                count += conn.execute(sql + " AND id = ?", (now, now, job_id)).rowcount
            return count

        return await self.db.write(run)

    async def job_counts(self) -> dict[str, int]:
        """How many jobs are in each state (every state present, zero included)."""

        def run(conn: sqlite3.Connection) -> dict[str, int]:
            counts = dict.fromkeys(JOB_STATES, 0)
            for state, n in conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"):
                counts[state] = n
            return counts

        return await self.db.read(run)

    async def job_queue_stats(self, now_ms: int) -> list[JobKindStats]:
        """Unfinished jobs per kind (see JobsStore.job_queue_stats)."""

        def run(conn: sqlite3.Connection) -> list[JobKindStats]:
            rows = conn.execute(_QUEUE_STATS, (now_ms, now_ms)).fetchall()
            return [JobKindStats(kind=r[0], queued=r[1], due=r[2], running=r[3], parked=r[4],
                                 oldest_due_ms=r[5]) for r in rows]

        return await self.db.read(run)

    async def journal_blobs(self, owner: str, keys: list[str]) -> None:
        """Record keys `owner` is about to write (idempotent)."""
        now = _now_ms()

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR IGNORE INTO blob_journal (owner, key, created_at_ms) VALUES (?, ?, ?)",
                [(owner, key, now) for key in keys])

        await self.db.write(run)

    async def journaled_blobs(self, owner: str) -> list[str]:
        """The keys journaled by `owner`, oldest first."""

        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("SELECT key FROM blob_journal WHERE owner = ?"
                                " ORDER BY created_at_ms, key", (owner,)).fetchall()
            return [r[0] for r in rows]

        return await self.db.read(run)

    async def forget_blobs(self, owner: str, keys: list[str] | None = None) -> None:
        """Drop journal entries of `owner` (all when `keys` is None)."""

        def run(conn: sqlite3.Connection) -> None:
            if keys is None:
                conn.execute("DELETE FROM blob_journal WHERE owner = ?", (owner,))
            else:
                conn.executemany("DELETE FROM blob_journal WHERE owner = ? AND key = ?",
                                 [(owner, key) for key in keys])

        await self.db.write(run)

    async def retire_blobs(self, owner: str, keys: list[str]) -> None:
        """Move entries of `owner` to its retired owner, stamped now (see JobsStore)."""
        now, late = _now_ms(), RETIRED_OWNER_PREFIX + owner

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO blob_journal (owner, key, created_at_ms) VALUES (?, ?, ?)"
                " ON CONFLICT (owner, key) DO UPDATE SET created_at_ms = excluded.created_at_ms",
                [(late, key, now) for key in keys])
            conn.executemany("DELETE FROM blob_journal WHERE owner = ? AND key = ?",
                             [(owner, key) for key in keys])

        if keys:
            await self.db.write(run)

    async def retired_blob_owners(self, before_ms: int, limit: int = 100) -> list[str]:
        """Retired owners whose newest entry is older than `before_ms` (see JobsStore)."""

        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT owner FROM blob_journal WHERE owner >= ? AND owner < ? GROUP BY owner"
                " HAVING max(created_at_ms) < ? ORDER BY min(created_at_ms), owner LIMIT ?",
                (*retired_owner_range(), before_ms, limit)).fetchall()
            return [r[0] for r in rows]

        return await self.db.read(run)
