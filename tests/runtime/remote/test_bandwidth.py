"""`--frame-format auto`'s choice, in simulated time: a link of a given rate carries the
server's hops of frames (and the pongs, behind them), the real `FormatChooser` sees what the
client would (arrival, bytes, the wait for each message, round trips) and is asked every
0.5 s. The link is the fake (it stands for the network); the meter and the choice are real."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import pytest

from runtime.engine.live.latency import LatencyMonitor
from runtime.engine.live.types import EngineState, EngineStats, LiveControls
from runtime.remote import protocol as P
from runtime.remote.bandwidth import ChooserConfig, FormatChooser

JPEG_BYTES = 51_500  # a 512 px portrait (README); 10.3 Mbit/s at 25 fps
H264_BYTES = 1_800  # 0.36 Mbit/s
FORMATS = {"jpeg": (P.FORMAT_JPEG, JPEG_BYTES), "h264": (P.FORMAT_H264, H264_BYTES)}


@dataclass
class Link:
    """One direction of a network path: `rate_bps` (may change over time), a one-way delay,
    and a FIFO queue (frames and pongs share it)."""

    rate_bps: float
    one_way_s: float = 0.01
    free_at: float = 0.0
    changes: list[tuple[float, float]] = field(default_factory=list)  # (from time, rate)

    def carry(self, depart: float, nbytes: int) -> float:
        for when, rate in self.changes:
            if depart >= when:
                self.rate_bps = rate
        start = max(depart, self.free_at)
        self.free_at = start + 8 * nbytes / self.rate_bps
        return self.free_at + self.one_way_s


def simulate(
    chooser: FormatChooser,
    link: Link,
    seconds: float,
    *,
    hop: int = 5,
    compute_s: float = 0.02,
    pongs: bool = True,
) -> list[tuple[float, str]]:
    """Run the session for `seconds`; the switches (time, format) the chooser asked for."""
    events: list[tuple[float, int, str, object]] = []
    n = 0

    def push(t: float, kind: str, data: object = None) -> None:
        nonlocal n
        n += 1
        heapq.heappush(events, (t, n, kind, data))

    hop_s = hop / 25
    t = hop_s
    index = 0
    while t < seconds:
        push(t + compute_s, "hop", (index, t))
        index += hop
        t += hop_s
    for k in range(int(seconds * 2)):
        push(0.5 * k, "decide")
    if pongs:
        for k in range(int(seconds)):
            push(float(k), "ping")
    switches: list[tuple[float, str]] = []
    ready_at = 0.0
    while events:
        now, _, kind, data = heapq.heappop(events)
        if now > seconds:
            break
        if kind == "hop":
            first, hop_end = data  # type: ignore[misc]
            fmt, nbytes = FORMATS[chooser.format]
            for i in range(hop):
                capture = hop_end - (hop - 1 - i) * 0.04
                header = P.FrameHeader(
                    index=first + i,
                    capture=capture,
                    compute_s=compute_s,
                    width=512,
                    height=512,
                    format=fmt,
                    hop_frames=hop,
                    first_in_hop=i == 0,
                )
                push(link.carry(now, nbytes), "frame", (header, nbytes))
        elif kind == "ping":
            # The ping goes up at once; its pong comes down behind the queued frames.
            push(link.carry(now + link.one_way_s, 60), "pong", now)
        elif kind == "pong":
            chooser.meter.on_rtt(now - data)  # type: ignore[operator]
            ready_at = now
        elif kind == "frame":
            header, nbytes = data  # type: ignore[misc]
            chooser.meter.on_frame(header, nbytes, now, now - ready_at)
            ready_at = now
        elif kind == "decide":
            fmt = chooser.decide(now)
            if fmt is not None:
                switches.append((now, fmt))
    return switches


def chooser(start: str) -> FormatChooser:
    return FormatChooser(start, ChooserConfig(fps=25), now=0.0)


def test_jpeg_stays_on_a_fast_link() -> None:
    c = chooser("jpeg")
    assert simulate(c, Link(rate_bps=1e9, one_way_s=0.0002), 60.0) == []
    reading = c.meter.reading(60.0)
    assert reading.capacity_bps is not None and reading.capacity_bps > 100e6
    assert reading.received_bps == pytest.approx(JPEG_BYTES * 8 * 25, rel=0.1)


def test_a_link_that_cannot_carry_jpeg_switches_to_h264_at_once() -> None:
    """6 Mbit/s: JPEG's 10.3 Mbit/s is measured not to fit within a second or two."""
    c = chooser("jpeg")
    switches = simulate(c, Link(rate_bps=6e6), 20.0)
    assert [f for _, f in switches] == ["h264"]
    assert switches[0][0] <= 3.0
    assert "JPEG needs 10.3 Mbit/s of the measured 6.0 Mbit/s" in c.reason


def test_jpeg_over_70_percent_of_the_link_is_h264_even_before_queueing() -> None:
    """12 Mbit/s carries JPEG (10.3) but with under 30 % to spare: H.264."""
    c = chooser("jpeg")
    switches = simulate(c, Link(rate_bps=12e6), 10.0)
    assert [f for _, f in switches] == ["h264"]


def test_growing_lateness_switches_when_no_burst_is_measured() -> None:
    """Hop 1 (a fast GPU): no two frames back to back, so no capacity is measured; frames
    arriving later and later, with the pongs queued behind them, are the sign."""
    c = chooser("jpeg")
    switches = simulate(c, Link(rate_bps=8e6), 20.0, hop=1)
    assert [f for _, f in switches] == ["h264"]
    assert switches[0][0] <= 5.0
    assert "later and later" in c.reason


def test_lateness_growth_without_a_queued_round_trip_is_not_the_link() -> None:
    c = chooser("jpeg")
    r = c.meter
    for k in range(100):  # the server falls behind: each frame 60 ms/s later, pongs prompt
        t = k * 0.04
        header = P.FrameHeader(
            index=k, capture=t - 0.1 - 0.06 * t, compute_s=0.01, width=8, height=8, format=1
        )
        r.on_frame(header, JPEG_BYTES, t, None)
        if k % 25 == 0:
            r.on_rtt(0.02)
    reading = r.reading(4.0)
    assert reading.growth_s_per_s == pytest.approx(0.06, abs=0.005)
    assert c.decide(4.0) is None


def test_back_to_jpeg_only_after_the_hold_and_with_clear_headroom() -> None:
    c = chooser("h264")
    # 20 Mbit/s: JPEG would use half of it (between 35 % and 70 %): H.264 stays.
    assert simulate(c, Link(rate_bps=20e6), 60.0) == []
    c = chooser("h264")
    switches = simulate(c, Link(rate_bps=100e6), 60.0)
    assert [f for _, f in switches] == ["jpeg"]
    assert 20.0 <= switches[0][0] <= 21.0  # the hold, then 5 s of headroom already seen


def test_a_return_to_jpeg_that_does_not_last_doubles_the_hold() -> None:
    c = chooser("h264")
    # Fast at first, then the link drops to 5 Mbit/s at 30 s and is fast again at 40 s.
    link = Link(rate_bps=100e6, changes=[(30.0, 5e6), (40.0, 100e6)])
    switches = simulate(c, link, 120.0)
    assert [f for _, f in switches] == ["jpeg", "h264", "jpeg"]
    back, down, again = (t for t, _ in switches)
    assert 20.0 <= back <= 21.0 and 30.0 <= down <= 33.0
    assert again - down >= 40.0  # twice the 20 s hold


def test_explicit_start_formats_only() -> None:
    with pytest.raises(ValueError, match="jpeg or h264"):
        FormatChooser("raw", ChooserConfig(), now=0.0)


def test_stats_show_the_format_and_the_measured_rates() -> None:
    stats = EngineStats(
        state=EngineState.RUNNING,
        latency=LatencyMonitor(clock=lambda: 5.0).snapshot(),
        playout_delay_ms=80.0,
        audio=None,
        webcam=None,
        sinks=[],
        hops=10,
        skipped_frames=0,
        controls=LiveControls(),
        avatar="me",
        remote="connected",
        frame_format="h264",
        link_mbps=0.36,
        link_capacity_mbps=6.0,
    )
    assert "frames h264   0.4 Mbit/s (link   6.0)" in stats.line()
    d = stats.as_dict()
    assert (d["frame_format"], d["link_mbps"], d["link_capacity_mbps"]) == ("h264", 0.36, 6.0)
