"""Time as the live path sees it: an injectable clock and one frame's timestamps (any thread).

Every time is a `time.perf_counter()` reading (or a fake clock's, in tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

Clock = Callable[[], float]
"""Seconds on a monotonic clock; `time.perf_counter` in production, a fake in tests."""


@dataclass(frozen=True)
class FrameTiming:
    """When each step of one frame happened (perf_counter seconds; nan = not yet)."""

    capture: float
    features: float = math.nan
    motion: float = math.nan
    pixels: float = math.nan
    sent: float = math.nan

    def with_sent(self, when: float) -> FrameTiming:
        return replace(self, sent=when)

    @property
    def latency(self) -> float:
        return self.sent - self.capture
