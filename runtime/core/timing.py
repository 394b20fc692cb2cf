"""Time as the live path sees it: an injectable clock, waits on it, and one frame's timestamps
(any thread).

Every time is a `time.perf_counter()` reading (or a fake clock's, in tests). A clock object may
also offer `wait(event, timeout) -> bool` (a virtual-time scheduler does): every timed wait of
the live path goes through `wait_on`, so a test can run the engine's threads in virtual time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

Clock = Callable[[], float]
"""Seconds on a monotonic clock; `time.perf_counter` in production, a fake in tests."""


def wait_on(event: threading.Event, timeout: float, clock: Clock) -> bool:
    """`event.wait(timeout)` measured on `clock`: True if the event is set.

    A clock with its own `wait` (virtual time) decides when the timeout has passed."""
    wait = getattr(clock, "wait", None)
    if wait is not None:
        return bool(wait(event, timeout))
    return event.wait(timeout)


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
