"""wayview.ratelimit: request budgets per app (spec §9) and sign-in throttling.

`RateLimiter` is the interface; `MemoryLimiter` counts inside one process (the embedded
default); a shared implementation (Redis) counts across processes in the scale-out deployment.
"""

from __future__ import annotations

from wayview.ratelimit.base import Decision, RateLimiter, window_of
from wayview.ratelimit.memory import MemoryLimiter

__all__ = ["Decision", "MemoryLimiter", "RateLimiter", "window_of"]
