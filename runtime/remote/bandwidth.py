"""Measured link bandwidth and the frame format it calls for (`--frame-format auto`; the
`remote-link` thread, which receives the frames and asks the server to switch).

What the link measures, per frame received:
- its bytes and format, and when it arrived (the link's clock);
- its lateness: arrival minus the capture time of the audio (or camera frame) it answers,
  both on the client's clock. Steady compute and a link that keeps up give a flat lateness;
  a link slower than the frames queues them, so each arrives later than the one before;
- for the 2nd..nth frames of a hop (the server sends a hop's frames back to back), the time
  the link waited for it: their bytes over those waits is what the link can deliver
  (`capacity_bps`), whatever the frames' own bitrate is;
- the round trip of the pings, whose pongs queue behind the frames on a congested link.

`FormatChooser` turns that into JPEG (lower CPU, no codec delay) or H.264 (about a thirtieth
of the bytes), with hysteresis: to H.264 when JPEG would not fit (its bitrate above
`fit_ratio` of the measured capacity, twice in a row, or frames arriving later and later while
the round trip grows); back to JPEG only after `hold_s` on H.264 (doubled each time a return
to JPEG did not last), with clear headroom (JPEG's bitrate under `headroom_ratio` of the
capacity) for `headroom_s` and nothing queueing.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

from runtime.remote import protocol as P

logger = logging.getLogger(__name__)

JPEG_FRAME_BYTES_GUESS = 51_500
"""A 512 px portrait at JPEG quality 90, until a JPEG frame (or idle picture) is measured."""
MIN_WAIT_S = 0.0001
"""A frame the link had already received when asked counts as this long a wait (capacity is
then only known to be large)."""


@dataclass(frozen=True, kw_only=True)
class ChooserConfig:
    fps: int = 25
    window_s: float = 3.0
    """Frames and waits older than this are forgotten."""
    fit_ratio: float = 0.7
    """JPEG does not fit when its bitrate is above this share of the measured capacity."""
    headroom_ratio: float = 0.35
    """Back to JPEG only when its bitrate is under this share of the measured capacity."""
    growth_s_per_s: float = 0.05
    """Lateness growing faster than this (seconds per second) is a queue building up."""
    min_span_s: float = 2.0
    min_frames: int = 10
    rtt_queue_s: float = 0.05
    """The round trip this much above its minimum confirms the queue is on the link."""
    min_bursts: int = 3
    headroom_s: float = 5.0
    hold_s: float = 20.0
    """Time on H.264 before JPEG is tried again; doubles (up to `max_hold_s`) each time JPEG
    lasted under `trial_s`, and is reset when it lasted longer."""
    max_hold_s: float = 320.0
    trial_s: float = 30.0


@dataclass(frozen=True, kw_only=True)
class LinkReading:
    """What the link measured over the window (for `--stats` and the choice)."""

    received_bps: float
    """Bits of frames received per second."""
    capacity_bps: float | None
    """What the link delivers when frames come back to back; None until measured."""
    jpeg_bps: float
    """What JPEG frames need at the output frame rate (measured size, or the guess)."""
    growth_s_per_s: float | None
    """Lateness growth (seconds per second); None with too few frames."""
    rtt_excess_s: float | None
    """Round trip above its minimum; None before a pong."""


class LinkMeter:
    """Frames as they arrive, and the round trips."""

    def __init__(self, config: ChooserConfig) -> None:
        self.config = config
        self._frames: deque[tuple[float, int, float]] = deque()  # arrival, bytes, lateness
        self._bursts: deque[tuple[float, int, float]] = deque()  # arrival, bytes, wait
        self._jpeg_bytes: float | None = None
        self._rtt_min = math.inf
        self._rtt = math.nan
        self._last: tuple[int, int] | None = None  # (index, format) of the previous frame

    def on_frame(
        self, header: P.FrameHeader, nbytes: int, arrival: float, waited_s: float | None
    ) -> None:
        """`waited_s`: how long the link waited for this message (None when unknown)."""
        if header.format == P.FORMAT_JPEG:
            # Idle pictures are JPEG in every mode: they keep the estimate current on H.264.
            old = self._jpeg_bytes
            self._jpeg_bytes = nbytes if old is None else 0.8 * old + 0.2 * nbytes
        if header.index < 0:
            return
        lateness = arrival - header.capture
        if math.isfinite(lateness):
            self._frames.append((arrival, nbytes, lateness))
        last, self._last = self._last, (header.index, header.format)
        if (
            waited_s is not None
            and not header.first_in_hop
            and last == (header.index - 1, header.format)
        ):
            self._bursts.append((arrival, nbytes, max(waited_s, MIN_WAIT_S)))
        self._forget(arrival)

    def on_rtt(self, seconds: float) -> None:
        if math.isfinite(seconds) and seconds >= 0:
            self._rtt = seconds
            self._rtt_min = min(self._rtt_min, seconds)

    def restart(self) -> None:
        """After a switch: the lateness and waits of the old format say nothing of the new."""
        self._frames.clear()
        self._bursts.clear()
        self._last = None

    def _forget(self, now: float) -> None:
        horizon = now - self.config.window_s
        for q in (self._frames, self._bursts):
            while q and q[0][0] < horizon:
                q.popleft()

    def reading(self, now: float) -> LinkReading:
        cfg = self.config
        self._forget(now)
        frames = list(self._frames)
        received = 0.0
        growth: float | None = None
        if frames:
            span = max(now - frames[0][0], 1.0 / cfg.fps)
            received = 8.0 * sum(b for _, b, _ in frames) / span
            t = [a for a, _, _ in frames]
            if len(frames) >= cfg.min_frames and t[-1] - t[0] >= cfg.min_span_s:
                growth = _slope(t, [lat for _, _, lat in frames])
        capacity: float | None = None
        if len(self._bursts) >= cfg.min_bursts:
            capacity = 8.0 * sum(b for _, b, _ in self._bursts) / sum(w for _, _, w in self._bursts)
        jpeg = self._jpeg_bytes if self._jpeg_bytes is not None else JPEG_FRAME_BYTES_GUESS
        excess = None if math.isnan(self._rtt) else self._rtt - self._rtt_min
        return LinkReading(
            received_bps=received,
            capacity_bps=capacity,
            jpeg_bps=8.0 * jpeg * cfg.fps,
            growth_s_per_s=growth,
            rtt_excess_s=excess,
        )


def _slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of y over x."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    if sxx <= 0:
        return 0.0
    return sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx


class FormatChooser:
    """JPEG or H.264 for `--frame-format auto`, from the meter's readings (called once per
    evaluation, on the link's thread)."""

    def __init__(self, start: str, config: ChooserConfig, *, now: float) -> None:
        if start not in ("jpeg", "h264"):
            raise ValueError(f"auto starts with jpeg or h264, not {start!r}")
        self.config = config
        self.meter = LinkMeter(config)
        self.format = start
        self.reason = "by address"
        self._hold = config.hold_s
        self._since = now
        self._misfit = 0
        self._headroom_since: float | None = None

    def queueing(self, r: LinkReading) -> bool:
        """Frames arrive later and later, and (when a round trip was measured) the pongs
        queue too: the link, not the server's compute, is behind."""
        growing = r.growth_s_per_s is not None and r.growth_s_per_s > self.config.growth_s_per_s
        return growing and (r.rtt_excess_s is None or r.rtt_excess_s > self.config.rtt_queue_s)

    def decide(self, now: float) -> str | None:
        """The format to switch to now, or None to keep the current one."""
        cfg, r = self.config, self.meter.reading(now)
        if self.format == "jpeg":
            fits = r.capacity_bps is None or r.jpeg_bps <= cfg.fit_ratio * r.capacity_bps
            self._misfit = 0 if fits else self._misfit + 1
            if self.queueing(r):
                growth = r.growth_s_per_s or 0.0
                why = f"frames arrive later and later (+{growth * 1e3:.0f} ms/s)"
            elif self._misfit >= 2:
                why = f"JPEG needs {_mbps(r.jpeg_bps)} of the measured {_mbps(r.capacity_bps)}"
            else:
                return None
            if now - self._since < cfg.trial_s:  # JPEG did not last: wait longer next time
                self._hold = min(cfg.max_hold_s, self._hold * 2)
            else:
                self._hold = cfg.hold_s
            return self._switch("h264", why, now)
        roomy = (
            r.capacity_bps is not None
            and r.jpeg_bps < cfg.headroom_ratio * r.capacity_bps
            and not self.queueing(r)
        )
        if not roomy:
            self._headroom_since = None
            return None
        if self._headroom_since is None:
            self._headroom_since = now
        if now - self._since < self._hold or now - self._headroom_since < cfg.headroom_s:
            return None
        return self._switch(
            "jpeg", f"JPEG needs {_mbps(r.jpeg_bps)} of the measured {_mbps(r.capacity_bps)}", now
        )

    def _switch(self, fmt: str, why: str, now: float) -> str:
        logger.info("frames: switching to %s: %s", fmt.upper(), why)
        self.format, self.reason = fmt, why
        self._since = now
        self._misfit = 0
        self._headroom_since = None
        self.meter.restart()
        return fmt


def _mbps(bps: float | None) -> str:
    return "?" if bps is None else f"{bps / 1e6:.1f} Mbit/s"
