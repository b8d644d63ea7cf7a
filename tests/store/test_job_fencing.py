"""The job queue's claim fence (every store backend): renew, complete and fail given the
claim's attempt number fail for an older claim of the same job, even under the same worker
name (two lanes of one runner; issue #22)."""

from __future__ import annotations

import time


def _now() -> int:
    return int(time.time() * 1000)


async def test_an_older_claim_under_the_same_name_is_fenced_off(store):
    job = await store.enqueue_job("k", {})
    first = await store.claim_job("runner", lease_s=60)
    assert first.id == job.id and first.attempts == 1
    # Its lease expired: another lane of the same runner takes the job over.
    second = await store.claim_job("runner", lease_s=60, now_ms=_now() + 61_000)
    assert second.id == job.id and second.attempts == 2
    assert not await store.renew_job_lease(job.id, "runner", lease_s=60, attempt=1)
    assert not await store.complete_job(job.id, "runner", attempt=1)
    assert not await store.fail_job(job.id, "runner", "x", retry_in_s=0, attempt=1)
    assert not await store.fail_job(job.id, "runner", "x", retry_in_s=None, attempt=1)
    assert (await store.get_job(job.id)).state == "running"
    assert await store.renew_job_lease(job.id, "runner", lease_s=60, attempt=2)
    assert await store.complete_job(job.id, "runner", attempt=2)
    done = await store.get_job(job.id)
    assert done.state == "done" and done.attempts == 2


async def test_the_current_claim_fails_and_parks_its_job(store):
    job = await store.enqueue_job("k", {})
    claim = await store.claim_job("w", lease_s=60)
    assert await store.fail_job(job.id, "w", "boom", retry_in_s=0, attempt=claim.attempts)
    again = await store.claim_job("w", lease_s=60)
    assert again.attempts == 2
    assert await store.fail_job(job.id, "w", "boom", retry_in_s=None, attempt=2)
    assert (await store.get_job(job.id)).state == "parked"


async def test_without_an_attempt_the_worker_name_alone_decides(store):
    job = await store.enqueue_job("k", {})
    await store.claim_job("w", lease_s=60)
    assert await store.renew_job_lease(job.id, "w", lease_s=60)
    assert not await store.renew_job_lease(job.id, "other", lease_s=60)
    assert await store.complete_job(job.id, "w")
