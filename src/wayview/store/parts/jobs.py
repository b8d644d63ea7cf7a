"""wayview.store.parts.jobs: the durable job queue part of the Store protocol."""

from __future__ import annotations

from typing import Protocol

from wayview.model.entities import Job, JobKindStats

#: Journal entries of blobs deleted because the attempt that wrote them failed: their owner is
#: this prefix + the attempt's owner (`JobsStore.retire_blobs`).
RETIRED_OWNER_PREFIX = "late:"


def retired_owner_range() -> tuple[str, str]:
    """The owners made by `JobsStore.retire_blobs`: `lower <= owner < upper` (a range the
    journal's primary key serves).

    >>> retired_owner_range()
    ('late:', 'late;')
    """
    return RETIRED_OWNER_PREFIX, RETIRED_OWNER_PREFIX[:-1] + chr(ord(RETIRED_OWNER_PREFIX[-1]) + 1)


class JobsStore(Protocol):
    """A durable job queue: jobs survive restarts; each job is taken by exactly one worker.

    A worker `claim_job`s a queued job whose time has come; the job is then `running` with a
    lease until `lease_until_ms`. The worker extends the lease while it works
    (`renew_job_lease`) and ends with `complete_job` or `fail_job`. A worker that dies stops
    renewing: once the lease has expired, the job is claimable again (an attempt is counted at
    every claim, so a job that kills its worker is parked like one that raises).
    """

    async def enqueue_job(
        self, kind: str, payload: dict[str, object], *, dedupe_key: str | None = None,
        delay_s: float = 0.0,
    ) -> Job:
        """Queue a job. With `dedupe_key`, a job with the same key that is not yet done is
        returned instead of a new one (idempotent producers). Called by upload and import."""

    async def claim_job(self, worker: str, *, lease_s: float, now_ms: int | None = None,
                        kinds: tuple[str, ...] | None = None) -> Job | None:
        """Take the oldest due job (queued and due, or running with an expired lease) for
        `worker`: state `running`, attempts + 1, leased for `lease_s`. None when nothing is
        due. Two workers never get the same job."""

    async def renew_job_lease(self, job_id: int, worker: str, *, lease_s: float,
                              attempt: int | None = None) -> bool:
        """Extend the lease of a job this worker holds; False when it no longer holds it.

        `attempt` (the job's `attempts` when it was claimed) fences the claim: every claim
        counts an attempt, so a later claim of the same job, even under the same worker
        name (another lane of one runner), makes the older claim's calls return False."""

    async def complete_job(self, job_id: int, worker: str, *, attempt: int | None = None
                           ) -> bool:
        """Mark a job this worker holds as done; False when the lease was lost meanwhile
        (`attempt`: as in `renew_job_lease`)."""

    async def fail_job(self, job_id: int, worker: str, error: str, *, retry_in_s: float | None,
                       attempt: int | None = None) -> bool:
        """Record a failed attempt: queued again after `retry_in_s`, or parked when None.
        False when this worker no longer holds the job (`attempt`: as in
        `renew_job_lease`)."""

    async def get_job(self, job_id: int) -> Job | None:
        """One job by id (None: unknown). Called by the upload page's status URL."""

    async def list_jobs(self, *, states: tuple[str, ...] | None = None, limit: int = 100
                        ) -> list[Job]:
        """Jobs, newest first, optionally only in `states`."""

    async def retry_jobs(self, job_ids: list[int] | None = None) -> int:
        """Queue parked jobs again with a fresh attempt count (all parked jobs when
        `job_ids` is None); the number of jobs requeued."""

    async def job_counts(self) -> dict[str, int]:
        """How many jobs are in each state."""

    async def job_queue_stats(self, now_ms: int) -> list[JobKindStats]:
        """Per kind with unfinished jobs: queued (and due at `now_ms`), running and parked
        jobs, and the oldest due job's run time. Called by `/metrics` (at most every few
        seconds per process); done jobs are not read."""

    # -- blob journal ----------------------------------------------------------------------
    # A job writes blobs before the rows that make them reachable (images become visible
    # only with their sequence). It journals what it is about to write first, so the next
    # attempt of a job whose worker died can delete what the dead attempt left behind.

    async def journal_blobs(self, owner: str, keys: list[str]) -> None:
        """Record that `owner` (e.g. "upload:<cluster id>") is about to write `keys`; a key
        ending in "/" stands for every blob under it. Idempotent."""

    async def journaled_blobs(self, owner: str) -> list[str]:
        """The keys `owner` journaled and has not forgotten, in journal order."""

    async def forget_blobs(self, owner: str, keys: list[str] | None = None) -> None:
        """Drop journal entries of `owner` (all of them when `keys` is None): the blobs are
        now referenced by stored rows, or deleted."""

    async def retire_blobs(self, owner: str, keys: list[str]) -> None:
        """Move entries of `owner` to the owner `RETIRED_OWNER_PREFIX + owner`, stamped now
        (a key already there gets the new time), in one transaction: the blobs were deleted
        because the attempt that wrote them failed, but a write the blob store accepted
        without answering (a timeout, a restart) may still land, so they are deleted once
        more later (`retired_blob_owners`)."""

    async def retired_blob_owners(self, before_ms: int, limit: int = 100) -> list[str]:
        """Owners made by `retire_blobs` whose newest entry is older than `before_ms`, oldest
        first."""
