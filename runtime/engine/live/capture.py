"""The audio-driven worker's input side (`live-worker` thread): which sound device a source
means and its capture, and moving captured audio into the timeline and to the audio sinks,
with silence filling the time when there is no input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from runtime.core.timing import Clock
from runtime.engine.live.audio_timeline import AudioTimeline
from runtime.engine.live.latency import LatencyMonitor
from runtime.engine.live.types import Emit, EngineConfig, EventKind, FileInput, MicrophoneInput
from runtime.media.audio_capture import (
    AudioCapture,
    CaptureConfig,
    CaptureState,
    CaptureStatus,
    CaptureTap,
    SoundDeviceLike,
)
from runtime.media.audio_gate import MicSwitch
from runtime.media.audio_playback import FilePlayback
from runtime.model.contract import SAMPLE_RATE, SAMPLES_PER_FRAME
from runtime.sinks import AudioSink

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]


def sound_device(
    source: FileInput | MicrophoneInput, config: EngineConfig, clock: Clock
) -> tuple[SoundDeviceLike, CaptureConfig]:
    """The `sounddevice`-like module to capture from and its capture settings."""
    if isinstance(source, FileInput):
        playback = FilePlayback(source.audio, source.rate, name=source.name, clock=clock)
        return playback, replace(config.capture, finite=True, device=None)
    return source.sd, replace(config.capture, device=source.device)


def open_capture(
    source: FileInput | MicrophoneInput,
    config: EngineConfig,
    *,
    clock: Clock,
    on_status: Callable[[CaptureStatus], None],
    switch: MicSwitch,
    tap: CaptureTap | None,
) -> AudioCapture:
    """The capture of `source` (its sound device and settings, `sound_device`), not started."""
    sd, capture_config = sound_device(source, config, clock)
    return AudioCapture(
        sd=sd, config=capture_config, clock=clock, on_status=on_status, switch=switch, tap=tap
    )


class AudioFeed:
    def __init__(
        self,
        *,
        capture: AudioCapture,
        timeline: AudioTimeline,
        sinks: Sequence[AudioSink],
        monitor: LatencyMonitor,
        clock: Clock,
        silence_fill_s: float,
        emit: Emit,
        gate: Callable[[Array], Array] | None = None,
    ) -> None:
        self.capture, self.timeline = capture, timeline
        self._sinks, self._monitor, self._clock = list(sinks), monitor, clock
        self._silence_fill_s, self._emit = silence_fill_s, emit
        self._gate = gate  # the noise gate: on what the model hears, not what sinks record
        self.started = clock()

    def pull(self, ended: bool) -> bool:
        """Move new input into the timeline; True if there was any."""
        capture, timeline = self.capture, self.timeline
        got = capture.read()
        if got.samples.size:
            heard = got.samples if self._gate is None else self._gate(got.samples)
            first = timeline.append(heard, got.end_time, new_segment=got.restarted)
            self._feed(first, got.samples)
            return True
        state = capture.state
        if state in (CaptureState.RUNNING, CaptureState.STARTING):
            return False
        if state is CaptureState.ENDED and not ended:
            return False  # the last frames of the file come first
        # No input (lost, no device, the file is over): keep time moving with silence so the
        # avatar idles on and the frame clock holds.
        now = self._clock()
        end = timeline.end_time if timeline.total else self.started
        if now - end >= self._silence_fill_s:
            n = int((now - end) * SAMPLE_RATE) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME
            first = timeline.append_silence(n, end + n / SAMPLE_RATE)
            self._feed(first, np.zeros(n, np.float32))
        return False

    def _feed(self, first: int, samples: Array) -> None:
        for sink in self._sinks:
            try:
                sink.add_audio(first, samples)
            except Exception as exc:  # a sink never stops the engine
                self._monitor.count("audio_sink_errors")
                if self._monitor.counter("audio_sink_errors") == 1:
                    logger.exception("a sink failed to take audio")
                    self._emit(EventKind.SINK, f"{type(exc).__name__}: {exc}")
