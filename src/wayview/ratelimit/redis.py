"""wayview.ratelimit.redis: fixed-window counters in Redis, shared by every process.

One Lua script per hit reads the window's counter, refuses when the budget is spent and
otherwise increments it (setting its expiry on the first hit), atomically inside Redis: the
count is exact however many processes and hosts share the budget, and refused requests are
not counted — the same semantics as `MemoryLimiter`.

If Redis cannot be reached (each call waits at most `timeout_s`), `fail_open` decides: allow
the request (the default: an outage of the limiter should not take the API down) or refuse it
with a transient 503 (`LimiterUnavailable`), never E14: an outage is not a spent quota. The
outage is logged once when it starts and once when it ends (`wayview.logs.Outage`); while it
lasts one call per 0.2 s probes Redis and the others decide at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wayview.errors import LimiterUnavailable
from wayview.logs import Outage
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
                 clock: Callable[[], float] = time.time, timeout_s: float = 0.5) -> None:
        self._redis: Any = aioredis.from_url(url, socket_timeout=timeout_s,
                                             socket_connect_timeout=timeout_s)
        self.outage = Outage(log, "rate limiter (Redis)", effect=(
            "allowing requests uncounted" if fail_open else "answering 503 until it is back"),
            probe_timeout_s=timeout_s)
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
        if not self.outage.attempt():
            return self._unavailable(None, limit, reset_in)
        try:
            allowed, count = await self._hit(keys=[name], args=[limit, window_s + 60])
        except (RedisError, OSError) as exc:
            return self._unavailable(exc, limit, reset_in)
        self.outage.up()
        return Decision(bool(allowed), int(count), limit, reset_in)

    async def peek(self, key: str, limit: int, window_s: int) -> Decision:
        """The window's state without counting."""
        if limit <= 0:
            return UNLIMITED
        name, _, reset_in = self._key(key, window_s)
        if not self.outage.attempt():
            return self._unavailable(None, limit, reset_in)
        try:
            raw = await self._redis.get(name)
        except (RedisError, OSError) as exc:
            return self._unavailable(exc, limit, reset_in)
        self.outage.up()
        count = int(raw or 0)
        return Decision(count < limit, count, limit, reset_in)

    async def release(self, key: str, window_s: int) -> None:
        """Give back one hit of the current window (atomic; a lost Redis is only logged)."""
        name, _, _ = self._key(key, window_s)
        if not self.outage.attempt():
            return
        try:
            await self._release(keys=[name])
        except (RedisError, OSError) as exc:
            self.outage.down(exc)
        else:
            self.outage.up()

    def _unavailable(self, exc: BaseException | None, limit: int, reset_in: float) -> Decision:
        """Allow (fail open) or raise LimiterUnavailable; `exc` None = skipped during an
        outage without calling Redis."""
        if exc is not None:
            self.outage.down(exc)
        if self._fail_open:
            return Decision(True, 0, limit, reset_in)
        raise LimiterUnavailable()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
