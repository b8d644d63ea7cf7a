"""wayview.pipeline.worker: run the durable job queue (in `serve`, or `wayview worker`).

A `JobRunner` claims due jobs from the store and runs the handler registered for their kind
(`wayview.pipeline.jobs`), at most `concurrency` at once. While a handler runs, its lease is
renewed every third of `jobs.lease_s`; a worker that dies (SIGKILL, power loss) stops renewing,
and once the lease expires any other runner takes the job over. Every claim counts an attempt.

A lease is never outlived (issue #22: a job ran on two lanes at once and left an orphan blob):

- a renewal that fails (the store hiccups, does not answer within `RENEW_TIMEOUT_S`) is
  retried after a short backoff, not a whole third of the lease later;
- the renewal, the job's end and its hand-back are fenced by the claim (worker name *and*
  attempt number, `JobsStore.renew_job_lease`): another lane of the same runner that took the
  job over after an expiry is told apart, and a job is never finished by two attempts;
- the handler runs in a task of its own, stopped (cancelled, outcome `lost`) as soon as a
  renewal finds the job taken over, or once `lease_s` minus a guard has passed since the last
  confirmed renewal (a timer: it fires first thing after an event loop that was blocked for
  too long). The guard is the longest single blocking call of a job (`longest_call_s`,
  capped at a third of the lease) so that a call a thread still runs ends before the lease
  does; `jobs.lease_s` should be at least 3 × that call (a warning at start-up otherwise).

The job's end (done, retry, parked) is written with a short backoff while the store does not
answer, until the lease would have expired: a job whose end met a PostgreSQL outage is queued
again as soon as the store is back, not a whole lease later.

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
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable

from wayview import logs, metrics
from wayview.blobs.base import BlobStore
from wayview.errors import InvalidInput, is_transient
from wayview.ingest.upload_sessions import UploadSessions
from wayview.model.entities import Job
from wayview.pipeline.jobs import JobContext, handler_for, load_handlers
from wayview.settings import Settings
from wayview.store.base import Store, call_deadline_s

__all__ = ["MAINTENANCE_INTERVAL_S", "RENEW_TIMEOUT_S", "RETRY_MAX_S", "RETRY_S",
           "TRANSIENT_PREFIX", "JobRunner", "backoff_s", "is_transient", "longest_call_s",
           "worker_name"]

log = logging.getLogger("wayview.jobs")

#: Seconds between two runs of the upload housekeeping in `run_forever`.
MAINTENANCE_INTERVAL_S = 3600.0
#: Longest wait for one lease renewal (at most a sixth of the lease): a store that does not
#: answer is asked again rather than waited for.
RENEW_TIMEOUT_S = 5.0
#: Wait after a failed lease renewal or job-end write, doubled at each further failure up to
#: RETRY_MAX_S (the store's outage probes run every 0.2 s).
RETRY_S = 0.2
RETRY_MAX_S = 2.0


def worker_name() -> str:
    """A name unique to this runner: host, process id and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


#: The stored error of an attempt that failed because a service was down.
TRANSIENT_PREFIX = "transient: "
def longest_call_s(settings: Settings) -> float:
    """The longest a single blocking call of a job may take: `s3.timeout_s` with an S3 blob
    store, `database_statement_timeout_s` with PostgreSQL (0, no timeout, is not counted).

    >>> longest_call_s(Settings(_env_file=None, blobs_url="s3://b", database_url="postgresql://"))
    30.0
    """
    calls = [0.0]
    if settings.blobs_url.startswith("s3://"):
        calls.append(settings.s3.timeout_s)
    if settings.database_url and settings.database_statement_timeout_s > 0:
        calls.append(settings.database_statement_timeout_s)
    return max(calls)


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
        claimed_at = asyncio.get_running_loop().time()  # the store's lease starts later
        job = await self.store.claim_job(self.name, lease_s=jobs.lease_s, kinds=self.kinds)
        if job is None:
            return None
        await self._run(job, claimed_at)
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
        longest, lease = longest_call_s(self.settings), self.settings.jobs.lease_s
        if lease < 3 * longest:
            log.warning("jobs.lease_s = %g s is less than 3 × the longest blocking call of a "
                        "job (%g s: s3.timeout_s, database_statement_timeout_s): attempts "
                        "stopped when a renewal is late, and jobs parked; raise it", lease,
                        longest)
        background = [asyncio.create_task(self._maintain()),
                      asyncio.create_task(self._prerender()),
                      asyncio.create_task(self._sweep_retired())]
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

    async def _sweep_retired(self) -> None:
        """Delete once more the blobs failed attempts deleted (`sweep_retired_blobs`)."""
        from wayview.pipeline.process import sweep_retired_blobs

        after_s = self.settings.jobs.retired_blob_sweep_s
        if after_s <= 0:
            return
        while not self._stop.is_set():
            try:
                await sweep_retired_blobs(self.store, self.blobs, after_s)
            except Exception as exc:  # e.g. a service is down: try the next interval
                self._background_failed("sweeping retired blobs", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), min(300.0, max(0.5, after_s / 2)))

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
                self._background_failed("tile prerendering", exc)
                done = None
            if done is not None and done.more:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), tiles.prerender_interval_s)

    def _background_failed(self, what: str, exc: Exception) -> None:
        """One failed pass of a background task: a service that is down was logged once by
        whoever saw it (as for claims), so at debug level; anything else is a warning."""
        transient = is_transient(exc)
        log.log(logging.DEBUG if transient else logging.WARNING,
                "job runner %s: %s failed: %s", self.name, what, exc, exc_info=not transient)

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

    async def _run(self, job: Job, claimed_at: float) -> None:
        jobs = self.settings.jobs
        context = logs.log_context.set({"job_id": job.id, "kind": job.kind})
        started = time.monotonic()
        until = claimed_at + jobs.lease_s
        try:
            handler = handler_for(job.kind)
            if handler is None:
                await self._end(job, until, started, self._fail(
                    job, f"no handler for job kind {job.kind!r}", None), "parked",
                    logging.ERROR, "job %d parked: unknown kind %r", job.id, job.kind)
                return
            if job.attempts > jobs.max_attempts and not self._in_outage_window(job):
                # Claimed after an expired lease once too often: the job kills its worker.
                await self._end(job, until, started, self._fail(
                    job, job.last_error or
                    f"its worker stopped without finishing it {job.attempts - 1} times", None),
                    "parked", logging.ERROR, "job %d (%s) parked after %d attempts", job.id,
                    job.kind, job.attempts - 1)
                return
            ctx = JobContext(self.settings, self.store, self.blobs, job)

            async def handle() -> None:
                await handler(ctx, job.payload)

            work = asyncio.create_task(handle())
            guard = min(max(longest_call_s(self.settings), jobs.lease_s / 10), jobs.lease_s / 3)
            lease = _Lease(work, claimed_at, lease_s=jobs.lease_s, keep_s=jobs.lease_s - guard)
            heartbeat = asyncio.create_task(self._heartbeat(job, lease))
            try:
                await self._attempt(job, lease, heartbeat, started)
            finally:
                heartbeat.cancel()
                lease.close()
                if not work.done():  # _attempt raised: the handler must not run on
                    work.cancel()
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

    async def _attempt(self, job: Job, lease: _Lease, heartbeat: asyncio.Task[None],
                       started: float) -> None:
        """Wait for the handler and record the outcome (done, retry later, or parked)."""
        jobs = self.settings.jobs
        try:
            await lease.work
        except asyncio.CancelledError:
            heartbeat.cancel()
            task = asyncio.current_task()
            if lease.lost is not None and not (task is not None and task.cancelling()):
                await self._lost(job, lease, started)
                return
            # Shutting down: hand the job back now rather than when its lease expires.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._fail(
                    job, "interrupted: the worker shut down", 0.0)())
            self._ended(job, "interrupted", started, logging.INFO,
                        "job %d (%s) handed back: the worker shuts down", job.id, job.kind)
            raise
        except InvalidInput as exc:
            heartbeat.cancel()
            await self._end(job, lease.expires_at, started, self._fail(job, exc.message, None),
                            "parked", logging.ERROR, "job %d (%s) parked: %s", job.id,
                            job.kind, exc.message)
            return
        except Exception as exc:
            heartbeat.cancel()
            if lease.lost is not None:  # the handler turned the cancellation into an error
                await self._lost(job, lease, started)
                return
            error = "".join(traceback.format_exception_only(exc)).strip()
            if is_transient(exc):
                await self._transient_failure(job, exc, error, started, lease.expires_at)
                return
            if job.attempts >= jobs.max_attempts:
                await self._end(job, lease.expires_at, started, self._fail(job, error, None),
                                "parked", logging.ERROR,
                                "job %d (%s) parked after %d attempts: %s", job.id, job.kind,
                                job.attempts, error, exc=exc)
            else:
                wait = backoff_s(job.attempts, jobs.backoff_s, jobs.backoff_max_s)
                await self._end(job, lease.expires_at, started, self._fail(job, error, wait),
                                "retry", logging.WARNING,
                                "job %d (%s) attempt %d failed, retry in %.0f s: %s", job.id,
                                job.kind, job.attempts, wait, error, exc=exc)
            return
        heartbeat.cancel()
        # Fenced by the claim: a job taken over meanwhile is not finished a second time.
        await self._end(job, lease.expires_at, started, lambda: self.store.complete_job(
            job.id, self.name, attempt=job.attempts), "done", logging.INFO,
            "job %d (%s) done by %s in %.1f s (attempt %d)", job.id, job.kind, self.name,
            time.monotonic() - started, job.attempts)

    async def _lost(self, job: Job, lease: _Lease, started: float) -> None:
        """The handler was stopped because the lease is gone (or may be): one line; a job
        nobody took over yet is handed back at once (fenced by the claim)."""
        if lease.taken_over:
            self._ended(job, "lost", started, logging.WARNING,
                        "job %d (%s) stopped: %s", job.id, job.kind, lease.lost)
            return
        await self._record(job, lease.expires_at, self._fail(
            job, f"{TRANSIENT_PREFIX}{lease.lost}", 0.0))
        self._ended(job, "lost", started, logging.WARNING, "job %d (%s) stopped: %s",
                    job.id, job.kind, lease.lost)

    def _fail(self, job: Job, error: str, retry_in_s: float | None
              ) -> Callable[[], Awaitable[bool]]:
        """The write that records a failed attempt of `job` (fenced by its claim)."""
        return lambda: self.store.fail_job(job.id, self.name, error, retry_in_s=retry_in_s,
                                           attempt=job.attempts)

    async def _record(self, job: Job, until: float, write: Callable[[], Awaitable[bool]]
                      ) -> bool | None:
        """Run `write` (a job's end: complete_job, fail_job); while the store does not answer,
        again after a short backoff, until `until` (loop time: the lease would have expired,
        so the job is claimable again anyway). Whether the job was still this attempt's;
        None when the store did not answer in time."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            try:
                return await write()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                wait = backoff_s(failures, RETRY_S, RETRY_MAX_S)
                if loop.time() + wait >= until:
                    log.debug("job %d: recording its end failed until its lease expired: %s",
                              job.id, exc)
                    return None
                log.debug("job %d: recording its end failed, again in %.1f s: %s", job.id,
                          wait, exc)
                await asyncio.sleep(wait)

    async def _end(self, job: Job, until: float, started: float,
                   write: Callable[[], Awaitable[bool]], outcome: str, level: int,
                   message: str, *args: object, exc: BaseException | None = None) -> None:
        """Record a job's end (`_record`) and log it, or log why it could not be."""
        recorded = await self._record(job, until, write)
        if recorded:
            self._ended(job, outcome, started, level, message, *args, exc=exc)
        elif recorded is None:
            self._ended(job, "lost", started, logging.WARNING,
                        "job %d (%s) ended (%s) but the store did not answer before its lease "
                        "expired: it will run again", job.id, job.kind, outcome)
        else:
            self._ended(job, "lost", started, logging.WARNING,
                        "job %d (%s) ended (%s) after its lease was taken over", job.id,
                        job.kind, outcome)

    def _in_outage_window(self, job: Job) -> bool:
        """Whether `job` last failed because a service was down and is still within
        `jobs.retry_window_s` of being queued."""
        return ((job.last_error or "").startswith(TRANSIENT_PREFIX)
                and time.time() * 1000 - job.created_at_ms < self.settings.jobs.retry_window_s
                * 1000)

    async def _transient_failure(self, job: Job, exc: BaseException, error: str,
                                 started: float, until: float) -> None:
        """A service was down: retry with backoff (capped at `transient_backoff_max_s`) until
        `retry_window_s` after the job was queued, then park. One line, no traceback."""
        jobs = self.settings.jobs
        age_s = time.time() - job.created_at_ms / 1000
        message = f"{TRANSIENT_PREFIX}{error}"
        if age_s >= jobs.retry_window_s:
            await self._end(job, until, started, self._fail(job, message, None), "parked",
                            logging.ERROR, "job %d (%s) parked: a service was still down "
                            "%.0f s after it was queued: %s", job.id, job.kind, age_s, error)
            return
        wait = backoff_s(job.attempts, jobs.backoff_s,
                         min(jobs.backoff_max_s, jobs.transient_backoff_max_s))
        await self._end(job, until, started, self._fail(job, message, wait), "retry",
                        logging.WARNING, "job %d (%s) attempt %d: a service is down, retry in "
                        "%.0f s: %s", job.id, job.kind, job.attempts, wait, error)

    async def _heartbeat(self, job: Job, lease: _Lease) -> None:
        """Renew the lease every third of `jobs.lease_s` while the handler runs. A failed or
        unanswered renewal is retried after a short backoff (a store hiccup must not cost the
        lease); one that finds the job taken over stops the handler. Transient failures are
        not logged here: the store logs its outage once."""
        lease_s = self.settings.jobs.lease_s
        period = lease_s / 3
        timeout = min(period / 2, RENEW_TIMEOUT_S)
        call_deadline_s.set(timeout)  # this task's own context: PostgreSQL drops a stalled call
        loop = asyncio.get_running_loop()
        next_at = lease.renewed_at + period
        failures = 0
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            asked = loop.time()
            try:
                async with asyncio.timeout(2 * timeout):  # SQLite's writer may be busy
                    held = await self.store.renew_job_lease(job.id, self.name, lease_s=lease_s,
                                                            attempt=job.attempts)
            except Exception as exc:
                failures += 1
                if failures == 1 and not is_transient(exc):
                    log.warning("job %d: renewing its lease failed (retrying): %s", job.id,
                                exc, exc_info=exc)
                next_at = loop.time() + backoff_s(failures, RETRY_S, min(RETRY_MAX_S, period))
                continue
            if not held:
                lease.lose("another worker took it over after its lease expired",
                           taken_over=True)
                return
            lease.renewed(asked)
            failures = 0
            next_at = asked + period


class _Lease:
    """What a running attempt knows of its lease, and the timer that stops its handler
    (`work`) once `keep_s` have passed since the last confirmed renewal (or the claim).

    Times are the event loop's (monotonic). A renewal asked at `t` is confirmed to last
    until at least `t + lease_s` by the store's clock."""

    def __init__(self, work: asyncio.Task[None], claimed_at: float, *, lease_s: float,
                 keep_s: float) -> None:
        self.work = work
        self.lease_s = lease_s
        self.keep_s = keep_s
        #: Why the attempt must stop (None: it holds its lease).
        self.lost: str | None = None
        self.taken_over = False
        self.renewed_at = claimed_at
        self.expires_at = claimed_at + lease_s
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_at(claimed_at + keep_s, self._expire)

    def renewed(self, asked_at: float) -> None:
        """A renewal asked at `asked_at` succeeded: move the deadline."""
        self._timer.cancel()
        self.renewed_at = asked_at
        self.expires_at = asked_at + self.lease_s
        self._timer = self._loop.call_at(asked_at + self.keep_s, self._expire)

    def lose(self, reason: str, *, taken_over: bool = False) -> None:
        """Stop the handler: the lease is gone (`taken_over`) or may expire before it ends."""
        if self.lost is None:
            self.lost = reason
            self.taken_over = taken_over
            self.work.cancel()

    def close(self) -> None:
        """The attempt ended: no more timer."""
        self._timer.cancel()

    def _expire(self) -> None:
        self.lose(f"its lease was not renewed for {self.keep_s:.1f} s (the store did not "
                  "answer, or the process was blocked)")
