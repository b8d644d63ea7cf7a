"""wayview.store.postgres.jobs: the PostgreSQL implementation of JobsStore.

A claim is one statement in one transaction: `SELECT … FOR UPDATE SKIP LOCKED` picks the
oldest due job nobody else is claiming right now, and the enclosing UPDATE takes it. Workers
in any number of processes never wait for each other and never take the same job: a row
being claimed is skipped, and a row claimed meanwhile fails the recheck of its WHERE clause.
"""

from __future__ import annotations

import time
from typing import Any

from psycopg.types.json import Jsonb

from wayview.model.entities import JOB_STATES, Job, JobKindStats
from wayview.store.parts.jobs import RETIRED_OWNER_PREFIX, retired_owner_range
from wayview.store.postgres.connection import Queries

_JOB_COLUMNS = (
    "id, kind, payload, state, attempts, run_after_ms, last_error, dedupe_key, created_at_ms,"
    " updated_at_ms, worker, lease_until_ms"
)
#: The same columns of the `jobs j` an UPDATE … FROM returns.
_RETURNING_J = ", ".join("j." + c.strip() for c in _JOB_COLUMNS.split(","))
#: Longest error text kept per job.
_MAX_ERROR_CHARS = 4000
#: The claim fence of renew, complete and fail (JobsStore.renew_job_lease): the job's
#: attempt count, when the caller gives it (the parameter twice: NULL = any).
_ATTEMPT_SQL = " AND (%s::integer IS NULL OR attempts = %s::integer)"

#: Unfinished jobs per kind; the `jobs_state (state, id)` index skips done jobs.
_QUEUE_STATS = (
    "SELECT kind, count(*) FILTER (WHERE state = 'queued'),"
    " count(*) FILTER (WHERE state = 'queued' AND run_after_ms <= %s),"
    " count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state = 'parked'),"
    " min(run_after_ms) FILTER (WHERE state = 'queued' AND run_after_ms <= %s)"
    " FROM jobs WHERE state IN ('queued', 'running', 'parked') GROUP BY kind ORDER BY kind"
)

def _job_from_row(r: tuple[Any, ...]) -> Job:
    return Job(id=r[0], kind=r[1], payload=r[2], state=r[3], attempts=r[4],
               run_after_ms=r[5], last_error=r[6], dedupe_key=r[7], created_at_ms=r[8],
               updated_at_ms=r[9], worker=r[10], lease_until_ms=r[11])


def _now_ms() -> int:
    return int(time.time() * 1000)


class JobsMixin(Queries):
    """JobsStore on PostgreSQL; `self.db` is the store's Database."""

    async def enqueue_job(
        self, kind: str, payload: dict[str, object], *, dedupe_key: str | None = None,
        delay_s: float = 0.0,
    ) -> Job:
        """Insert a queued job, or return the pending one with the same dedupe key.

        The partial unique index on pending dedupe keys settles races between producers: the
        loser's insert does nothing and it reads the winner's job.
        """
        body = Jsonb(payload)
        while True:
            now = _now_ms()
            row = await self._one(
                f"INSERT INTO jobs (kind, payload, run_after_ms, dedupe_key, created_at_ms,"
                f" updated_at_ms) VALUES (%s, %s, %s, %s, %s, %s)"
                f" ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND state <> 'done'"
                f" DO NOTHING RETURNING {_JOB_COLUMNS}",
                (kind, body, now + int(delay_s * 1000), dedupe_key, now, now),
            )
            if row is None and dedupe_key is not None:
                row = await self._one(
                    f"SELECT {_JOB_COLUMNS} FROM jobs WHERE dedupe_key = %s AND state <> 'done'",
                    (dedupe_key,),
                )
            if row is not None:  # else the twin was done in between: insert again
                return _job_from_row(row)

    async def claim_job(self, worker: str, *, lease_s: float, now_ms: int | None = None,
                        kinds: tuple[str, ...] | None = None) -> Job | None:
        """Take the oldest due job for `worker` (see JobsStore.claim_job and the module)."""
        if kinds is not None and not kinds:
            return None
        now = now_ms if now_ms is not None else _now_ms()
        kind_sql = " AND kind = ANY(%(kinds)s)" if kinds is not None else ""
        row = await self._one(
            "UPDATE jobs j SET state = 'running', attempts = j.attempts + 1,"
            " worker = %(worker)s, lease_until_ms = %(lease)s, updated_at_ms = %(now)s"
            " FROM (SELECT id FROM jobs WHERE ((state = 'queued' AND run_after_ms <= %(now)s)"
            " OR (state = 'running' AND lease_until_ms < %(now)s))" + kind_sql +
            " ORDER BY run_after_ms, id LIMIT 1 FOR UPDATE SKIP LOCKED) due"
            f" WHERE j.id = due.id RETURNING {_RETURNING_J}",
            {"worker": worker, "lease": now + int(lease_s * 1000), "now": now,
             "kinds": list(kinds or ())},
        )
        return _job_from_row(row) if row else None

    async def renew_job_lease(self, job_id: int, worker: str, *, lease_s: float,
                              attempt: int | None = None) -> bool:
        """Extend the lease of a job `worker` holds (claim `attempt`, when given)."""
        now = _now_ms()
        changed = await self._run(
            "UPDATE jobs SET lease_until_ms = %s, updated_at_ms = %s WHERE id = %s"
            " AND state = 'running' AND worker = %s" + _ATTEMPT_SQL,
            (now + int(lease_s * 1000), now, job_id, worker, attempt, attempt),
        )
        return changed == 1

    async def complete_job(self, job_id: int, worker: str, *, attempt: int | None = None
                           ) -> bool:
        """Mark a job `worker` holds as done."""
        changed = await self._run(
            "UPDATE jobs SET state = 'done', lease_until_ms = NULL, last_error = NULL,"
            " updated_at_ms = %s WHERE id = %s AND state = 'running' AND worker = %s"
            + _ATTEMPT_SQL,
            (_now_ms(), job_id, worker, attempt, attempt),
        )
        return changed == 1

    async def fail_job(self, job_id: int, worker: str, error: str, *, retry_in_s: float | None,
                       attempt: int | None = None) -> bool:
        """Queue a failed job again after `retry_in_s`, or park it (None)."""
        text = error[:_MAX_ERROR_CHARS]
        now = _now_ms()
        if retry_in_s is None:
            changed = await self._run(
                "UPDATE jobs SET state = 'parked', lease_until_ms = NULL, last_error = %s,"
                " updated_at_ms = %s WHERE id = %s AND state = 'running' AND worker = %s"
                + _ATTEMPT_SQL,
                (text, now, job_id, worker, attempt, attempt),
            )
        else:
            changed = await self._run(
                "UPDATE jobs SET state = 'queued', lease_until_ms = NULL, last_error = %s,"
                " run_after_ms = %s, updated_at_ms = %s WHERE id = %s AND state = 'running'"
                " AND worker = %s" + _ATTEMPT_SQL,
                (text, now + int(retry_in_s * 1000), now, job_id, worker, attempt, attempt),
            )
        return changed == 1

    async def get_job(self, job_id: int) -> Job | None:
        """One job by id."""
        row = await self._one(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,))
        return _job_from_row(row) if row is not None else None

    async def list_jobs(self, *, states: tuple[str, ...] | None = None, limit: int = 100
                        ) -> list[Job]:
        """Jobs, newest first."""
        if states is None:
            rows = await self._all(
                f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT %s", (limit,))
        else:
            unknown = set(states) - set(JOB_STATES)
            if unknown:
                raise ValueError(f"unknown job states {sorted(unknown)}")
            rows = await self._all(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state = ANY(%s) ORDER BY id DESC"
                " LIMIT %s", (list(states), limit))
        return [_job_from_row(r) for r in rows]

    async def retry_jobs(self, job_ids: list[int] | None = None) -> int:
        """Queue parked jobs again with a fresh attempt count."""
        now = _now_ms()
        sql = ("UPDATE jobs SET state = 'queued', attempts = 0, run_after_ms = %s,"
               " updated_at_ms = %s, worker = NULL WHERE state = 'parked'")
        if job_ids is None:
            return await self._run(sql, (now, now))
        if not job_ids:
            return 0
        return await self._run(sql + " AND id = ANY(%s)", (now, now, list(job_ids)))

    async def job_counts(self) -> dict[str, int]:
        """How many jobs are in each state (every state present, zero included)."""
        counts = dict.fromkeys(JOB_STATES, 0)
        for state, n in await self._all("SELECT state, count(*) FROM jobs GROUP BY state"):
            counts[state] = int(n)
        return counts

    async def job_queue_stats(self, now_ms: int) -> list[JobKindStats]:
        """Unfinished jobs per kind (see JobsStore.job_queue_stats)."""
        rows = await self._all(_QUEUE_STATS, (now_ms, now_ms))
        return [JobKindStats(kind=r[0], queued=int(r[1]), due=int(r[2]), running=int(r[3]),
                             parked=int(r[4]),
                             oldest_due_ms=None if r[5] is None else int(r[5])) for r in rows]

    async def journal_blobs(self, owner: str, keys: list[str]) -> None:
        """Record keys `owner` is about to write (idempotent)."""
        if keys:
            await self._run(
                "INSERT INTO blob_journal (owner, key, created_at_ms)"
                " SELECT %s, unnest(%s::text[]), %s ON CONFLICT (owner, key) DO NOTHING",
                (owner, list(keys), _now_ms()))

    async def journaled_blobs(self, owner: str) -> list[str]:
        """The keys journaled by `owner`, oldest first."""
        rows = await self._all("SELECT key FROM blob_journal WHERE owner = %s"
                               " ORDER BY created_at_ms, key", (owner,))
        return [str(r[0]) for r in rows]

    async def forget_blobs(self, owner: str, keys: list[str] | None = None) -> None:
        """Drop journal entries of `owner` (all when `keys` is None)."""
        if keys is None:
            await self._run("DELETE FROM blob_journal WHERE owner = %s", (owner,))
        elif keys:
            await self._run("DELETE FROM blob_journal WHERE owner = %s AND key = ANY(%s)",
                            (owner, list(keys)))

    async def retire_blobs(self, owner: str, keys: list[str]) -> None:
        """Move entries of `owner` to its retired owner, stamped now (see JobsStore)."""
        if not keys:
            return
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO blob_journal (owner, key, created_at_ms)"
                " SELECT %s, unnest(%s::text[]), %s ON CONFLICT (owner, key)"
                " DO UPDATE SET created_at_ms = excluded.created_at_ms",
                (RETIRED_OWNER_PREFIX + owner, list(keys), _now_ms()))
            await conn.execute("DELETE FROM blob_journal WHERE owner = %s AND key = ANY(%s)",
                               (owner, list(keys)))

    async def retired_blob_owners(self, before_ms: int, limit: int = 100) -> list[str]:
        """Retired owners whose newest entry is older than `before_ms` (see JobsStore)."""
        rows = await self._all(
            "SELECT owner FROM blob_journal WHERE owner >= %s AND owner < %s GROUP BY owner"
            " HAVING max(created_at_ms) < %s ORDER BY min(created_at_ms), owner LIMIT %s",
            (*retired_owner_range(), before_ms, limit))
        return [str(r[0]) for r in rows]
