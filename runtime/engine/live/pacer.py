"""Steady frame output on absolute deadlines (the pacer thread), and motion retiming to the
output rate (called on the inference worker).

The pacer publishes exactly one frame per deadline `t0 + k / fps`. Frames carry the capture time
of what they depict; a frame is shown when `capture + playout delay` has come, so frames that
arrive in bursts (one hop at a time) leave evenly spaced. The delay adapts to how late frames
arrive (a jitter buffer): it rises at once and comes down slowly, or at once when it is far
above what the arrivals need (after a stall). When no frame is due the last
one repeats (counted late if a frame was expected); when several are due the newest wins and the
older ones are dropped. A tick delayed by a busy machine still happens and the following ones
come back onto the grid, never closer than half a period; after a longer stall the missed
deadlines are skipped instead of caught up in a burst. The queue is bounded, newest wins.

Phase lock: frames are captured on a grid one period apart, and ticks are one period apart. An
adaptive delay is kept on whole periods from the capture grid, so each frame falls due on a tick
with half a period to either neighbour: jitter (callback scheduling, compute) below half a
period never moves it to a neighbouring tick. A delay drifting smoothly through the grid
instead made frames pair up and leave gaps: a repeat and a drop each time it crossed a period.
The delay changes only in whole periods (up at once, down one period at a time when the
arrivals allow it with half a period to spare), and the grid is taken again from the frames
when their clock segment changes (a new input stream).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runtime.core.timing import Clock, FrameTiming, wait_on
from runtime.engine.live.latency import LatencyMonitor
from runtime.sinks.frame import LiveFrame, PublishFn

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
Array = npt.NDArray[np.float32]


ALIGN_RISE_FRAMES = 0.05
"""With `align_ticks`, a target this little above the delay (2 ms at 25 fps) leaves it (and the
ticks) alone: the margin in the target covers it, and the ticks do not twitch with every
arrival that nudges the 95th percentile."""


@dataclass(frozen=True)
class PacerConfig:
    fps: float = 25.0
    max_queue: int = 64
    playout_delay_s: float | None = None
    """Fixed delay from capture to display; None adapts it to how late frames arrive."""
    min_delay_s: float = 0.0
    max_delay_s: float = 5.0
    margin_frames: float = 1.0
    """Above the arrivals' 95th percentile, for the rest of their jitter (rounded up to the
    capture grid besides, without `align_ticks`)."""
    align_margin_frames: float = 0.5
    """The same margin with `align_ticks`: the delay is the target itself there (no rounding
    up to a whole period adds to the margin), so half a period does what a period and its
    rounding did, 20 ms sooner at 25 fps."""
    adapt_window_s: float = 8.0
    """Arrival delays over this long set the delay (95th percentile): a lone slow hop in it
    does not raise the delay, a recurring one does."""
    decay_per_s: float = 0.08
    """How fast an adaptive delay comes back down (seconds of delay per second, in steps of one
    period)."""
    cut_above_s: float = 0.5
    """A delay this far above what the arrivals need (after a stall, once the stall has left
    the arrival window) is cut to it at once, the older frames dropped: gliding down from
    seconds at `decay_per_s` would keep the picture seconds late for a minute."""
    catch_up_frames: float = 2.0
    """A tick this late or less still happens (then the next ones, no closer than
    `min_gap_frames`, bring the clock back on its grid); later ones are skipped."""
    min_gap_frames: float = 0.5
    lower_slack_frames: float = 0.5
    """The delay comes down a period only when arrivals would still leave this much to spare
    (a target near a grid line would otherwise flap: a repeat and a drop each time)."""
    phase_lock: bool = True
    """Keep the adaptive delay on whole periods from the frames' capture grid (audio-driven
    frames are captured on one; a webcam's are not)."""
    align_ticks: bool = False
    """Phase lock by moving the ticks instead of rounding the delay: on a new stream and when
    the delay changes, the tick grid moves once (by at most half a period) so that frames fall
    due on ticks at the target delay itself. Rounding up to the next whole period from the
    capture grid costs 0 to 1 period at random (the tick grid's phase is wherever the pacer
    started): arrivals a few ms later (remote compute) then often cost a whole 40 ms."""
    align_slack_frames: float = 0.25
    """With `align_ticks`, the delay comes down (at most a period at a time, at the decay's
    pace) once the target is this far below it."""


class Pacer:
    def __init__(
        self,
        *,
        config: PacerConfig,
        publish: PublishFn,
        monitor: LatencyMonitor,
        clock: Clock = time.perf_counter,
    ) -> None:
        if config.fps <= 0:
            raise ValueError("fps must be positive")
        self.config = config
        self._publish = publish
        self._monitor = monitor
        self._clock = clock
        self._period = 1.0 / config.fps
        self._lock = threading.Lock()
        self._queue: deque[LiveFrame] = deque()
        self._idle: LiveFrame | None = None
        self._last: LiveFrame | None = None  # last stream frame shown
        self._streaming = False
        fixed = config.playout_delay_s
        self._delay = fixed if fixed is not None else config.min_delay_s
        self._target = self._delay
        self._grid: float | None = None  # a capture time on the frames' grid (phase lock)
        self._t0 = 0.0  # the first deadline
        self._next_down = -math.inf  # when the delay may come down by the next period
        self._arrivals: deque[tuple[float, float]] = deque()  # (when, pixels - capture)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- any thread -------------------------------------------------------------------------

    @property
    def delay_s(self) -> float:
        with self._lock:
            return self._delay

    def submit(self, frames: Sequence[LiveFrame]) -> None:
        now = self._clock()
        with self._lock:
            for frame in frames:
                if len(self._queue) >= self.config.max_queue:
                    self._queue.popleft()
                    self._monitor.count("dropped")
                    self._monitor.count("dropped_queue_full")
                self._queue.append(frame)
                self._arrivals.append((now, frame.timing.pixels - frame.timing.capture))
            self._update_target(now)

    def set_idle(self, image: Image) -> None:
        """The frame shown when there is no stream (before the first frame, after `show_idle`)."""
        with self._lock:
            self._idle = LiveFrame(index=-1, image=image, timing=FrameTiming(capture=math.nan))

    def show_idle(self) -> None:
        """Forget the current stream (queued frames too) and show the idle frame."""
        with self._lock:
            self._queue.clear()
            self._last = None
            self._streaming = False
            self._grid = None

    def set_streaming(self, active: bool) -> None:
        """Whether frames are expected (a missing frame then counts as late)."""
        with self._lock:
            self._streaming = active

    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("pacer already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pacer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop and join; True if the thread ended within `timeout`."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None or thread is threading.current_thread():
            return True  # stopping from a publish callback: the loop ends after it returns
        thread.join(timeout)
        return not thread.is_alive()

    # -- pacer thread -----------------------------------------------------------------------

    def _update_target(self, now: float) -> None:
        if self.config.playout_delay_s is not None:
            return
        horizon = now - self.config.adapt_window_s
        while self._arrivals and self._arrivals[0][0] < horizon:
            self._arrivals.popleft()
        delays = [d for _, d in self._arrivals if math.isfinite(d)]
        if not delays:
            return
        cfg = self.config
        margin = cfg.align_margin_frames if cfg.align_ticks else cfg.margin_frames
        target = float(np.percentile(delays, 95)) + margin * self._period
        self._target = min(max(target, self.config.min_delay_s), self.config.max_delay_s)

    def _on_grid(self, want: float) -> float:
        """The smallest delay >= `want` on the capture grid: each frame then falls due exactly on
        a tick, half a period from either neighbour."""
        if self._grid is None or not self.config.phase_lock:
            return want
        phase = (self._t0 - self._grid) % self._period
        return phase + math.ceil((want - phase) / self._period - 1e-9) * self._period

    def _adapt_locked(self, now: float) -> float:
        """Phase lock and the adaptive delay (pacer thread, lock held); returns how far the
        tick grid moved (`align_ticks`), else 0."""
        if self.config.playout_delay_s is not None:
            return 0.0
        if self.config.align_ticks and self.config.phase_lock:
            return self._adapt_aligned(now)
        if self._queue and self.config.phase_lock:
            head = self._queue[0].timing.capture
            if math.isfinite(head):
                off = None if self._grid is None else (head - self._grid) % self._period
                if off is None or min(off, self._period - off) > 0.25 * self._period:
                    # A new stream (or the first frames): lock onto its grid, at the delay on
                    # it nearest to the current one (never below what arrivals need).
                    self._grid = head
                    phase = (self._t0 - head) % self._period
                    nearest = phase + round((self._delay - phase) / self._period) * self._period
                    self._delay = max(nearest, self._on_grid(self._target))
        want = self._on_grid(self._target)
        if self._delay - want > self.config.cut_above_s:
            self._cut_locked(want, now)
            return 0.0
        if not self.config.phase_lock:
            if want > self._delay:
                self._delay = want
            elif self._delay > want:
                self._delay = max(want, self._delay - self.config.decay_per_s * self._period)
            return 0.0
        if want > self._delay + 1e-9:
            self._delay = want
            self._next_down = now + self._period / self.config.decay_per_s
        elif (
            self._on_grid(self._target + self.config.lower_slack_frames * self._period)
            <= self._delay - self._period + 1e-9
            and now >= self._next_down
        ):
            self._delay = max(want, self._delay - self._period)
            self._next_down = now + self._period / self.config.decay_per_s
        return 0.0

    def _cut_locked(self, want: float, now: float) -> None:
        logger.debug("playout delay cut from %.0f to %.0f ms", self._delay * 1e3, want * 1e3)
        self._delay = want
        self._next_down = now + self._period / self.config.decay_per_s
        self._monitor.count("delay_cuts")

    def _adapt_aligned(self, now: float) -> float:
        """`align_ticks`: the delay is the target (up at once; down at most a period at a time
        once it is `align_slack_frames` above it), and the ticks move to put frames on them."""
        period, want = self._period, self._target
        changed = False
        if self._queue:
            head = self._queue[0].timing.capture
            if math.isfinite(head):
                off = None if self._grid is None else (head - self._grid) % period
                if off is None or min(off, period - off) > 0.25 * period:
                    self._grid = head  # a new stream (or the first frames)
                    self._delay = max(self._delay, want)
                    changed = True
        if self._delay - want > self.config.cut_above_s:
            self._cut_locked(want, now)
            changed = True
        elif want > self._delay + ALIGN_RISE_FRAMES * period:
            self._delay = want
            self._next_down = now + period / self.config.decay_per_s
            changed = True
        elif (
            self._delay - want > self.config.align_slack_frames * period + 1e-9
            and now >= self._next_down
        ):
            self._delay = max(want, self._delay - period)
            self._next_down = now + period / self.config.decay_per_s
            changed = True
        if not changed or self._grid is None:
            return 0.0
        # Ticks at t0 + k * period; frames due at capture + delay, capture on grid + m * period:
        # move t0 by the least amount (within half a period) that makes the two grids one.
        phase = (self._t0 - self._grid) % period
        shift = (self._delay - phase + 0.5 * period) % period - 0.5 * period
        self._t0 += shift
        if abs(shift) > 1e-9:
            self._monitor.count("tick_moves")
        return shift

    def _run(self) -> None:
        t0 = self._clock()
        k = 0
        last_sent = -math.inf
        min_gap = self.config.min_gap_frames * self._period
        max_late = self.config.catch_up_frames * self._period
        with self._lock:
            self._t0 = t0
        while not self._stop.is_set():
            deadline = self._t0 + k * self._period  # `align_ticks` may move the grid
            wait = max(deadline, last_sent + min_gap) - self._clock()
            if wait > 0 and wait_on(self._stop, wait, self._clock):
                break
            late_by = self._clock() - deadline
            if late_by > max_late:
                # A long stall: skip the missed deadlines rather than burst to catch up.
                missed = int(late_by / self._period)
                k += missed
                deadline = self._t0 + k * self._period
                self._monitor.count("missed_deadlines", missed)
            last_sent = self._clock()
            self._tick(deadline)
            k += 1

    def _tick(self, deadline: float) -> None:
        tolerance = 0.5 * self._period
        with self._lock:
            deadline += self._adapt_locked(deadline)
            due_before = deadline + tolerance - self._delay
            due: list[LiveFrame] = []
            while self._queue and self._queue[0].timing.capture <= due_before:
                due.append(self._queue.popleft())
            expected_late = (
                self._streaming
                and not due
                and not self._queue
                and self._last is not None
                and self._last.timing.capture + self._period <= due_before
            )
            if due:
                frame, repeat = due[-1], False
                self._last = frame
            else:
                shown = self._last if self._last is not None else self._idle
                if shown is None:
                    return
                frame, repeat = shown, True
        if len(due) > 1:
            self._monitor.count("dropped", len(due) - 1)
        if expected_late:
            self._monitor.count("late")
        if repeat:
            self._monitor.count("repeated")
        sent = self._clock()
        out = LiveFrame(index=frame.index, image=frame.image, timing=frame.timing.with_sent(sent))
        self._monitor.record_published(
            out.timing, first=not repeat and math.isfinite(out.timing.capture)
        )
        try:
            self._publish(out, repeat)
        except Exception:
            self._monitor.count("publish_errors")
            logger.exception("publishing a frame failed")


@dataclass(frozen=True)
class RetimedMotion:
    """Motion at the output rate: output indices (m,), latents (m, 32), capture times (m,)."""

    indices: npt.NDArray[np.int64]
    motion: Array
    capture: npt.NDArray[np.float64]


class MotionRetimer:
    """25 fps motion latents -> output-rate latents by linear interpolation (inference worker).

    Output frame j sits at source position j * source_fps / output_fps; it is emitted once the
    source frame after that position exists. A jump in source indices (skipped audio, a new
    stream) restarts the interpolation instead of blending across the gap.
    """

    def __init__(self, *, source_fps: float, output_fps: float) -> None:
        self.ratio = source_fps / output_fps
        self.output_fps = output_fps
        self._prev: tuple[int, Array, float] | None = None  # last source frame
        self._next_out = 0

    def reset(self) -> None:
        self._prev = None

    def push(
        self, first_index: int, motion: Array, capture: npt.NDArray[np.float64]
    ) -> RetimedMotion:
        n = motion.shape[0]
        if capture.shape[0] != n:
            raise ValueError("one capture time per motion frame")
        if self._prev is not None and self._prev[0] + 1 != first_index:
            self._prev = None
        if self._prev is None:
            self._next_out = math.ceil(first_index / self.ratio - 1e-9)
            src_idx = np.arange(first_index, first_index + n)
            src_mot, src_cap = motion, capture
        else:
            p_idx, p_mot, p_cap = self._prev
            src_idx = np.arange(p_idx, first_index + n)
            src_mot = np.concatenate([p_mot[None], motion])
            src_cap = np.concatenate([[p_cap], capture])
        last = int(src_idx[-1])
        out_idx = []
        j = self._next_out
        while j * self.ratio <= last + 1e-9:
            out_idx.append(j)
            j += 1
        self._next_out = j
        self._prev = (last, motion[-1].copy(), float(capture[-1]))
        idx = np.asarray(out_idx, np.int64)
        pos = idx * self.ratio - src_idx[0]
        lo = np.clip(np.floor(pos + 1e-9).astype(np.int64), 0, len(src_idx) - 1)
        hi = np.minimum(lo + 1, len(src_idx) - 1)
        w = (pos - lo).clip(0.0, 1.0)
        mot = (src_mot[lo] * (1 - w)[:, None] + src_mot[hi] * w[:, None]).astype(np.float32)
        cap = src_cap[lo] * (1 - w) + src_cap[hi] * w
        return RetimedMotion(indices=idx, motion=mot, capture=cap)
