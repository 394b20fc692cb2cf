"""The virtual microphone: the captured microphone, delayed to match the avatar's video, played
into a device that call apps select as their microphone ("imtalker-cam Microphone").

Threads: `open`/`close` on the thread that starts and stops the engine; `tap` on the capture
callback (it only copies into the delay line); the output stream's callback (PortAudio's
output thread) reads from the delay line; `set_latency` and `status` from any thread.

The delay follows the engine's measured end-to-end video latency (capture -> frame published)
plus a manual offset (the call app's own video delay); `runtime.media.delay_line` keeps it
drift-free and applies changes with a crossfade. Before the first measurement it uses
`initial_delay_s`. Muting happens upstream, in the capture callback, so a muted microphone
arrives here as silence, delayed like the video.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime.core.timing import Clock
from runtime.core.validate import MAX_MIC_DELAY, MIC_OFFSET
from runtime.media.delay_line import DelayLine, DelayLineConfig
from runtime.media.stream_close import stop_and_close
from runtime.media.virtual_mic_device import (
    OutputTarget,
    VirtualMicDevice,
    VirtualMicUnavailable,
)

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]

_ENV_LOCK = threading.Lock()  # PULSE_SINK is process-wide while a stream opens


@dataclass(frozen=True, kw_only=True)
class VirtualMicConfig:
    offset_ms: float = 0.0
    """Added to the measured latency (+: later), for the call app's own video delay."""
    max_delay_ms: float = 1000.0
    """The voice is never delayed more than this: past it the call hears the voice this late
    and sees the lips later still (`VirtualMicStatus.behind_ms` says by how much). A call with
    the voice seconds late is worse than lips out of sync."""
    initial_delay_s: float = 0.3
    block_s: float = 0.02
    latency_s: float = 0.1
    """Output buffering: ample, because the delay line compensates the reported latency, and
    a buffer that runs dry while Python threads contend shifts everything played after it."""
    min_delay_s: float = 0.2
    """The shortest delay the line can keep without gaps: the output buffering above, a block,
    and the time the capture takes to deliver a block (tens of ms through PulseAudio). With
    the video sooner than this (hop 1 on a fast machine, ~110 ms) the voice comes that much
    after the lips, which nobody notices (sound late by under ~100 ms is not seen as out of
    sync), where a shorter delay would play silence in its gaps."""
    line: DelayLineConfig = field(default_factory=DelayLineConfig)

    def __post_init__(self) -> None:
        MIC_OFFSET.check(self.offset_ms)
        MAX_MIC_DELAY.check(self.max_delay_ms)


@dataclass(frozen=True)
class VirtualMicStatus:
    device: str | None  # what the user picks in the call app; None when not open
    open: bool
    delay_ms: float  # the delay in effect (nan before audio flowed)
    target_ms: float
    offset_ms: float
    underruns: int
    error: str | None  # why it is not available
    max_delay_ms: float = 1000.0
    behind_ms: float = 0.0
    """How much later than the voice the video reaches the call, when the delay sync needs is
    over `max_delay_ms` (0: the lips are in sync)."""

    @property
    def out_of_sync(self) -> str | None:
        """The words for it ("lips not in sync: video 4.8 s behind"), or None when in sync."""
        if self.behind_ms <= 0:
            return None
        return f"lips not in sync: video {self.behind_ms / 1e3:.1f} s behind"

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["out_of_sync"] = self.out_of_sync
        return out


class VirtualMic:
    def __init__(
        self,
        *,
        sd: Any,
        device: VirtualMicDevice,
        config: VirtualMicConfig | None = None,
        clock: Clock = time.perf_counter,
    ) -> None:
        self._sd = sd
        self._device = device
        self.config = config if config is not None else VirtualMicConfig()
        self._clock = clock
        self._offset_s = self.config.offset_ms / 1e3
        self._max_delay_s = self.config.max_delay_ms / 1e3
        self._latency_s: float | None = None
        self._line: DelayLine | None = None  # replaced when the capture rate changes
        self._target: OutputTarget | None = None
        self._stream: Any = None
        self._out_rate = 0
        self._underflows = 0  # PortAudio's own output underflow flags
        self._error: str | None = None
        self._lock = threading.Lock()

    # -- control ------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the device and start playing (silence until audio comes); raises
        VirtualMicUnavailable with the reason and what to install."""
        with self._lock:
            if self._stream is not None:
                return
            try:
                target = self._device.create()
            except VirtualMicUnavailable as exc:
                self._error = str(exc)
                raise
            stream = None
            try:
                stream = self._open_stream(target)
                self._device.claim()
            except Exception as exc:
                if stream is not None:
                    with contextlib.suppress(Exception):
                        stream.close()
                self._device.remove()
                self._error = f"cannot play into {target.name}: {exc}"
                raise VirtualMicUnavailable(self._error) from exc
            self._target, self._stream, self._error = target, stream, None
        logger.info("virtual microphone %r open at %d Hz", target.name, self._out_rate)

    def _open_stream(self, target: OutputTarget) -> Any:
        rate = target.rate
        if rate is None:
            info = self._sd.query_devices(target.device, kind="output")
            rate = round(float(info["default_samplerate"]))
        self._out_rate = rate
        with _ENV_LOCK:
            saved = {k: os.environ.get(k) for k in target.env}
            os.environ.update(target.env)
            try:
                stream = self._sd.OutputStream(
                    device=target.device,
                    samplerate=rate,
                    channels=1,
                    dtype="float32",
                    blocksize=max(1, round(rate * self.config.block_s)),
                    latency=self.config.latency_s,
                    callback=self._callback,
                )
                stream.start()
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        return stream

    def close(self) -> None:
        """Stop playing and remove the device (idempotent)."""
        with self._lock:
            stream, self._stream = self._stream, None
            target, self._target = self._target, None
            if stream is not None:
                stop_and_close(stream, what="the virtual-microphone stream")
            if target is not None:
                self._device.remove()

    def set_latency(self, seconds: float | None) -> None:
        """The engine's measured latency (None: not measured yet)."""
        if seconds is not None and not math.isfinite(seconds):
            seconds = None
        self._latency_s = seconds
        line = self._line
        if line is not None:
            line.set_delay(self._delay_target())

    def set_offset_ms(self, offset_ms: float) -> None:
        MIC_OFFSET.check(offset_ms)
        self._offset_s = offset_ms / 1e3
        self.set_latency(self._latency_s)

    def set_max_delay_ms(self, max_delay_ms: float) -> None:
        MAX_MIC_DELAY.check(max_delay_ms)
        self._max_delay_s = max_delay_ms / 1e3
        self.set_latency(self._latency_s)

    def _wanted(self) -> float:
        """The delay that keeps the lips in sync."""
        base = self._latency_s if self._latency_s is not None else self.config.initial_delay_s
        return max(0.0, base + self._offset_s)

    def _delay_target(self) -> float:
        return max(self.config.min_delay_s, min(self._wanted(), self._max_delay_s))

    def status(self) -> VirtualMicStatus:
        line = self._line
        st = line.status() if line is not None else None
        return VirtualMicStatus(
            device=self._target.name if self._target is not None else None,
            open=self._stream is not None,
            delay_ms=st.delay_ms if st is not None else math.nan,
            target_ms=self._delay_target() * 1e3,
            offset_ms=self._offset_s * 1e3,
            underruns=(st.underruns if st is not None else 0) + self._underflows,
            error=self._error,
            max_delay_ms=self._max_delay_s * 1e3,
            behind_ms=max(0.0, self._wanted() - self._max_delay_s) * 1e3,
        )

    # -- capture callback ---------------------------------------------------------------------

    def tap(self, block: Array, rate: int, when: float) -> None:
        line = self._line
        if line is None or line.rate != rate:
            line = DelayLine(rate=rate, config=self.config.line, delay_s=self._delay_target())
            self._line = line
        line.write(block, when)

    # -- output callback ----------------------------------------------------------------------

    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        now = self._clock()
        if status and getattr(status, "output_underflow", False):
            self._underflows += 1
        latency = 0.0
        with contextlib.suppress(AttributeError, TypeError):
            latency = float(time_info.outputBufferDacTime - time_info.currentTime)
        if not 0.0 <= latency < 1.0:
            latency = 0.0
        line = self._line
        if line is None:
            outdata.fill(0)
            return
        outdata[:, 0] = line.read(frames, now + latency, self._out_rate)
