"""A terminal progress bar with rate and ETA (the CLI's main thread).

On a terminal it redraws one line at most ten times a second; otherwise (a log, CI) it writes a
line at every tenth of the way, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:d}:{secs:02d}"


class ProgressBar:
    def __init__(
        self, total: int, *, label: str, unit: str = "frames", stream: TextIO | None = None
    ):
        self.total = max(1, total)
        self.label = label
        self.unit = unit
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._last_tenth = -1

    def update(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        now = time.perf_counter()
        tenth = 10 * self.done // self.total
        if self._tty and (now - self._last_draw >= 0.1 or self.done == self.total):
            self._last_draw = now
            self._stream.write("\r" + self.line(now))
            self._stream.flush()
        elif not self._tty and tenth != self._last_tenth:
            self._last_tenth = tenth
            self._stream.write(self.line(now) + "\n")

    def line(self, now: float | None = None) -> str:
        elapsed = (now if now is not None else time.perf_counter()) - self._start
        fraction = self.done / self.total
        width = 24
        filled = int(width * fraction)
        bar = "#" * filled + "-" * (width - filled)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_text = format_seconds(eta) if rate > 0 else "?"
        return (
            f"{self.label} [{bar}] {self.done}/{self.total} {self.unit} "
            f"{rate:.2f}/s elapsed {format_seconds(elapsed)} ETA {eta_text}"
        )

    def close(self) -> None:
        if self._tty:
            self._stream.write("\n")
        self._stream.flush()
