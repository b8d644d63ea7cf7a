"""The durable job queue contract (every store backend): claim, lease, retry, park."""

from __future__ import annotations

import asyncio
import time

from wayview.testing import open_test_store


def _now() -> int:
    return int(time.time() * 1000)


async def test_claim_takes_due_jobs_oldest_first_and_only_once(store):
    a = await store.enqueue_job("k", {"n": 1})
    b = await store.enqueue_job("k", {"n": 2})
    later = await store.enqueue_job("k", {"n": 3}, delay_s=3600)
    first = await store.claim_job("w1", lease_s=10_000)
    second = await store.claim_job("w2", lease_s=10_000)
    assert (first.id, second.id) == (a.id, b.id)
    assert first.state == "running" and first.attempts == 1 and first.worker == "w1"
    assert await store.claim_job("w3", lease_s=60) is None  # `later` is not due
    assert (await store.claim_job("w3", lease_s=60, now_ms=_now() + 3_601_000)).id == later.id


async def test_get_job_reads_one_job_by_id(store):
    job = await store.enqueue_job("k", {"n": 1})
    await store.claim_job("w", lease_s=60)
    found = await store.get_job(job.id)
    assert found is not None and found.id == job.id and found.payload == {"n": 1}
    assert found.state == "running" and found.worker == "w"
    assert await store.get_job(job.id + 1000) is None


async def test_concurrent_claims_never_share_a_job(store):
    for n in range(20):
        await store.enqueue_job("k", {"n": n})
    claims = await asyncio.gather(*(store.claim_job(f"w{i}", lease_s=60) for i in range(30)))
    ids = [job.id for job in claims if job is not None]
    assert len(ids) == 20 and len(set(ids)) == 20


async def test_expired_lease_is_taken_over_and_the_old_worker_loses_it(store):
    job = await store.enqueue_job("k", {})
    await store.claim_job("dead", lease_s=60)
    assert await store.claim_job("other", lease_s=60) is None
    taken = await store.claim_job("other", lease_s=60, now_ms=_now() + 61_000)
    assert taken.id == job.id and taken.attempts == 2 and taken.worker == "other"
    assert not await store.complete_job(job.id, "dead")
    assert not await store.renew_job_lease(job.id, "dead", lease_s=60)
    assert await store.renew_job_lease(job.id, "other", lease_s=60)
    assert await store.complete_job(job.id, "other")
    [done] = await store.list_jobs(states=("done",))
    assert done.id == job.id


async def test_failed_job_is_retried_later_then_parked_and_requeued_by_the_operator(store):
    job = await store.enqueue_job("k", {}, dedupe_key="x")
    await store.claim_job("w", lease_s=60)
    assert await store.fail_job(job.id, "w", "boom", retry_in_s=30)
    assert await store.claim_job("w", lease_s=60) is None  # backing off
    again = await store.claim_job("w", lease_s=60, now_ms=_now() + 31_000)
    assert again.attempts == 2 and again.last_error == "boom"
    assert await store.fail_job(job.id, "w", "boom again", retry_in_s=None)
    [parked] = await store.list_jobs(states=("parked",))
    assert parked.last_error == "boom again"
    assert await store.claim_job("w", lease_s=60, now_ms=_now() + 10**9) is None
    # a parked job still holds its dedupe key: producers do not queue a twin
    assert (await store.enqueue_job("k", {}, dedupe_key="x")).id == job.id
    assert (await store.job_counts())["parked"] == 1
    assert await store.retry_jobs() == 1
    retried = await store.claim_job("w", lease_s=60)
    assert retried.id == job.id and retried.attempts == 1


async def test_jobs_survive_a_restart(settings):
    async with open_test_store(settings) as store:
        running = await store.enqueue_job("k", {"b": 1})
        assert (await store.claim_job("gone", lease_s=1)).id == running.id
        queued = await store.enqueue_job("k", {"a": [1, 2]})
    async with open_test_store(settings) as store:
        assert [j.id for j in await store.list_jobs()] == [queued.id, running.id]
        first = await store.claim_job("w", lease_s=60)
        assert first.payload == {"a": [1, 2]}
        taken = await store.claim_job("w", lease_s=60, now_ms=_now() + 2_000)
        assert taken is not None and taken.payload == {"b": 1} and taken.attempts == 2


async def test_job_queue_stats_count_unfinished_jobs_per_kind(store):
    assert await store.job_queue_stats(_now()) == []
    old = await store.enqueue_job("ingest", {"n": 1})
    await store.enqueue_job("ingest", {"n": 2})
    await store.enqueue_job("ingest", {"n": 3}, delay_s=3600)  # queued, not due
    await store.enqueue_job("export", {"n": 4})
    done = await store.enqueue_job("export", {"n": 5})
    await store.claim_job("w", lease_s=60, kinds=("export",))  # n=4: stays running
    await store.claim_job("w", lease_s=60, kinds=("export",))  # n=5
    await store.complete_job(done.id, "w")  # one export done, one still running
    parked = await store.enqueue_job("sfm", {})
    await store.claim_job("w", lease_s=60, kinds=("sfm",))
    await store.fail_job(parked.id, "w", "boom", retry_in_s=None)
    now = _now() + 1000
    stats = {s.kind: s for s in await store.job_queue_stats(now)}
    assert sorted(stats) == ["export", "ingest", "sfm"]
    ingest = stats["ingest"]
    assert (ingest.queued, ingest.due, ingest.running, ingest.parked) == (3, 2, 0, 0)
    assert ingest.oldest_due_ms == old.run_after_ms
    export = stats["export"]
    assert (export.queued, export.due, export.running, export.parked) == (0, 0, 1, 0)
    assert export.oldest_due_ms is None
    assert (stats["sfm"].parked, stats["sfm"].queued) == (1, 0)
