"""The live engine's link to the virtual microphone (opened and closed by the thread that starts
and stops the engine; `update` on the `live-worker` thread once per hop).

The microphone plays the captured audio delayed by the measured latency, so the call hears the
voice when it sees the lips (`runtime.media.virtual_mic`).
"""

from __future__ import annotations

import math

from runtime.engine.live.latency import LatencyMonitor
from runtime.engine.live.types import Emit, EventKind, MicEvent
from runtime.media.audio_capture import CaptureTap
from runtime.media.virtual_mic import VirtualMic, VirtualMicStatus
from runtime.media.virtual_mic_device import VirtualMicUnavailable


class VirtualMicLink:
    def __init__(
        self,
        vmic: VirtualMic | None,
        *,
        monitor: LatencyMonitor,
        emit: Emit,
    ) -> None:
        self.vmic = vmic
        self._monitor, self._emit = monitor, emit
        self.is_open = False
        self._out_of_sync = False

    def open(self, *, has_audio: bool) -> None:
        vmic = self.vmic
        if vmic is None:
            return
        if not has_audio:
            self._emit(
                EventKind.VIRTUAL_MIC,
                "no virtual microphone: the webcam source has no audio",
                MicEvent.NO_AUDIO,
            )
            return
        try:
            vmic.open()
        except VirtualMicUnavailable as exc:
            self._emit(
                EventKind.VIRTUAL_MIC,
                f"virtual microphone unavailable: {exc}",
                MicEvent.UNAVAILABLE,
            )
            return
        self.is_open = True
        self._emit(
            EventKind.VIRTUAL_MIC, f"virtual microphone: {vmic.status().device}", MicEvent.OPEN
        )

    @property
    def tap(self) -> CaptureTap | None:
        return self.vmic.tap if self.is_open and self.vmic is not None else None

    def update(self) -> None:
        """Hand the measured latency to the virtual microphone; say when the delay it would
        need goes over its cap (the lips are then out of sync) and when it comes back."""
        if self.vmic is None or not self.is_open:
            return
        p50 = self._monitor.snapshot().latency_p50_ms
        self.vmic.set_latency(p50 / 1e3 if math.isfinite(p50) else None)
        status = self.vmic.status()
        words = status.out_of_sync
        if (words is not None) != self._out_of_sync:
            self._out_of_sync = words is not None
            cap = f"the voice is delayed {status.max_delay_ms / 1e3:.1f} s at most"
            self._emit(
                EventKind.VIRTUAL_MIC,
                f"{words} ({cap})" if words is not None else "lips in sync again",
                MicEvent.OUT_OF_SYNC if words is not None else MicEvent.IN_SYNC,
            )

    def close(self) -> None:
        if self.vmic is not None and self.is_open:
            self.is_open = False
            self.vmic.close()

    def status(self) -> VirtualMicStatus | None:
        return None if self.vmic is None else self.vmic.status()
