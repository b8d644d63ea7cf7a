"""wayview.ratelimit.base: the limiter interface and its fixed-window arithmetic.

Windows are fixed and aligned to the epoch (a minute budget resets at :00 of each minute, a day
budget at 00:00 UTC), which makes a count exact and cheap to share: one counter per app and
window. A refused request is not counted, so with a budget of N exactly N requests of a window
succeed whatever the concurrency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one `hit`: allowed or not, and the state of the window after it."""

    allowed: bool
    count: int
    limit: int
    reset_in_s: float

    @property
    def usage_percent(self) -> int:
        """Share of the budget used in this window, 0–100 (spec §9 `call_count`).

        >>> Decision(True, 1, 50_000, 30.0).usage_percent, Decision(False, 9, 9, 1).usage_percent
        (0, 100)
        """
        if self.limit <= 0:
            return 0
        return min(100, self.count * 100 // self.limit)

    @property
    def retry_after_s(self) -> int:
        """Whole seconds until budget is available again (at least 1)."""
        return max(1, math.ceil(self.reset_in_s))


UNLIMITED = Decision(True, 0, 0, 0.0)


def window_of(now_s: float, window_s: int) -> tuple[int, float]:
    """The index of the fixed window holding `now_s` and the seconds until it ends.

    >>> window_of(125.5, 60)
    (2, 54.5)
    """
    index = int(now_s // window_s)
    return index, (index + 1) * window_s - now_s


class RateLimiter(Protocol):
    """Counts hits per key in fixed windows."""

    async def hit(self, key: str, limit: int, window_s: int) -> Decision:
        """Count one request against `key` unless it would exceed `limit` (0 = no limit)."""

    async def peek(self, key: str, limit: int, window_s: int) -> Decision:
        """The current window's state without counting (allowed = budget left)."""

    async def release(self, key: str, window_s: int) -> None:
        """Give back one hit of the current window (never below 0): a reserved attempt that
        turned out not to count, such as a successful sign-in."""

    async def close(self) -> None:
        """Release connections."""
