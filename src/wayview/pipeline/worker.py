"""wayview.pipeline.worker: run the durable job queue (in `serve`, or `wayview worker`).

A `JobRunner` claims due jobs from the store and runs the handler registered for their kind
(`wayview.pipeline.jobs`), at most `concurrency` at once. While a handler runs, its lease is
renewed every third of `jobs.lease_s`; a worker that dies (SIGKILL, power loss) stops renewing,
and once the lease expires any other runner takes the job over. Every claim counts an attempt.

What happens when a handler fails:

- `InvalidInput` (the job can never succeed as it stands) or an unknown kind: parked at once.
- a service down (`ServiceUnavailable`: the store, the blob store, Redis; a connection error
  or timeout; a full disk): queued again after `backoff_s · 2^(attempts − 1)` capped at
  `transient_backoff_max_s`, without counting against `max_attempts`, until
  `retry_window_s` after the job was queued (default 6 h): an outage needs no operator.
- anything else: queued again after `backoff_s · 2^(attempts − 1)` (capped at
  `backoff_max_s`), and parked after `max_attempts` attempts.

Every attempt ends in exactly one log record of `wayview.jobs` whose structured fields (in
`log_format = json`) are job_id, kind, outcome (done, retry, parked, lost, interrupted),
duration_ms, attempt and worker, and in the `wayview_job_runs` / `wayview_job_duration_seconds`
metrics. Records logged while a job runs carry its job_id and kind.

Parked jobs keep their error and wait for an operator: `wayview jobs list --state parked`,
`wayview jobs retry`. Handlers are idempotent, so a retried or taken-over job does not
duplicate anything.

`run_forever` also renders the z6–13 image tiles writes made stale into the store every
`tiles.prerender_interval_s` (wayview.tiles.prerender), and does the upload housekeeping
when it starts and every `MAINTENANCE_INTERVAL_S`: expired upload sessions and the staging
folders of killed attempts (`UploadSessions.cleanup_expired`), so disk held by them comes back
without a cron job.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable

from wayview import logs, metrics
from wayview.blobs.base import BlobStore
from wayview.errors import InvalidInput, ServiceUnavailable
from wayview.ingest.upload_sessions import UploadSessions
from wayview.model.entities import Job
from wayview.pipeline.jobs import JobContext, JobHandler, handler_for, load_handlers
from wayview.settings import Settings
from wayview.store.base import Store

__all__ = ["MAINTENANCE_INTERVAL_S", "TRANSIENT_PREFIX", "JobRunner", "backoff_s", "is_transient",
           "worker_name"]

log = logging.getLogger("wayview.jobs")

#: Seconds between two runs of the upload housekeeping in `run_forever`.
MAINTENANCE_INTERVAL_S = 3600.0


def worker_name() -> str:
    """A name unique to this runner: host, process id and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


#: The stored error of an attempt that failed because a service was down.
TRANSIENT_PREFIX = "transient: "
_TRANSIENT_ERRNOS = frozenset({
    errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ECONNREFUSED, errno.ECONNRESET,
    errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH,
    errno.ENETDOWN, errno.EAGAIN, errno.EPIPE,
})


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` says a service or the disk is unavailable for now (retry later) rather
    than that the job is wrong.

    >>> is_transient(OSError(errno.ENOSPC, "No space left on device"))
    True
    >>> is_transient(FileNotFoundError(errno.ENOENT, "gone")), is_transient(KeyError("x"))
    (False, False)
    """
    if isinstance(exc, (ServiceUnavailable, ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Wait before the next attempt after `attempts` failed ones.

    >>> [backoff_s(n, 10.0, 60.0) for n in (1, 2, 3, 4, 5)]
    [10.0, 20.0, 40.0, 60.0, 60.0]
    """
    return min(max_s, base_s * 2.0 ** min(max(0, attempts - 1), 60))  # no float overflow


class JobRunner:
    """Claims and runs jobs until stopped.

    Args:
        settings: `settings.jobs` gives the lease, poll interval, attempts and backoff.
        store, blobs: what handlers work with.
        concurrency: jobs run at once.
        name: this runner's name in the queue (default: `worker_name()`).
        kinds: only these job kinds (None = all).
    """

    def __init__(self, settings: Settings, store: Store, blobs: BlobStore, *,
                 concurrency: int = 1, name: str | None = None,
                 kinds: tuple[str, ...] | None = None) -> None:
        load_handlers()
        self.settings = settings
        self.store = store
        self.blobs = blobs
        self.concurrency = max(1, concurrency)
        self.name = name or worker_name()
        self.kinds = kinds
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()

    async def run_one(self) -> Job | None:
        """Claim one due job and run it to its end; the job, or None when none was due."""
        jobs = self.settings.jobs
        job = await self.store.claim_job(self.name, lease_s=jobs.lease_s, kinds=self.kinds)
        if job is None:
            return None
        await self._run(job)
        return job

    async def drain(self, *, on_job: Callable[[Job], None] | None = None) -> int:
        """Run due jobs (up to `concurrency` at once) until none is due; how many ran."""
        done = 0

        async def lane() -> None:
            nonlocal done
            while (job := await self.run_one()) is not None:
                done += 1
                if on_job is not None:
                    on_job(job)

        await asyncio.gather(*(lane() for _ in range(self.concurrency)))
        return done

    async def run_forever(self) -> None:
        """Run jobs until `stop()`; idle lanes poll every `jobs.poll_s` (or on `wake()`)."""
        from wayview.pipeline.sfm_job import positioner_in_use

        log.info("job runner %s started (%d at once; computed positions: %s)", self.name,
                 self.concurrency, positioner_in_use(self.settings.pipeline))
        background = [asyncio.create_task(self._maintain()),
                      asyncio.create_task(self._prerender())]
        try:
            await asyncio.gather(*(self._lane() for _ in range(self.concurrency)))
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        log.info("job runner %s stopped", self.name)

    async def maintain_once(self) -> int:
        """One run of the upload housekeeping; sessions removed."""
        return await UploadSessions(self.settings, self.store).cleanup_expired()

    async def _maintain(self) -> None:
        while not self._stop.is_set():
            try:
                removed = await self.maintain_once()
                if removed:
                    log.info("job runner %s removed %d expired upload sessions", self.name,
                             removed)
            except Exception:  # the store or the disk is unavailable: try again later
                log.exception("job runner %s: upload housekeeping failed", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), MAINTENANCE_INTERVAL_S)

    async def _prerender(self) -> None:
        """Render the z6–13 image tiles that writes made stale (wayview.tiles.prerender)."""
        from wayview.tiles.prerender import Prerenderer

        tiles = self.settings.tiles
        if tiles.prerender_interval_s <= 0:
            return
        prerenderer = Prerenderer(self.store, line_tile_max_bytes=tiles.max_line_tile_bytes)
        while not self._stop.is_set():
            try:
                done = await prerenderer.run_once()
            except Exception as exc:  # e.g. the store is unavailable: try the next interval
                log.warning("job runner %s: tile prerendering failed: %s", self.name, exc,
                            exc_info=not is_transient(exc))
                done = None
            if done is not None and done.more:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), tiles.prerender_interval_s)

    def stop(self) -> None:
        """Ask the lanes to stop after their current job."""
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """Look for jobs now (e.g. right after enqueueing one)."""
        self._wake.set()

    async def _lane(self) -> None:
        while not self._stop.is_set():
            try:
                job = await self.run_one()
            except Exception as exc:  # the store is unavailable: log, wait, try again
                # A service that is down was logged once by whoever saw it (the store's
                # outage line): not one traceback per lane and poll while it lasts. A job
                # whose end could not be recorded goes back to the queue with its lease.
                transient = is_transient(exc)
                log.log(logging.DEBUG if transient else logging.ERROR,
                        "job runner %s: claiming or recording a job failed: %s", self.name,
                        exc, exc_info=not transient)
                job = None
            if job is None and not self._stop.is_set():
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.jobs.poll_s)

    async def _run(self, job: Job) -> None:
        jobs = self.settings.jobs
        context = logs.log_context.set({"job_id": job.id, "kind": job.kind})
        started = time.monotonic()
        try:
            handler = handler_for(job.kind)
            if handler is None:
                await self.store.fail_job(job.id, self.name,
                                          f"no handler for job kind {job.kind!r}",
                                          retry_in_s=None)
                self._ended(job, "parked", started, logging.ERROR,
                            "job %d parked: unknown kind %r", job.id, job.kind)
                return
            if job.attempts > jobs.max_attempts and not self._in_outage_window(job):
                # Claimed after an expired lease once too often: the job kills its worker.
                await self.store.fail_job(
                    job.id, self.name, job.last_error or
                    f"its worker stopped without finishing it {job.attempts - 1} times",
                    retry_in_s=None)
                self._ended(job, "parked", started, logging.ERROR,
                            "job %d (%s) parked after %d attempts", job.id, job.kind,
                            job.attempts - 1)
                return
            heartbeat = asyncio.create_task(self._heartbeat(job))
            try:
                await self._attempt(job, handler, heartbeat, started)
            finally:
                heartbeat.cancel()
        finally:
            logs.log_context.reset(context)

    def _ended(self, job: Job, outcome: str, started: float, level: int, message: str,
               *args: object, exc: BaseException | None = None) -> None:
        """The one log record and the metrics of an ended attempt."""
        seconds = time.monotonic() - started
        metrics.job_run(job.kind, outcome, seconds)
        log.log(level, message, *args, exc_info=exc, extra={"fields": {
            "job_id": job.id, "kind": job.kind, "outcome": outcome,
            "duration_ms": round(seconds * 1000, 1), "attempt": job.attempts,
            "worker": self.name}})

    async def _attempt(self, job: Job, handler: JobHandler, heartbeat: asyncio.Task[None],
                       started: float) -> None:
        """Run the handler once and record the outcome (done, retry later, or parked)."""
        jobs = self.settings.jobs
        try:
            await handler(JobContext(self.settings, self.store, self.blobs, job), job.payload)
        except asyncio.CancelledError:
            # Shutting down: hand the job back now rather than when its lease expires.
            heartbeat.cancel()
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.fail_job(
                    job.id, self.name, "interrupted: the worker shut down", retry_in_s=0.0))
            self._ended(job, "interrupted", started, logging.INFO,
                        "job %d (%s) handed back: the worker shuts down", job.id, job.kind)
            raise
        except InvalidInput as exc:
            await self.store.fail_job(job.id, self.name, exc.message, retry_in_s=None)
            self._ended(job, "parked", started, logging.ERROR, "job %d (%s) parked: %s",
                        job.id, job.kind, exc.message)
            return
        except Exception as exc:
            error = "".join(traceback.format_exception_only(exc)).strip()
            if is_transient(exc):
                await self._transient_failure(job, exc, error, started)
                return
            if job.attempts >= jobs.max_attempts:
                await self.store.fail_job(job.id, self.name, error, retry_in_s=None)
                self._ended(job, "parked", started, logging.ERROR,
                            "job %d (%s) parked after %d attempts: %s", job.id, job.kind,
                            job.attempts, error, exc=exc)
            else:
                wait = backoff_s(job.attempts, jobs.backoff_s, jobs.backoff_max_s)
                await self.store.fail_job(job.id, self.name, error, retry_in_s=wait)
                self._ended(job, "retry", started, logging.WARNING,
                            "job %d (%s) attempt %d failed, retry in %.0f s: %s", job.id,
                            job.kind, job.attempts, wait, error, exc=exc)
            return
        heartbeat.cancel()
        if await self.store.complete_job(job.id, self.name):
            self._ended(job, "done", started, logging.INFO,
                        "job %d (%s) done by %s in %.1f s (attempt %d)", job.id, job.kind,
                        self.name, time.monotonic() - started, job.attempts)
        else:
            self._ended(job, "lost", started, logging.WARNING,
                        "job %d (%s) finished after its lease was taken over", job.id,
                        job.kind)

    def _in_outage_window(self, job: Job) -> bool:
        """Whether `job` last failed because a service was down and is still within
        `jobs.retry_window_s` of being queued."""
        return ((job.last_error or "").startswith(TRANSIENT_PREFIX)
                and time.time() * 1000 - job.created_at_ms < self.settings.jobs.retry_window_s
                * 1000)

    async def _transient_failure(self, job: Job, exc: BaseException, error: str,
                                 started: float) -> None:
        """A service was down: retry with backoff (capped at `transient_backoff_max_s`) until
        `retry_window_s` after the job was queued, then park. One line, no traceback."""
        jobs = self.settings.jobs
        age_s = time.time() - job.created_at_ms / 1000
        message = f"{TRANSIENT_PREFIX}{error}"
        if age_s >= jobs.retry_window_s:
            await self.store.fail_job(job.id, self.name, message, retry_in_s=None)
            self._ended(job, "parked", started, logging.ERROR,
                        "job %d (%s) parked: a service was still down %.0f s after it was "
                        "queued: %s", job.id, job.kind, age_s, error)
            return
        wait = backoff_s(job.attempts, jobs.backoff_s,
                         min(jobs.backoff_max_s, jobs.transient_backoff_max_s))
        await self.store.fail_job(job.id, self.name, message, retry_in_s=wait)
        self._ended(job, "retry", started, logging.WARNING,
                    "job %d (%s) attempt %d: a service is down, retry in %.0f s: %s", job.id,
                    job.kind, job.attempts, wait, error)

    async def _heartbeat(self, job: Job) -> None:
        lease = self.settings.jobs.lease_s
        while True:
            await asyncio.sleep(lease / 3)
            try:
                if not await self.store.renew_job_lease(job.id, self.name, lease_s=lease):
                    log.warning("job %d: lease lost to another worker", job.id)
                    return
            except Exception:
                log.exception("job %d: renewing the lease failed", job.id)
