"""wayview.ratelimit.redis: fixed-window counters in Redis, shared by every process.

One Lua script per hit reads the window's counter, refuses when the budget is spent and
otherwise increments it (setting its expiry on the first hit), atomically inside Redis: the
count is exact however many processes and hosts share the budget, and refused requests are
not counted — the same semantics as `MemoryLimiter`.

If Redis cannot be reached, `fail_open` decides: allow the request (and log, the default: an
outage of the limiter should not take the API down) or refuse it with E14.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wayview.ratelimit.base import UNLIMITED, Decision, window_of

log = logging.getLogger("wayview.ratelimit")

_HIT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then return {0, count} end
count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return {1, count}
"""

_RELEASE = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


class RedisLimiter:
    """`RateLimiter` on a Redis server (`redis://host:port/db` or `unix:///path`)."""

    def __init__(self, url: str, *, prefix: str = "wayview:rl:", fail_open: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis: Any = aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._hit = self._redis.register_script(_HIT)
        self._release = self._redis.register_script(_RELEASE)
        self._prefix = prefix
        self._fail_open = fail_open
        self._clock = clock

    def _key(self, key: str, window_s: int) -> tuple[str, int, float]:
        index, reset_in = window_of(self._clock(), window_s)
        return f"{self._prefix}{window_s}:{index}:{key}", index, reset_in

    async def hit(self, key: str, limit: int, window_s: int) -> Decision:
        """Count one hit unless the window's budget is spent (atomic in Redis)."""
        if limit <= 0:
            return UNLIMITED
        name, _, reset_in = self._key(key, window_s)
        try:
            allowed, count = await self._hit(keys=[name], args=[limit, window_s + 60])
        except (RedisError, OSError) as exc:
            return self._unavailable(exc, limit, reset_in)
        return Decision(bool(allowed), int(count), limit, reset_in)

    async def peek(self, key: str, limit: int, window_s: int) -> Decision:
        """The window's state without counting."""
        if limit <= 0:
            return UNLIMITED
        name, _, reset_in = self._key(key, window_s)
        try:
            raw = await self._redis.get(name)
        except (RedisError, OSError) as exc:
            return self._unavailable(exc, limit, reset_in)
        count = int(raw or 0)
        return Decision(count < limit, count, limit, reset_in)

    async def release(self, key: str, window_s: int) -> None:
        """Give back one hit of the current window (atomic; a lost Redis is only logged)."""
        name, _, _ = self._key(key, window_s)
        try:
            await self._release(keys=[name])
        except (RedisError, OSError) as exc:
            log.error("rate limiter unavailable (%s) while releasing a hit",
                      type(exc).__name__)

    def _unavailable(self, exc: BaseException, limit: int, reset_in: float) -> Decision:
        log.error("rate limiter unavailable (%s): %s", type(exc).__name__,
                  "allowing" if self._fail_open else "refusing")
        if self._fail_open:
            return Decision(True, 0, limit, reset_in)
        return Decision(False, limit, limit, min(reset_in, 5.0))

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
