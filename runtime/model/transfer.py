"""Progress of a model transfer (download, copy, verify): the value type, a sliding-window rate
meter and a throttling reporter. Runs on the thread doing the transfer; the callback is called
on that same thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from runtime.core.units import human_bytes, human_duration


@dataclass(frozen=True)
class TransferProgress:
    """Where a download or import stands. Sizes in bytes; `speed` in bytes/s."""

    phase: Literal["download", "copy", "verify"]
    path: str
    file_index: int
    file_count: int
    file_done: int
    file_total: int | None
    done: int
    total: int | None
    speed: float | None
    eta: float | None

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


ProgressCallback = Callable[[TransferProgress], None]


class RateMeter:
    """Transfer speed over a sliding window, so a stall shows up within seconds."""

    def __init__(self, *, window: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self._window = window
        self._clock = clock
        self._samples: list[tuple[float, int]] = []

    def update(self, done: int) -> float | None:
        now = self._clock()
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.pop(0)
        t0, d0 = self._samples[0]
        if now - t0 < 0.2:
            return None
        return max(0.0, (done - d0) / (now - t0))


@dataclass
class ProgressReporter:
    """Throttles progress callbacks and fills in speed and ETA (not thread-safe)."""

    callback: ProgressCallback | None
    total: int | None
    file_count: int
    interval: float = 0.1
    done: int = 0
    _meter: RateMeter = field(default_factory=RateMeter)
    _last: float = -1.0

    def report(
        self,
        *,
        phase: Literal["download", "copy", "verify"],
        path: str,
        file_index: int,
        file_done: int,
        file_total: int | None,
        force: bool = False,
    ) -> None:
        speed = self._meter.update(self.done)
        if self.callback is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        eta = None
        if speed and self.total is not None:
            eta = max(0.0, self.total - self.done) / speed
        self.callback(
            TransferProgress(
                phase=phase,
                path=path,
                file_index=file_index,
                file_count=self.file_count,
                file_done=file_done,
                file_total=file_total,
                done=self.done,
                total=self.total,
                speed=speed,
                eta=eta,
            )
        )


def format_progress(p: TransferProgress) -> str:
    """One line for a terminal: file, bytes, percentage, speed and time left."""
    total = human_bytes(p.total) if p.total is not None else "?"
    parts = [f"[{p.file_index + 1}/{p.file_count}] {p.path}", f"{human_bytes(p.done)} / {total}"]
    if p.fraction is not None:
        parts.append(f"{100 * p.fraction:.0f}%")
    if p.speed:
        parts.append(f"{human_bytes(p.speed)}/s")
    if p.eta is not None:
        parts.append(f"{human_duration(p.eta)} left")
    return "  ".join(parts)
