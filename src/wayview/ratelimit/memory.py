"""wayview.ratelimit.memory: fixed-window counters in this process's memory.

Exact within one process: `hit` never awaits between reading and updating a counter, and the
event loop runs one coroutine at a time. With `serve --workers N` each process counts for
itself (an app can reach N times its budget); the Redis limiter of the scale-out deployment
counts across processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from wayview.ratelimit.base import UNLIMITED, Decision, window_of

_SWEEP_EVERY = 10_000


class MemoryLimiter:
    """`RateLimiter` on a dict of (window index, count) per key."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: dict[tuple[str, int], tuple[int, int]] = {}
        self._since_sweep = 0

    def _state(self, key: str, window_s: int) -> tuple[tuple[str, int], int, int, float]:
        index, reset_in = window_of(self._clock(), window_s)
        slot = (key, window_s)
        stored = self._counts.get(slot)
        count = stored[1] if stored is not None and stored[0] == index else 0
        return slot, index, count, reset_in

    async def hit(self, key: str, limit: int, window_s: int) -> Decision:
        """Count one hit unless the window's budget is spent."""
        if limit <= 0:
            return UNLIMITED
        slot, index, count, reset_in = self._state(key, window_s)
        if count >= limit:
            return Decision(False, count, limit, reset_in)
        self._counts[slot] = (index, count + 1)
        self._since_sweep += 1
        if self._since_sweep >= _SWEEP_EVERY:
            self._sweep()
        return Decision(True, count + 1, limit, reset_in)

    async def peek(self, key: str, limit: int, window_s: int) -> Decision:
        """The window's state, not counted."""
        if limit <= 0:
            return UNLIMITED
        _, _, count, reset_in = self._state(key, window_s)
        return Decision(count < limit, count, limit, reset_in)

    async def release(self, key: str, window_s: int) -> None:
        """Give back one hit of the current window."""
        slot, index, count, _ = self._state(key, window_s)
        if count > 0:
            self._counts[slot] = (index, count - 1)

    async def close(self) -> None:
        """Nothing to release."""

    def _sweep(self) -> None:
        """Forget counters of windows that have ended."""
        self._since_sweep = 0
        now = self._clock()
        self._counts = {
            slot: v for slot, v in self._counts.items() if v[0] == int(now // slot[1])
        }
