"""The Redis limiter: exact budgets shared by several limiters (processes), windows, outages."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import redis_server
from wayview.errors import LimiterUnavailable
from wayview.ratelimit import MemoryLimiter, open_limiter
from wayview.ratelimit.redis import RedisLimiter


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0  # the start of a minute

    def __call__(self) -> float:
        return self.now


async def test_budget_is_exact_across_limiters_under_concurrency(redis_url: str) -> None:
    clock = Clock()
    # Two processes' limiters, one Redis. 150 hits at once open 150 connections: under a
    # loaded CI machine some take longer than the shipped 0.5 s connect timeout, and a hit
    # that times out is allowed uncounted (fail open); this test is about exactness.
    a = RedisLimiter(redis_url, clock=clock, timeout_s=10.0)
    b = RedisLimiter(redis_url, clock=clock, timeout_s=10.0)
    try:
        key = f"graph:{uuid.uuid4().hex}"
        results = await asyncio.gather(
            *((a if i % 2 else b).hit(key, 100, 60) for i in range(150)))
        assert sum(d.allowed for d in results) == 100
        refused = [d for d in results if not d.allowed]
        assert len(refused) == 50 and all(
            d.count == 100 and d.usage_percent == 100 for d in refused)
        assert sorted(d.count for d in results if d.allowed) == list(range(1, 101))
        assert (await a.peek(key, 100, 60)).count == 100  # refused hits were not counted
        clock.now += 60
        fresh = await b.hit(key, 100, 60)
        assert fresh.allowed and fresh.count == 1 and fresh.retry_after_s == 60
    finally:  # a failure must not leave 150 sockets for the next test's GC to report
        await a.close()
        await b.close()


async def test_keys_and_windows_are_separate(redis_url: str) -> None:
    clock = Clock()
    lim = RedisLimiter(redis_url, clock=clock)
    app = uuid.uuid4().hex
    assert (await lim.hit(f"tiles:{app}", 1, 86_400)).allowed
    assert not (await lim.hit(f"tiles:{app}", 1, 86_400)).allowed
    assert (await lim.hit(f"graph:{app}", 1, 60)).allowed  # another budget
    assert (await lim.hit(f"tiles:{app}", 0, 86_400)).allowed  # 0 = no limit
    await lim.close()


async def test_unreachable_redis_fails_open(tmp_path: Path) -> None:
    lim = RedisLimiter(f"unix://{tmp_path}/nothing.sock", fail_open=True)
    assert (await lim.hit("graph:1", 10, 60)).allowed
    assert (await lim.peek("graph:1", 10, 60)).allowed
    await lim.close()


async def test_unreachable_redis_fails_closed_as_a_transient_outage(tmp_path: Path) -> None:
    lim = RedisLimiter(f"unix://{tmp_path}/nothing.sock", fail_open=False)
    with pytest.raises(LimiterUnavailable):  # 503 is_transient, not E14: no quota was spent
        await lim.hit("graph:1", 10, 60)
    with pytest.raises(LimiterUnavailable):
        await lim.peek("graph:1", 10, 60)
    await lim.close()


async def test_an_outage_is_one_line_when_it_starts_and_one_when_it_ends(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wayview.ratelimit")
    with redis_server(tmp_path) as url:
        lim = RedisLimiter(url, timeout_s=0.3)
        lim.outage.probe_every_s = 0.0  # every call probes: the log must still say it once
        lim.outage.probe_timeout_s = 0.0
        assert (await lim.hit("graph:1", 10, 60)).allowed
    started = time.monotonic()
    for _ in range(50):  # Redis gone: every hit is allowed, fast, and logged once
        assert (await lim.hit("graph:1", 10, 60)).allowed
    assert time.monotonic() - started < 50 * 0.3
    lines = [r for r in caplog.records if r.name == "wayview.ratelimit"]
    assert len(lines) == 1 and "unavailable" in lines[0].getMessage()
    assert lines[0].exc_info is None
    with redis_server(tmp_path) as url:  # the same socket path: the same URL
        for _ in range(5):
            assert (await lim.hit("graph:1", 10, 60)).allowed
    lines = [r.getMessage() for r in caplog.records if r.name == "wayview.ratelimit"]
    assert len(lines) == 2 and "available again" in lines[1] and "50 failed" in lines[1]
    await lim.close()


async def test_during_an_outage_most_calls_do_not_wait_for_redis(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        proc_sock = url
        lim = RedisLimiter(proc_sock, timeout_s=0.5)
        assert (await lim.hit("graph:1", 10, 60)).allowed
    started = time.monotonic()
    results = await asyncio.gather(*(lim.hit("graph:1", 10, 60) for _ in range(200)))
    assert all(d.allowed for d in results) and time.monotonic() - started < 1.0
    await lim.close()


def test_settings_pick_the_limiter(redis_url: str) -> None:
    assert isinstance(open_limiter(""), MemoryLimiter)
    assert isinstance(open_limiter(redis_url), RedisLimiter)


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_release_gives_back_one_hit_never_below_zero(kind: str, redis_url: str) -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock) if kind == "memory" else RedisLimiter(redis_url, clock=clock)
    key = f"login:{uuid.uuid4().hex}"
    assert (await limiter.hit(key, 2, 60)).allowed
    assert (await limiter.hit(key, 2, 60)).allowed
    assert not (await limiter.hit(key, 2, 60)).allowed
    await limiter.release(key, 60)
    assert (await limiter.peek(key, 2, 60)).count == 1
    assert (await limiter.hit(key, 2, 60)).allowed
    for _ in range(5):
        await limiter.release(key, 60)
    assert (await limiter.peek(key, 2, 60)).count == 0
    await limiter.close()
