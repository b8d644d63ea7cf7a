"""wayview.ratelimit: request budgets per app (spec §9) and sign-in throttling.

`RateLimiter` is the interface; `MemoryLimiter` counts inside one process (the embedded
default); a shared implementation (Redis) counts across processes in the scale-out deployment.
"""

from __future__ import annotations

from wayview.ratelimit.base import Decision, RateLimiter, window_of
from wayview.ratelimit.memory import MemoryLimiter

__all__ = ["Decision", "MemoryLimiter", "RateLimiter", "open_limiter", "window_of"]


def open_limiter(redis_url: str, *, fail_open: bool = True,
                 timeout_s: float = 0.5) -> RateLimiter:
    """The limiter of a deployment: Redis when `redis_url` is set, else in-process."""
    if redis_url:
        from wayview.ratelimit.redis import RedisLimiter

        return RedisLimiter(redis_url, fail_open=fail_open, timeout_s=timeout_s)
    return MemoryLimiter()
