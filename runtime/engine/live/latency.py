"""Per-frame timestamps and the live engine's health numbers (thread-safe: the inference worker
records compute times, the pacer thread records published frames, any thread reads a snapshot).

Every time is a `time.perf_counter()` reading. A frame's end-to-end latency is from the capture
of what it depicts (the last audio sample of its 40 ms, or the webcam frame) to the moment it
was handed to the sinks. Only a frame's first publication counts towards latency; repeats are
counted on their own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from runtime.core.timing import Clock, FrameTiming

STAGES = ("features", "motion", "render", "hop", "server", "network")
"""Compute stages timed per hop: audio features (+ projections), sampler, renderer, total; with
remote compute, the server's compute per hop and the network round trip (pings)."""


@dataclass(frozen=True)
class StageStats:
    mean_ms: float
    p95_ms: float
    count: int


@dataclass(frozen=True)
class LatencyStats:
    """A snapshot of the last `window_s` seconds (latency, compute) and totals (counters)."""

    frames_published: int
    frames_unique: int
    output_fps: float
    """Frames sent to the sinks per second (repeats included)."""
    unique_fps: float
    """New pictures per second (first publications only)."""
    newest_latency_ms: float
    """End-to-end latency of the newest new picture."""
    latency_p50_ms: float
    latency_p95_ms: float
    # Median time from capture to each step, for the latency budget.
    to_features_ms: float
    to_motion_ms: float
    to_pixels_ms: float
    compute: dict[str, StageStats]
    real_time_factor: float
    """Compute time / media time over the window (< 1: faster than real time)."""
    counters: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            k: v for k, v in self.__dict__.items() if k not in ("compute", "counters")
        }
        out["compute"] = {k: v.__dict__ for k, v in self.compute.items()}
        out["counters"] = dict(self.counters)
        return out


def _pct(values: Iterable[float], q: float) -> float:
    arr = np.fromiter(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return math.nan
    return float(np.percentile(arr, q))


class LatencyMonitor:
    def __init__(self, *, window_s: float = 10.0, clock: Clock = time.perf_counter) -> None:
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._published: deque[float] = deque()  # sent times of every publication
        self._unique: deque[FrameTiming] = deque()  # first publications
        self._compute: dict[str, deque[tuple[float, float]]] = {s: deque() for s in STAGES}
        self._media: deque[tuple[float, float]] = deque()  # (when, media seconds) per hop
        self._counters: dict[str, int] = {}
        self._total_published = 0
        self._total_unique = 0

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        while self._published and self._published[0] < horizon:
            self._published.popleft()
        while self._unique and self._unique[0].sent < horizon:
            self._unique.popleft()
        for q in (*self._compute.values(), self._media):
            while q and q[0][0] < horizon:
                q.popleft()

    def record_published(self, timing: FrameTiming, *, first: bool) -> None:
        with self._lock:
            self._published.append(timing.sent)
            self._total_published += 1
            if first:
                self._unique.append(timing)
                self._total_unique += 1
            self._trim(timing.sent)

    def record_compute(self, stage: str, seconds: float) -> None:
        if stage not in self._compute:
            raise KeyError(f"unknown stage {stage!r}; expected one of {STAGES}")
        with self._lock:
            self._compute[stage].append((self._clock(), seconds))

    def record_media(self, seconds: float) -> None:
        """Media time produced by one hop (for the real-time factor)."""
        with self._lock:
            self._media.append((self._clock(), seconds))

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def counter(self, name: str) -> int:
        with self._lock:
            return self._counters.get(name, 0)

    def reset(self) -> None:
        with self._lock:
            self._published.clear()
            self._unique.clear()
            for q in self._compute.values():
                q.clear()
            self._media.clear()
            self._counters.clear()
            self._total_published = 0
            self._total_unique = 0

    def snapshot(self) -> LatencyStats:
        with self._lock:
            self._trim(self._clock())
            sent = list(self._published)
            unique = list(self._unique)
            compute = {s: [v for _, v in q] for s, q in self._compute.items()}
            media = sum(v for _, v in self._media)
            counters = dict(self._counters)
            total, total_unique = self._total_published, self._total_unique
        fps = (len(sent) - 1) / (sent[-1] - sent[0]) if len(sent) > 1 else 0.0
        # The share of sent frames that were new, at the output rate: the two compare directly.
        unique_fps = fps * len(unique) / len(sent) if sent else 0.0
        lat = [(u.sent - u.capture) * 1e3 for u in unique]
        hop_compute = sum(compute["hop"])
        return LatencyStats(
            frames_published=total,
            frames_unique=total_unique,
            output_fps=fps,
            unique_fps=unique_fps,
            newest_latency_ms=lat[-1] if lat else math.nan,
            latency_p50_ms=_pct(lat, 50),
            latency_p95_ms=_pct(lat, 95),
            to_features_ms=_pct(((u.features - u.capture) * 1e3 for u in unique), 50),
            to_motion_ms=_pct(((u.motion - u.capture) * 1e3 for u in unique), 50),
            to_pixels_ms=_pct(((u.pixels - u.capture) * 1e3 for u in unique), 50),
            compute={
                s: StageStats(
                    mean_ms=float(np.mean(v) * 1e3) if v else math.nan,
                    p95_ms=_pct((x * 1e3 for x in v), 95),
                    count=len(v),
                )
                for s, v in compute.items()
            },
            real_time_factor=hop_compute / media if media > 0 else math.nan,
            counters=counters,
        )
