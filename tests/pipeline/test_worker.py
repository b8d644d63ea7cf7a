"""The job runner: handlers run once, failures back off then park, leases hand jobs over."""

from __future__ import annotations

import asyncio
import errno
import time

from wayview.blobs import LocalBlobs
from wayview.errors import InvalidInput, StoreUnavailable
from wayview.pipeline.jobs import JobContext, job_handler
from wayview.pipeline.worker import JobRunner

RAN: list[tuple[str, object]] = []


@job_handler("test.record")
async def _record(ctx: JobContext, payload: dict[str, object]) -> None:
    RAN.append((ctx.job.kind, payload["n"]))


@job_handler("test.boom")
async def _boom(ctx: JobContext, payload: dict[str, object]) -> None:
    raise RuntimeError(f"boom at attempt {ctx.job.attempts}")


@job_handler("test.outage")
async def _outage(ctx: JobContext, payload: dict[str, object]) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@job_handler("test.invalid")
async def _invalid(ctx: JobContext, payload: dict[str, object]) -> None:
    raise InvalidInput("the upload is not a JPEG")


@job_handler("test.slow")
async def _slow(ctx: JobContext, payload: dict[str, object]) -> None:
    await asyncio.sleep(float(payload["s"]))  # type: ignore[arg-type]
    RAN.append(("test.slow", ctx.job.worker))


@job_handler("test.blocking")
async def _blocking(ctx: JobContext, payload: dict[str, object]) -> None:
    if ctx.job.attempts == 1:  # e.g. a synchronous S3 call on a stalled S3
        time.sleep(float(payload["s"]))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)  # the next I/O
    RAN.append(("test.blocking", ctx.job.attempts))


def _runner(settings, store, **kw) -> JobRunner:
    jobs = settings.jobs.model_copy(update=kw.pop("jobs", {}))
    settings = settings.model_copy(update={"jobs": jobs})
    return JobRunner(settings, store, LocalBlobs(settings.blobs_path), **kw)


async def test_drain_runs_every_due_job_once(settings, store):
    RAN.clear()
    for n in range(7):
        await store.enqueue_job("test.record", {"n": n})
    assert await _runner(settings, store, concurrency=3).drain() == 7
    assert sorted(n for _, n in RAN) == list(range(7))
    assert (await store.job_counts())["done"] == 7


async def test_failures_back_off_then_park_with_the_error(settings, store):
    job = await store.enqueue_job("test.boom", {})
    runner = _runner(settings, store, jobs={"backoff_s": 0.0, "max_attempts": 3})
    assert await runner.drain() == 3
    [parked] = await store.list_jobs(states=("parked",))
    assert parked.id == job.id and parked.attempts == 3
    assert "RuntimeError: boom at attempt 3" in parked.last_error


async def test_an_outage_is_retried_past_max_attempts_within_the_window(settings, store,
                                                                       caplog):
    """A full disk (or the store, the blob store, Redis down) is not the job's fault: it keeps
    being retried, one line each time and no traceback, past max_attempts until
    retry_window_s after it was queued; only then is it parked."""
    job = await store.enqueue_job("test.outage", {})
    runner = _runner(settings, store, jobs={"backoff_s": 0.0, "max_attempts": 2,
                                            "retry_window_s": 0.4})
    started = time.monotonic()
    attempts = await runner.drain()
    assert attempts > 2 and time.monotonic() - started >= 0.35
    [parked] = await store.list_jobs(states=("parked",))
    assert parked.id == job.id and parked.attempts == attempts
    assert parked.last_error.startswith("transient: OSError: [Errno 28] No space left")
    retries = [r for r in caplog.records if "a service is down" in r.getMessage()]
    assert len(retries) == attempts - 1 and not any(r.exc_info for r in retries)


async def test_an_outage_backs_off_at_most_transient_backoff_max_s(settings, store):
    await store.enqueue_job("test.outage", {})
    runner = _runner(settings, store, jobs={"backoff_s": 1000.0, "transient_backoff_max_s": 30.0})
    assert await runner.drain() == 1
    [queued] = await store.list_jobs(states=("queued",))
    assert queued.run_after_ms <= time.time() * 1000 + 31_000


async def test_backoff_delays_the_next_attempt(settings, store):
    await store.enqueue_job("test.boom", {})
    runner = _runner(settings, store, jobs={"backoff_s": 60.0})
    assert await runner.drain() == 1
    [queued] = await store.list_jobs(states=("queued",))
    assert queued.run_after_ms >= time.time() * 1000 + 55_000


async def test_invalid_input_and_unknown_kinds_park_at_once(settings, store):
    await store.enqueue_job("test.invalid", {})
    await store.enqueue_job("no.such.kind", {})
    assert await _runner(settings, store).drain() == 2
    parked = await store.list_jobs(states=("parked",))
    assert sorted(j.last_error for j in parked) == [
        "no handler for job kind 'no.such.kind'", "the upload is not a JPEG"]


async def test_a_job_that_keeps_killing_its_worker_is_parked(settings, store):
    job = await store.enqueue_job("test.record", {"n": 1})
    for _ in range(2):  # two workers died holding it
        await store.claim_job("dead", lease_s=0)
        await asyncio.sleep(0.002)
    RAN.clear()
    assert await _runner(settings, store, jobs={"max_attempts": 2}).drain() == 1
    assert RAN == []
    [parked] = await store.list_jobs(states=("parked",))
    assert parked.id == job.id and "stopped without finishing it 2 times" in parked.last_error


async def test_run_forever_picks_up_new_jobs(settings, store):
    RAN.clear()
    runner = _runner(settings, store, jobs={"lease_s": 5.0, "poll_s": 0.05})
    task = asyncio.create_task(runner.run_forever())
    job = await store.enqueue_job("test.slow", {"s": 2.5})
    await asyncio.sleep(0.3)
    # While it runs, no other worker can take it
    assert await store.claim_job("thief", lease_s=5) is None
    for _ in range(100):
        if RAN:
            break
        await asyncio.sleep(0.05)
    runner.stop()
    await task
    assert RAN == [("test.slow", runner.name)]
    assert [j.id for j in await store.list_jobs(states=("done",))] == [job.id]


async def test_stopping_mid_job_hands_it_back(settings, store):
    job = await store.enqueue_job("test.slow", {"s": 30})
    runner = _runner(settings, store, jobs={"poll_s": 0.05})
    task = asyncio.create_task(runner.run_forever())
    await asyncio.sleep(0.3)
    runner.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    [queued] = await store.list_jobs(states=("queued",))
    assert queued.id == job.id and "interrupted" in queued.last_error


async def test_a_store_outage_is_not_logged_per_poll(settings, store, caplog, monkeypatch):
    """While the store is down every lane's claim fails at each poll: the store logs the
    outage once; the runner adds no error line and no traceback, and runs the job once the
    store is back (issue #22)."""
    RAN.clear()
    job = await store.enqueue_job("test.record", {"n": 1})
    claim = store.claim_job
    failures = []

    async def down_for_a_while(*args, **kwargs):
        if len(failures) < 10:
            failures.append(1)
            raise StoreUnavailable("database unavailable")
        return await claim(*args, **kwargs)

    monkeypatch.setattr(store, "claim_job", down_for_a_while)
    runner = _runner(settings, store, concurrency=2, jobs={"poll_s": 0.01})
    task = asyncio.create_task(runner.run_forever())
    for _ in range(200):
        if RAN:
            break
        await asyncio.sleep(0.02)
    runner.stop()
    await task
    assert len(failures) == 10 and RAN == [("test.record", 1)]
    assert [j.id for j in await store.list_jobs(states=("done",))] == [job.id]
    jobs_log = [r for r in caplog.records if r.name == "wayview.jobs"]
    assert not [r for r in jobs_log if r.levelno >= 30 or r.exc_info], jobs_log


async def _until(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_an_attempt_that_outlived_its_lease_stops_before_its_next_step(settings, store,
                                                                             caplog):
    """The incident of issue #22: an attempt blocked the event loop (a synchronous S3 call)
    past its lease; another lane of the same runner took the job over, and the two ran it at
    once. The attempt is now stopped at its next await, the takeover is fenced by the attempt
    number, and the job runs to its end exactly once."""
    RAN.clear()
    job = await store.enqueue_job("test.blocking", {"s": 2.0})
    runner = _runner(settings, store, concurrency=2, jobs={"lease_s": 1.5, "poll_s": 0.05})
    task = asyncio.create_task(runner.run_forever())
    try:
        await _until(lambda: RAN)
        await asyncio.sleep(0.3)  # the stopped attempt would have gone on by now
    finally:
        runner.stop()
        await task
    assert RAN == [("test.blocking", 2)]
    done = await store.get_job(job.id)
    assert done.state == "done" and done.attempts == 2
    lost = [r for r in caplog.records if getattr(r, "fields", {}).get("outcome") == "lost"]
    assert len(lost) == 1 and "not renewed" in lost[0].getMessage() and not lost[0].exc_info


async def test_a_lease_taken_over_stops_the_attempt(settings, store, caplog):
    """A renewal that finds the job taken over cancels the handler: it neither finishes its
    work nor records an end over the new owner's."""
    RAN.clear()
    job = await store.enqueue_job("test.slow", {"s": 5.0})
    runner = _runner(settings, store, jobs={"lease_s": 0.6})
    drain = asyncio.create_task(runner.drain())
    await asyncio.sleep(0.1)  # claimed and running
    thief = await store.claim_job("thief", lease_s=60, now_ms=int(time.time() * 1000) + 60_000)
    assert thief is not None and thief.id == job.id
    started = time.monotonic()
    assert await asyncio.wait_for(drain, 3.0) == 1
    assert time.monotonic() - started < 1.0  # the next renewal, a third of the lease later
    assert RAN == []
    now = await store.get_job(job.id)
    assert now.state == "running" and now.worker == "thief" and now.attempts == 2
    [lost] = [r for r in caplog.records if getattr(r, "fields", {}).get("outcome") == "lost"]
    assert "took it over" in lost.getMessage()


async def test_failed_renewals_are_retried_without_losing_the_lease(settings, store, caplog,
                                                                    monkeypatch):
    """Renewals that fail during a store hiccup are retried after a short backoff, not a
    third of the lease later: the lease is kept past its first expiry, nobody can take the
    job, and nothing is logged (the store logs its outage once)."""
    RAN.clear()
    job = await store.enqueue_job("test.slow", {"s": 4.5})
    renew = store.renew_job_lease
    failures: list[float] = []

    async def hiccup(*args, **kwargs):
        if len(failures) < 2:
            failures.append(time.monotonic())
            raise StoreUnavailable("database unavailable")
        return await renew(*args, **kwargs)

    monkeypatch.setattr(store, "renew_job_lease", hiccup)
    runner = _runner(settings, store, jobs={"lease_s": 4.0})
    drain = asyncio.create_task(runner.drain())
    await asyncio.sleep(4.2)  # past the lease taken at the claim
    assert len(failures) == 2
    assert await store.claim_job("thief", lease_s=60) is None
    assert await asyncio.wait_for(drain, 3.0) == 1
    assert RAN == [("test.slow", runner.name)]
    done = await store.get_job(job.id)
    assert done.state == "done" and done.attempts == 1
    jobs_log = [r for r in caplog.records if r.name == "wayview.jobs"]
    assert not [r for r in jobs_log if r.levelno >= 30 or r.exc_info], jobs_log


async def test_a_job_end_the_store_missed_is_recorded_once_it_answers(settings, store,
                                                                      monkeypatch):
    """PostgreSQL down when the runner records a failed attempt: the write is retried with a
    short backoff, so the job is queued again (or parked) at once, not after its lease."""
    job = await store.enqueue_job("test.boom", {})
    fail = store.fail_job
    calls: list[float] = []

    async def down_for_a_while(*args, **kwargs):
        calls.append(time.monotonic())
        if len(calls) <= 3:
            raise StoreUnavailable("database unavailable")
        return await fail(*args, **kwargs)

    monkeypatch.setattr(store, "fail_job", down_for_a_while)
    runner = _runner(settings, store, jobs={"max_attempts": 1})  # lease_s: 120 s
    started = time.monotonic()
    assert await runner.drain() == 1
    assert len(calls) == 4 and time.monotonic() - started < 5.0
    parked = await store.get_job(job.id)
    assert parked.state == "parked" and "boom at attempt 1" in parked.last_error


async def test_a_finished_job_the_store_missed_is_done_once_it_answers(settings, store,
                                                                       monkeypatch):
    RAN.clear()
    job = await store.enqueue_job("test.record", {"n": 1})
    complete = store.complete_job
    calls: list[float] = []

    async def down_for_a_while(*args, **kwargs):
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise StoreUnavailable("database unavailable")
        return await complete(*args, **kwargs)

    monkeypatch.setattr(store, "complete_job", down_for_a_while)
    assert await _runner(settings, store).drain() == 1
    assert len(calls) == 3 and RAN == [("test.record", 1)]
    assert (await store.get_job(job.id)).state == "done"


async def test_a_lease_too_short_for_the_slowest_call_is_warned_about(settings, store, caplog):
    s3 = settings.s3.model_copy(update={"timeout_s": 10.0})
    settings = settings.model_copy(update={"blobs_url": "s3://bucket/p", "s3": s3})
    runner = _runner(settings, store, jobs={"lease_s": 20.0})
    runner.stop()
    await runner.run_forever()
    [warning] = [r for r in caplog.records if r.levelno == 30 and r.name == "wayview.jobs"]
    assert "jobs.lease_s = 20 s is less than 3 × the longest blocking call" in (
        warning.getMessage())
