"""Microphone levels for meters, measured on the capture side, whatever the engine does.

Threads: `LevelMeter.feed` runs in the audio callback (PortAudio's thread) and only writes the
block's peak and mean square into preallocated slots of a ring, then publishes a counter (no
lock, no allocation beyond NumPy's reductions). `LevelMeter.read` (one reader: a GUI timer or a
monitor thread) aggregates every block since its previous read into one reading, so a meter
polled 30 times a second shows each peak once and never lags behind the microphone.

`level_of` maps a block of samples to a meter's 0..1 (any thread; a pure function).

`MeteredSoundDevice` wraps a sounddevice-like module so that every input stream opened through
it also feeds a meter; `AudioCapture` and the live engine use it like the module itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime.media.audio_capture import InputStreamLike, SoundDeviceLike

SILENCE_DB = -100.0
_SLOTS = 512  # blocks kept between two reads: 5 s of 10 ms blocks
LEVEL_FLOOR_DB = -60.0


@dataclass(frozen=True)
class LevelReading:
    """RMS and peak of the audio since the previous reading, in dBFS (SILENCE_DB if none)."""

    rms_db: float
    peak_db: float
    blocks: int  # how many capture blocks it covers (0: nothing arrived since the last read)


def to_db(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude) if amplitude > 1e-5 else SILENCE_DB


def level_of(samples: npt.NDArray[np.floating[Any]]) -> float:
    """Loudness for a meter: RMS in dBFS mapped from [-60, 0] dB to [0, 1]."""
    if samples.size == 0:
        return 0.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    db = 20.0 * math.log10(max(rms, 1e-9))
    return min(1.0, max(0.0, (db - LEVEL_FLOOR_DB) / -LEVEL_FLOOR_DB))


class LevelMeter:
    def __init__(self) -> None:
        self._peak = np.zeros(_SLOTS, np.float64)
        self._square = np.zeros(_SLOTS, np.float64)
        self._frames = np.zeros(_SLOTS, np.int64)
        self._written = 0  # blocks published; only the callback writes it
        self._read = 0  # blocks consumed; only the reader writes it

    def feed(self, block: Any) -> None:
        """Audio callback: one block of samples (any shape; the first channel is metered)."""
        samples = np.asarray(block)
        if samples.ndim > 1:
            samples = samples[:, 0]
        if samples.size == 0:
            return
        slot = self._written % _SLOTS
        self._peak[slot] = float(np.max(np.abs(samples)))
        self._square[slot] = float(np.dot(samples, samples)) / samples.size
        self._frames[slot] = samples.size
        self._written += 1  # published after the slot is complete

    def read(self) -> LevelReading:
        """Everything fed since the previous read, as one reading (one reader only)."""
        end = self._written
        start = max(self._read, end - _SLOTS)
        self._read = end
        if end == start:
            return LevelReading(SILENCE_DB, SILENCE_DB, 0)
        slots = np.arange(start, end) % _SLOTS
        frames = self._frames[slots]
        mean_square = float(np.dot(self._square[slots], frames) / max(1, int(frames.sum())))
        peak = float(self._peak[slots].max())
        return LevelReading(to_db(math.sqrt(mean_square)), to_db(peak), end - start)


class MeteredSoundDevice:
    """A sounddevice-like module whose input streams also feed `meter` (same API otherwise)."""

    def __init__(self, sd: SoundDeviceLike, meter: LevelMeter) -> None:
        self._sd = sd
        self.meter = meter

    def __getattr__(self, name: str) -> Any:
        # PortAudioError, _terminate/_initialize and anything else the caller looks up.
        return getattr(self._sd, name)

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        return self._sd.query_devices(device, kind=kind)

    def check_input_settings(
        self,
        device: Any = None,
        channels: int | None = None,
        dtype: Any = None,
        extra_settings: Any = None,
        samplerate: float | None = None,
    ) -> None:
        self._sd.check_input_settings(
            device=device,
            channels=channels,
            dtype=dtype,
            extra_settings=extra_settings,
            samplerate=samplerate,
        )

    def InputStream(self, **options: Any) -> InputStreamLike:
        callback: Callable[..., None] | None = options.get("callback")
        meter = self.meter
        if callback is not None:
            inner = callback

            def metered(indata: Any, frames: int, time_info: Any, status: Any) -> None:
                inner(indata, frames, time_info, status)
                meter.feed(indata[:frames])

            options = {**options, "callback": metered}
        return self._sd.InputStream(**options)
