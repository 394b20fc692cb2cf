"""The live engine's 16 kHz audio history (inference worker thread only).

Samples get absolute indices from the engine's start (frame k at 25 fps is samples
[640 k, 640 k + 640)), so features, frames and the recording agree on one timeline. The
capture time of sample i is `base + (i + 1) / 16000`; `base` is the smallest offset seen over
the last couple of seconds, because a block can only be reported late, never early: this removes
the callback scheduling jitter and follows slow clock drift. One continuous stream is one clock
segment with one base; a new stream (device reconnect) or synthetic silence starts another.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np
import numpy.typing as npt

from runtime.model.contract import SAMPLE_RATE, SAMPLES_PER_FRAME

Array = npt.NDArray[np.float32]


class AudioTimeline:
    def __init__(self, *, keep_seconds: float = 12.0, clock_window_s: float = 2.0) -> None:
        self._data = np.zeros(int(keep_seconds * SAMPLE_RATE), np.float32)
        self.total = 0
        self._clock_window = clock_window_s
        self._observed: deque[tuple[float, float]] = deque()  # (when, base) in this segment
        self._seg_start: list[int] = []  # first sample index of each clock segment
        self._seg_base: list[float] = []

    @property
    def capacity(self) -> int:
        return int(self._data.shape[0])

    @property
    def oldest(self) -> int:
        return max(0, self.total - self.capacity)

    @property
    def frames(self) -> int:
        """Complete 25 fps frames so far."""
        return self.total // SAMPLES_PER_FRAME

    def append(self, samples: Array, end_time: float, *, new_segment: bool = False) -> int:
        """Add captured samples whose last one was captured at `end_time`; returns the index
        of the first."""
        first = self.total
        self._write(samples)
        base = end_time - self.total / SAMPLE_RATE
        if new_segment or not self._seg_base:
            self._observed.clear()
            self._new_segment(first, base)
        self._observed.append((end_time, base))
        while self._observed and self._observed[0][0] < end_time - self._clock_window:
            self._observed.popleft()
        # One continuous stream has one clock: the estimate applies to all of it.
        self._seg_base[-1] = min(b for _, b in self._observed)
        return first

    def append_silence(self, n: int, end_time: float) -> int:
        """Synthetic silence (no input): its own clock segment, ending at `end_time`."""
        first = self.total
        self._write(np.zeros(n, np.float32))
        self._observed.clear()
        self._new_segment(first, end_time - self.total / SAMPLE_RATE)
        return first

    def pad_last_frame(self) -> int:
        """Complete a partial last frame by repeating the last sample (the reference's
        replicate padding at the end of an utterance); returns how many were added."""
        missing = -self.total % SAMPLES_PER_FRAME
        if missing and self.total:
            last = self._data[(self.total - 1) % self.capacity]
            self._write(np.full(missing, last, np.float32))
        return missing

    def _new_segment(self, first: int, base: float) -> None:
        if self._seg_start and self._seg_start[-1] == first:
            self._seg_base[-1] = base
        else:
            self._seg_start.append(first)
            self._seg_base.append(base)
        while len(self._seg_start) > 2 and self._seg_start[1] < self.oldest:
            del self._seg_start[0], self._seg_base[0]

    def _write(self, samples: Array) -> None:
        n = samples.shape[0]
        cap = self.capacity
        if n >= cap:
            samples, self.total = samples[n - cap :], self.total + n - cap
            n = cap
        start = self.total % cap
        first = min(n, cap - start)
        self._data[start : start + first] = samples[:first]
        self._data[: n - first] = samples[first:]
        self.total += n

    def samples(self, start: int, stop: int) -> Array:
        if start < self.oldest or stop > self.total or start > stop:
            raise IndexError(f"samples [{start}, {stop}) outside [{self.oldest}, {self.total})")
        out: Array = self._data[np.arange(start, stop) % self.capacity]
        return out

    def capture_time(self, index: int) -> float:
        """When sample `index` was captured (perf_counter seconds)."""
        if not self._seg_start:
            return math.nan
        k = max(0, bisect.bisect_right(self._seg_start, index) - 1)
        return self._seg_base[k] + (index + 1) / SAMPLE_RATE

    def frame_capture_time(self, frame: int) -> float:
        """When the last sample of 25 fps frame `frame` was captured."""
        return self.capture_time((frame + 1) * SAMPLES_PER_FRAME - 1)

    @property
    def end_time(self) -> float:
        return self.capture_time(self.total - 1) if self.total else math.nan
