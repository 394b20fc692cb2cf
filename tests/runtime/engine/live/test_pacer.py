"""The pacer holds its rate on absolute deadlines, repeats when late, never bursts; the retimer
interpolates motion latents to 30 fps.

The pacer runs its real thread on a virtual clock (support/virtual_clock.py): the answers do not
depend on how busy the machine is; real time only bounds each test."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from runtime.core.timing import FrameTiming
from runtime.engine.live.latency import LatencyMonitor
from runtime.engine.live.pacer import MotionRetimer, Pacer, PacerConfig
from runtime.sinks.frame import LiveFrame
from tests.support.virtual_clock import VirtualClock

IMG = np.zeros((4, 4, 3), np.uint8)


class Recorder:
    def __init__(self, clock: VirtualClock, block_once_s: float = 0.0) -> None:
        self.frames: list[tuple[float, LiveFrame, bool]] = []
        self.block_once_s = block_once_s
        self.clock = clock
        self.lock = threading.Lock()

    def __call__(self, frame: LiveFrame, repeat: bool) -> None:
        with self.lock:
            self.frames.append((self.clock(), frame, repeat))
            block = self.block_once_s if len(self.frames) == 10 else 0.0
        if block:
            self.clock.sleep(block)  # a publish that stalls the pacer thread


def virtual() -> VirtualClock:
    clock = VirtualClock(real_timeout_s=30.0)
    clock.join()
    return clock


def frames_for(first: int, n: int, fps: float, t0: float, ready: float) -> list[LiveFrame]:
    return [
        LiveFrame(
            index=i,
            image=IMG,
            timing=FrameTiming(capture=t0 + (i + 1) / fps, pixels=ready),
        )
        for i in range(first, first + n)
    ]


def test_bursty_hops_leave_evenly_spaced_in_order() -> None:
    fps, hop = 25.0, 5
    clock = virtual()
    mon = LatencyMonitor(clock=clock)
    rec = Recorder(clock)
    pacer = Pacer(config=PacerConfig(fps=fps), publish=rec, monitor=mon, clock=clock)
    pacer.set_idle(IMG)
    pacer.start()
    t0 = clock() + 0.013  # the capture grid is not the tick grid
    pacer.set_streaming(True)
    try:
        for h in range(12):  # 2.4 s of media, one hop of 5 frames every 200 ms, 60 ms compute
            clock.sleep_until(t0 + (h + 1) * hop / fps + 0.06)
            pacer.submit(frames_for(h * hop, hop, fps, t0, clock()))
        clock.sleep(0.5)
    finally:
        assert pacer.stop()
    shown = [f for _, f, rep in rec.frames if not rep and f.index >= 0]
    indices = [f.index for f in shown]
    assert indices == sorted(indices)
    assert len(set(indices)) == len(indices)
    # After the delay settles on the first hops, every frame is shown exactly once.
    assert indices[-30:] == list(range(indices[-1] - 29, indices[-1] + 1))
    times = np.array([t for t, _, _ in rec.frames])
    gaps = np.diff(times)
    assert np.allclose(gaps, 1 / fps)  # never a burst, never a gap
    # Once the second hop is in, no repeat until the stream ends (the last frame, 59).
    streaming = [rep for _, f, rep in rec.frames if 5 <= f.index < 59]
    assert streaming and not any(streaming)
    stats = mon.snapshot()
    # Latency = adaptive playout delay: hop + compute + one frame of margin, about 0.3 s.
    assert 0.2 < stats.latency_p50_ms / 1e3 < 0.45
    lat = [f.timing.sent - f.timing.capture for f in shown[-30:]]
    assert max(lat) - min(lat) < 1.5 / fps  # steady, not ratcheting


def test_thirty_fps_output_holds_its_rate_with_ticks_aligned() -> None:
    """`live --fps 30` as the engine runs it for audio (`align_ticks`, motion retimed to 30 fps
    arriving a hop at a time): the output rate is 30 in the stats. On the virtual clock, so a
    loaded machine gives the same answer; it fails if the pacer bursts, leaves gaps, or moves
    its ticks by more than the alignment allows."""
    fps, hop = 30.0, 6  # 200 ms of media a hop
    clock = virtual()
    mon = LatencyMonitor(clock=clock)
    rec = Recorder(clock)
    pacer = Pacer(
        config=PacerConfig(fps=fps, align_ticks=True), publish=rec, monitor=mon, clock=clock
    )
    pacer.set_idle(IMG)
    pacer.start()
    t0 = clock() + 0.013
    pacer.set_streaming(True)
    try:
        for h in range(12):
            clock.sleep_until(t0 + (h + 1) * hop / fps + 0.06)
            pacer.submit(frames_for(h * hop, hop, fps, t0, clock()))
            if h == 5:
                mid = mon.snapshot()
        clock.sleep(0.5)
        stats = mon.snapshot()
    finally:
        assert pacer.stop()
    for at in (mid, stats):  # what `--stats` shows, midway and at the end
        assert 28 < at.output_fps < 32, at.output_fps
    # One frame per tick: the ticks moved at most half a period each time they moved.
    times = [t for t, _, _ in rec.frames]
    ticks = (times[-1] - times[0]) * fps
    assert abs(len(times) - 1 - ticks) <= 0.5 * mon.counter("tick_moves") + 1e-6
    gaps = np.diff(times)
    assert gaps.min() >= 0.5 / fps - 1e-9 and gaps.max() <= 1.5 / fps + 1e-9
    shown = [f.index for _, f, rep in rec.frames if not rep and f.index >= 0]
    assert shown[-30:] == list(range(shown[-1] - 29, shown[-1] + 1))  # each once, in order


def test_late_frames_repeat_and_are_counted() -> None:
    fps = 50.0
    clock = virtual()
    mon = LatencyMonitor(clock=clock)
    rec = Recorder(clock)
    pacer = Pacer(
        config=PacerConfig(fps=fps, playout_delay_s=0.05), publish=rec, monitor=mon, clock=clock
    )
    pacer.start()
    t0 = clock()
    pacer.set_streaming(True)
    try:
        pacer.submit(frames_for(0, 3, fps, t0, t0))
        clock.sleep(0.5)  # nothing more arrives: the last frame repeats
    finally:
        pacer.stop()
    assert [f.index for _, f, rep in rec.frames if not rep] == [0, 1, 2]
    repeats = [f.index for _, f, rep in rec.frames if rep]
    assert repeats and set(repeats) == {2}
    assert mon.counter("late") >= 15
    assert mon.counter("repeated") == len(repeats)


def test_overdue_burst_publishes_newest_once_per_deadline() -> None:
    fps = 25.0
    clock = virtual()
    mon = LatencyMonitor(clock=clock)
    rec = Recorder(clock)
    pacer = Pacer(
        config=PacerConfig(fps=fps, playout_delay_s=0.0), publish=rec, monitor=mon, clock=clock
    )
    pacer.start()
    clock.sleep(0.1)
    t0 = clock() - 1.0  # all 20 frames are long overdue
    pacer.submit(frames_for(0, 20, fps, t0, clock()))
    clock.sleep(0.3)
    assert pacer.stop()
    firsts = [(t, f.index) for t, f, rep in rec.frames if not rep]
    assert [i for _, i in firsts] == [19]
    assert mon.counter("dropped") == 19


def test_stalled_thread_skips_deadlines_instead_of_bursting() -> None:
    fps = 25.0
    clock = virtual()
    mon = LatencyMonitor(clock=clock)
    rec = Recorder(clock, block_once_s=0.2)
    pacer = Pacer(config=PacerConfig(fps=fps), publish=rec, monitor=mon, clock=clock)
    pacer.set_idle(IMG)
    pacer.start()
    clock.sleep(1.0)
    assert pacer.stop()
    times = np.array([t for t, _, _ in rec.frames])
    gaps = np.diff(times)
    assert gaps.max() >= 0.2  # the stall
    after = gaps[np.argmax(gaps) + 1 :]
    assert after.min() >= 0.5 / fps - 1e-9  # no burst after it: the missed ticks are skipped
    assert mon.counter("missed_deadlines") == 4  # 0.2 s = 5 periods, the late one still runs


def test_queue_is_bounded_newest_wins() -> None:
    clock = virtual()
    mon = LatencyMonitor(clock=clock)
    pacer = Pacer(
        config=PacerConfig(fps=25, max_queue=8), publish=Recorder(clock), monitor=mon, clock=clock
    )
    t0 = clock() + 100  # never due
    pacer.submit(frames_for(0, 20, 25, t0, t0))
    assert pacer.queued() == 8
    assert mon.counter("dropped_queue_full") == 12


def test_stop_joins_quickly_and_restarts() -> None:
    clock = virtual()
    rec = Recorder(clock)
    pacer = Pacer(
        config=PacerConfig(fps=5), publish=rec, monitor=LatencyMonitor(clock=clock), clock=clock
    )
    pacer.set_idle(IMG)
    for _ in range(2):
        pacer.start()
        clock.sleep(0.5)
        assert pacer.stop(timeout=5.0)  # the bound; a stop is noticed within a poll
    assert len(rec.frames) == 6  # ticks at 0, 0.2, 0.4 s of each run


def test_retimer_identity_at_25() -> None:
    r = MotionRetimer(source_fps=25, output_fps=25)
    m = np.random.default_rng(0).standard_normal((5, 32)).astype(np.float32)
    cap = np.arange(5, dtype=np.float64)
    out = r.push(0, m, cap)
    assert list(out.indices) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(out.motion, m)
    out = r.push(5, m + 1, cap + 5)
    assert list(out.indices) == [5, 6, 7, 8, 9]


@pytest.mark.parametrize("hop", [1, 2, 5, 7, 50])
def test_retimer_interpolates_to_30(hop: int) -> None:
    """Motion that is a linear ramp in time comes out as the same ramp sampled at 30 fps."""
    r = MotionRetimer(source_fps=25, output_fps=30)
    total = 100
    src_t = np.arange(total) / 25.0
    motion = np.repeat(src_t[:, None], 32, axis=1).astype(np.float32) * 3.0 + 1.0
    got_idx, got_mot, got_cap = [], [], []
    for start in range(0, total, hop):
        n = min(hop, total - start)
        out = r.push(start, motion[start : start + n], 10.0 + src_t[start : start + n])
        got_idx += list(out.indices)
        got_mot.append(out.motion)
        got_cap.append(out.capture)
    idx = np.array(got_idx)
    assert list(idx) == list(range(len(idx)))
    out_t = idx / 30.0
    assert out_t[-1] <= src_t[-1] + 1e-9 and out_t[-1] > src_t[-1] - 1 / 30
    np.testing.assert_allclose(np.concatenate(got_mot)[:, 0], out_t * 3.0 + 1.0, atol=1e-5)
    np.testing.assert_allclose(np.concatenate(got_cap), 10.0 + out_t, atol=1e-9)


def test_retimer_restarts_after_a_gap() -> None:
    r = MotionRetimer(source_fps=25, output_fps=30)
    m = np.zeros((5, 32), np.float32)
    r.push(0, m, np.zeros(5))
    out = r.push(50, m + 7, np.full(5, 2.0))  # jumped: 45 source frames skipped
    assert out.indices[0] == 60  # 50 * 30 / 25
    assert (out.motion == 7).all()  # no blending across the gap


def test_short_stall_is_caught_up_without_bunching() -> None:
    """A 60 ms hiccup (one and a half periods) loses no tick: the next ones come back onto the
    grid, never closer than half a period."""
    fps = 25.0
    clock = virtual()
    mon = LatencyMonitor(clock=clock)
    rec = Recorder(clock, block_once_s=0.06)
    pacer = Pacer(config=PacerConfig(fps=fps), publish=rec, monitor=mon, clock=clock)
    pacer.set_idle(IMG)
    pacer.start()
    clock.sleep(1.0 - 1e-6)
    assert pacer.stop()
    times = np.array([t for t, _, _ in rec.frames])
    gaps = np.diff(times)
    assert mon.counter("missed_deadlines") == 0
    assert gaps.min() >= 0.5 / fps - 1e-9
    assert len(times) == 25


def _started(config: PacerConfig) -> tuple[VirtualClock, LatencyMonitor, Recorder, Pacer]:
    """A pacer on a virtual clock, publishing to a recorder, showing its idle frame."""
    clock = virtual()
    mon = LatencyMonitor(clock=clock)
    rec = Recorder(clock)
    pacer = Pacer(config=config, publish=rec, monitor=mon, clock=clock)
    pacer.set_idle(IMG)
    pacer.start()
    return clock, mon, rec, pacer


def _steady_stream(align: bool, *, arrival_s: float, capture_offset_s: float) -> dict[str, float]:
    """One frame every period (hop 1), each arriving `arrival_s` after its capture (+ up to
    4 ms of jitter); the capture grid sits `capture_offset_s` from the tick grid. Returns the
    settled frames' latencies, the delay, and the publication gaps after the first second."""
    fps = 25.0
    clock, _, rec, pacer = _started(PacerConfig(fps=fps, align_ticks=align))
    t0 = clock() + capture_offset_s
    jitter = np.random.default_rng(1).uniform(0.0, 0.004, 150)
    pacer.set_streaming(True)
    try:
        for i in range(150):  # 6 s
            capture = t0 + (i + 1) / fps
            clock.sleep_until(capture + arrival_s + jitter[i])
            pacer.submit([LiveFrame(i, IMG, FrameTiming(capture=capture, pixels=clock()))])
        delay = pacer.delay_s
    finally:
        assert pacer.stop()
    settled = [(t, f, rep) for t, f, rep in rec.frames if t > t0 + 1.0 and f.index < 149]
    shown = [f for _, f, rep in settled if not rep]
    return {
        "latency": float(np.median([f.timing.sent - f.timing.capture for f in shown])),
        "spread": float(np.ptp([f.timing.sent - f.timing.capture for f in shown])),
        "delay": delay,
        "repeats": float(sum(rep for _, _, rep in settled)),
        "unique": float(len({f.index for f in shown}) == len(shown)),
        "gap_min": float(np.diff([t for t, _, _ in settled]).min()),
        "gap_max": float(np.diff([t for t, _, _ in settled]).max()),
    }


@pytest.mark.parametrize("capture_offset_ms", [3.0, 13.0, 27.0, 39.0])
def test_aligned_ticks_show_frames_at_the_target_delay_not_a_whole_period_above(
    capture_offset_ms: float,
) -> None:
    """Frames that arrive 92 ms after capture (remote compute on loopback): rounded onto the
    tick grid the delay is the 95th percentile of arrivals plus a period of margin, ~135 ms,
    and 0..1 period more depending on where the ticks happen to fall; with aligned ticks it is
    the 95th percentile plus half a period (no rounding adds to that margin), ~115 ms, whatever
    the phase, with every frame shown once and evenly."""
    arrival, period = 0.092, 0.04
    target = arrival + 0.004 * 0.95 + 0.5 * period  # p95 of the arrivals + margin
    rounded = _steady_stream(False, arrival_s=arrival, capture_offset_s=capture_offset_ms / 1e3)
    aligned = _steady_stream(True, arrival_s=arrival, capture_offset_s=capture_offset_ms / 1e3)
    assert rounded["latency"] >= target + 0.5 * period - 1e-3  # on the grid: 0..1 period more
    assert aligned["latency"] == pytest.approx(target, abs=2.5e-3), aligned
    assert aligned["delay"] == pytest.approx(target, abs=2.5e-3)
    assert aligned["spread"] < 1e-3  # every frame on the same delay
    assert aligned["repeats"] == 0 and aligned["unique"] == 1.0
    assert aligned["gap_min"] == pytest.approx(period, abs=1e-6)  # evenly spaced once settled
    assert aligned["gap_max"] == pytest.approx(period, abs=1e-6)


def test_aligned_ticks_move_at_most_half_a_period_and_never_burst() -> None:
    """The ticks move once when the first frames come (and when the delay changes), by at most
    half a period: no two publications closer than the pacer's minimum gap, none further apart
    than one and a half periods."""
    fps = 25.0
    clock = virtual()
    mon = LatencyMonitor(clock=clock)
    rec = Recorder(clock)
    pacer = Pacer(
        config=PacerConfig(fps=fps, align_ticks=True), publish=rec, monitor=mon, clock=clock
    )
    pacer.set_idle(IMG)
    pacer.start()
    t0 = clock() + 0.021
    pacer.set_streaming(True)
    try:
        for i in range(100):
            capture = t0 + (i + 1) / fps
            late = 0.15 if 40 <= i < 45 else 0.09  # a slow patch raises the delay at once
            clock.sleep_until(capture + late)
            pacer.submit([LiveFrame(i, IMG, FrameTiming(capture=capture, pixels=clock()))])
        clock.sleep(0.3)
    finally:
        assert pacer.stop()
    gaps = np.diff([t for t, _, _ in rec.frames])
    assert gaps.min() >= 0.5 / fps - 1e-9 and gaps.max() <= 1.5 / fps + 1e-9
    shown = [f.index for _, f, rep in rec.frames if not rep and f.index >= 0]
    assert shown == sorted(shown)


@pytest.mark.parametrize("align", [False, True], ids=["grid", "aligned"])
def test_after_a_stall_the_delay_is_cut_not_glided_down(align: bool) -> None:
    """Hop-1 frames arriving 120 ms after capture, then one hop stalled 4 s (the delay rises to
    it at once), then 120 ms again: once the stall has left the arrival window (8 s) the delay
    is cut back to what arrivals need in one step, not over the minute that one period every
    half second would take; the frames it passes over are dropped, none is shown late."""
    fps = 25.0
    clock, mon, rec, pacer = _started(PacerConfig(fps=fps, align_ticks=align))
    t0 = clock()
    delays: list[tuple[float, float]] = []
    pacer.set_streaming(True)
    try:
        for i in range(25 * 20):
            capture = t0 + (i + 1) / fps
            arrival = 4.0 if i == 100 else 0.12
            if i == 100:  # the stalled hop: nothing arrives meanwhile
                clock.sleep_until(capture + arrival)
            else:
                clock.sleep_until(max(clock(), capture + arrival))
            pacer.submit([LiveFrame(i, IMG, FrameTiming(capture=capture, pixels=clock()))])
            delays.append((clock() - t0, pacer.delay_s))
    finally:
        assert pacer.stop()
    rose = next(t for t, d in delays if d >= 3.0)  # it did rise with the stall
    back = [t for t, d in delays if t > rose and d <= 0.3]
    assert back and back[0] <= rose + 8.0 + 1.0, (rose, back[:1])  # the window, then at once
    assert mon.counter("delay_cuts") >= 1
    late = [f for t, f, rep in rec.frames if not rep and f.index >= 0 and t > 14.0 + t0]
    assert all(f.timing.sent - f.timing.capture <= 0.3 for f in late)
