"""The virtual microphone's delay line: captured audio out again exactly `delay` later.

Threads: `write` runs on the capture callback (PortAudio's input thread), `read` on the output
callback (PortAudio's output thread), `set_delay` and `status` on any thread. The ring and the
block records are written before the counters that publish them, like the capture ring, so
no lock is shared with the real-time callbacks.

Drift-free by construction: the delay is kept in capture samples, not wall time. Each capture
block tells how many samples have been captured and when it arrived; the smallest
`arrival - samples / rate` over the last couple of seconds is the capture clock's origin (a
block can be reported late, never early). For each output block the line works out which
capture sample must be heard at the moment that block reaches the device (output latency
included) and compares it with where it is reading: the difference steers the read speed by at
most `max_correction` (0.2 %, inaudible), so output and input devices that tick at slightly
different rates never pile up or starve, however long the call. A change of the target delay
larger than `jump_s` (the engine's latency moved) is applied at once with an equal-power
crossfade between the old and the new read position (never a click or a gap); smaller ones by
the same gentle speed steering.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class DelayLineConfig:
    capacity_s: float = 10.0
    crossfade_s: float = 0.03
    jump_s: float = 0.02
    """Target changes (or errors) beyond this are applied by a crossfaded jump."""
    max_correction: float = 0.002
    steer_s: float = 5.0
    """An error of e seconds changes the read speed by e / steer_s (clipped)."""
    smooth_s: float = 0.5
    """Time constant of the error's smoothing."""
    out_clock_window_s: float = 2.0
    """The output device's clock (when each output sample is heard) is the median over this
    long of what the callbacks report: their wake-up times and latency readings jitter by
    milliseconds, the device's sample clock does not."""
    clock_window_s: float = 2.0
    gap_s: float = 0.2
    """Blocks arriving this much later than the sample count explains start a new clock
    segment (the input stream was reopened)."""


@dataclass(frozen=True)
class DelayLineStatus:
    rate: int
    target_ms: float
    delay_ms: float  # the delay in effect at the last read (nan before the first)
    underruns: int  # output blocks that needed audio the input had not delivered yet
    jumps: int  # crossfaded changes of the delay


class DelayLine:
    N_RECORDS = 512

    def __init__(self, *, rate: int, config: DelayLineConfig, delay_s: float) -> None:
        self.rate = rate
        self.config = config
        self._data = np.zeros(max(1, round(config.capacity_s * rate)), np.float32)
        self._rec_end = np.zeros(self.N_RECORDS, np.int64)
        self._rec_base = np.zeros(self.N_RECORDS, np.float64)
        self._rec_when = np.zeros(self.N_RECORDS, np.float64)
        self._records = 0  # published after the record
        self._segment_first = 0  # first record of the current clock segment
        self.written = 0  # published after the data
        self._target = delay_s
        # reader state (output thread)
        self._pos: float | None = None
        self._err = 0.0
        self._old_pos = 0.0
        self._fade_total = 0
        self._fade_left = 0
        self._out_total = 0  # output samples produced
        self._out_obs: deque[tuple[float, float]] = deque()  # (play time, out clock origin)
        self._delay_now = math.nan
        self.underruns = 0
        self.jumps = 0

    # -- any thread ---------------------------------------------------------------------------

    def set_delay(self, seconds: float) -> None:
        if not math.isfinite(seconds):
            raise ValueError(f"delay must be finite, not {seconds}")
        cap = self.config.capacity_s - 1.0
        self._target = min(max(seconds, 0.0), cap)

    @property
    def target_s(self) -> float:
        return self._target

    def status(self) -> DelayLineStatus:
        return DelayLineStatus(
            rate=self.rate,
            target_ms=self._target * 1e3,
            delay_ms=self._delay_now * 1e3,
            underruns=self.underruns,
            jumps=self.jumps,
        )

    # -- capture thread -----------------------------------------------------------------------

    def write(self, block: Array, when: float) -> None:
        n = block.shape[0]
        size = self._data.shape[0]
        if n >= size:
            block = block[n - size :]
            self.written += n - size
            n = size
        w = self.written % size
        first = min(n, size - w)
        self._data[w : w + first] = block[:first]
        if first < n:
            self._data[: n - first] = block[first:]
        end = self.written + n
        base = when - end / self.rate
        r = self._records
        if r > self._segment_first:
            lo = max(self._segment_first, r - self.N_RECORDS // 2)
            recent = self._rec_base[np.arange(lo, r) % self.N_RECORDS]
            if base - float(recent.min()) > self.config.gap_s:
                self._segment_first = r
        k = r % self.N_RECORDS
        self._rec_end[k], self._rec_base[k], self._rec_when[k] = end, base, when
        self.written = end
        self._records = r + 1

    # -- output thread ------------------------------------------------------------------------

    def _base(self) -> float | None:
        """The capture clock's origin: sample i was captured at base + (i + 1) / rate."""
        r = self._records
        lo = max(self._segment_first, r - self.N_RECORDS // 2)
        if r <= lo:
            return None
        idx = np.arange(lo, r) % self.N_RECORDS
        when = self._rec_when[idx]
        recent = when >= when[-1] - self.config.clock_window_s
        return float(self._rec_base[idx][recent].min())

    def read(self, n: int, play_time: float, out_rate: int) -> Array:
        """`n` output samples at `out_rate`, the first of which is heard at `play_time`."""
        base = self._base()
        if base is None or n <= 0:
            return np.zeros(max(n, 0), np.float32)
        cfg = self.config
        step = self.rate / out_rate
        obs = self._out_obs
        obs.append((play_time, play_time - self._out_total / out_rate))
        while obs[0][0] < play_time - cfg.out_clock_window_s:
            obs.popleft()
        play_time = float(np.median([o for _, o in obs])) + self._out_total / out_rate
        self._out_total += n
        want = (play_time - self._target - base) * self.rate - 1.0  # capture sample to play
        if self._pos is None:
            self._pos, self._err = float(round(want)), 0.0
        err = want - self._pos
        alpha = min(1.0, n / out_rate / cfg.smooth_s)
        self._err += alpha * (err - self._err)
        fresh = play_time - float(self._rec_when[(self._records - 1) % self.N_RECORDS]) < 0.5
        if abs(self._err) > cfg.jump_s * self.rate and self._fade_left == 0:
            # Jump; the old read position plays on, fading out, for `crossfade_s`.
            self._old_pos = self._pos
            self._fade_total = max(1, round(cfg.crossfade_s * out_rate))
            self._fade_left = self._fade_total
            self._pos, self._err = float(round(want)), 0.0
            self.jumps += 1
            speed = step
        else:
            correction = self._err / self.rate / cfg.steer_s
            correction = min(max(correction, -cfg.max_correction), cfg.max_correction)
            speed = step * (1.0 + correction)
        k = np.arange(n, dtype=np.float64)
        out = self._fetch(self._pos + speed * k, count_underrun=fresh)
        if self._fade_left:
            m = min(n, self._fade_left)
            old = self._fetch(self._old_pos + step * k[:m], count_underrun=False)
            done = self._fade_total - self._fade_left
            theta = (done + np.arange(m) + 0.5) / self._fade_total * (math.pi / 2)
            out[:m] = old * np.cos(theta) + out[:m] * np.sin(theta)
            self._old_pos += step * m
            self._fade_left -= m
        self._delay_now = play_time - (base + (self._pos + 1.0) / self.rate)
        self._pos += speed * n
        return out

    def _fetch(self, positions: npt.NDArray[np.float64], *, count_underrun: bool) -> Array:
        """Linear interpolation at fractional capture positions; missing samples are zeros."""
        written = self.written
        size = self._data.shape[0]
        lo = np.floor(positions).astype(np.int64)
        frac = (positions - lo).astype(np.float32)
        hi = lo + 1
        valid_lo = (lo >= written - size) & (lo < written)
        valid_hi = (hi >= written - size) & (hi < written)
        if count_underrun and positions.size and hi[-1] >= written:
            self.underruns += 1
        a = np.where(valid_lo, self._data[lo % size], 0.0)
        b = np.where(valid_hi, self._data[hi % size], 0.0)
        out: Array = (a * (1.0 - frac) + b * frac).astype(np.float32)
        return out
