"""What of the microphone reaches the model and the call: a noise gate, mute and push-to-talk.

- `MicSwitch` (mute, push-to-talk) is flipped from any thread (GUI, CLI) and applied in the
  capture callback (PortAudio's thread, `runtime.media.audio_capture`), block by block, with a
  one-block linear ramp so a switch never clicks. Applying it there, at the source, makes it
  sample-accurate for everything downstream: the model sees silence exactly from the block
  the switch was flipped in, and the virtual microphone carries silence from that very sample,
  delayed like the video.
- `NoiseGate` runs on the inference worker over the 16 kHz samples just before they join the
  engine's audio timeline (`runtime.engine.live.engine` calls it): audio whose level stays below the
  threshold reaches the model as digital silence. The engine normalises each encoder window, so
  a fan at -55 dBFS would otherwise be amplified into the same range as speech and the avatar
  would mouth it. The gate is for the model only: the recording and the virtual microphone get
  the ungated microphone (a gate chops soft word onsets; call apps run their own noise
  suppression).

Both are pure signal processing over numpy arrays; nothing here touches a device.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runtime.core.validate import GATE_THRESHOLD

Array = npt.NDArray[np.float32]

DEFAULT_GATE_DBFS = -45.0
"""The GUI's and the CLI's default threshold: above a quiet room's noise floor (laptop
microphones sit around -60..-50 dBFS), well below normal speech (-30..-15 dBFS RMS)."""


@dataclass(frozen=True, kw_only=True)
class GateConfig:
    threshold_dbfs: float | None = None
    """Audio whose level (RMS over `window_s`) is below this reaches the model as silence;
    None: no gate."""
    window_s: float = 0.04
    """Level window: one video frame. Long enough that a single keyboard click (a few ms) does
    not open the gate, short enough to open on a word's first syllable."""
    hold_s: float = 0.25
    """The gate stays open this long after the level last crossed the threshold, so the quiet
    ends of words and the gaps between them pass whole."""
    attack_s: float = 0.005
    release_s: float = 0.05

    def __post_init__(self) -> None:
        if self.threshold_dbfs is not None:
            GATE_THRESHOLD.check(self.threshold_dbfs)
        for name in ("window_s", "attack_s", "release_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.hold_s < 0:
            raise ValueError("hold_s must not be negative")


class NoiseGate:
    """A stateful gate over one continuous 16 kHz stream (inference worker only, except
    `set_threshold`, which any thread may call; it takes effect on the next `process`)."""

    def __init__(self, config: GateConfig, *, rate: int) -> None:
        self.config = config
        self.rate = rate
        self._threshold = config.threshold_dbfs
        self._window = max(1, round(config.window_s * rate))
        self._hold = round(config.hold_s * rate)
        self._attack = 1.0 / max(1, round(config.attack_s * rate))
        self._release = 1.0 / max(1, round(config.release_s * rate))
        self.reset()

    @property
    def threshold_dbfs(self) -> float | None:
        return self._threshold

    def set_threshold(self, dbfs_value: float | None) -> None:
        if dbfs_value is not None:
            GATE_THRESHOLD.check(dbfs_value)
        self._threshold = dbfs_value

    def reset(self) -> None:
        """Forget the past (a new, unrelated stream follows): closed, empty level window."""
        self._history = np.zeros(self._window, np.float64)  # squares of the last samples
        self._since_loud = self._hold + 1  # samples since the level was last above threshold
        self._gain = 0.0
        self.open = False

    def process(self, samples: Array) -> Array:
        threshold = self._threshold
        n = samples.shape[0]
        x = np.asarray(samples, np.float32)
        squares = np.concatenate([self._history, x.astype(np.float64) ** 2])
        self._history = squares[-self._window :]
        if threshold is None:
            self._gain, self.open, self._since_loud = 1.0, True, 0
            return x
        if n == 0:
            return x
        # Mean square over the `window` samples ending at each new sample.
        csum = np.concatenate([[0.0], np.cumsum(squares)])
        mean_sq = (csum[self._window :] - csum[: -self._window])[-n:] / self._window
        loud = mean_sq >= 10.0 ** (threshold / 10.0)
        # Samples since the last loud one (carried across calls), then open while within hold.
        idx = np.arange(n)
        last_loud = np.maximum.accumulate(np.where(loud, idx, -1))
        since = np.where(last_loud >= 0, idx - last_loud, self._since_loud + idx + 1)
        target = (since <= self._hold).astype(np.float64)
        self._since_loud = int(since[-1])
        gain = self._ramp(target)
        self.open = bool(target[-1])
        if gain.min() == 1.0:
            return x
        out: Array = (x * gain).astype(np.float32)
        return out

    def _ramp(self, target: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Gain moving towards `target` no faster than the attack/release slopes."""
        n = target.shape[0]
        gain = np.empty(n, np.float64)
        g = self._gain
        # Runs of constant target; within a run the gain is a clipped straight line.
        edges = np.flatnonzero(np.diff(target)) + 1
        starts = np.concatenate([[0], edges])
        stops = np.concatenate([edges, [n]])
        for a, b in zip(starts, stops, strict=True):
            steps = np.arange(1, b - a + 1, dtype=np.float64)
            if target[a] >= 1.0:
                seg = np.minimum(1.0, g + steps * self._attack)
            else:
                seg = np.maximum(0.0, g - steps * self._release)
            gain[a:b] = seg
            g = float(seg[-1])
        self._gain = g
        return gain


class MicSwitch:
    """Mute and push-to-talk, set from any thread, applied in the capture callback.

    Open = not muted and (push-to-talk off, or its key held). A closed switch yields exact
    zeros; a change ramps linearly over the block it falls in.
    """

    def __init__(self, *, muted: bool = False, push_to_talk: bool = False) -> None:
        self._lock = threading.Lock()
        self._muted = muted
        self._ptt = push_to_talk
        self._held = False
        self._gain = 0.0 if self._closed() else 1.0  # callback thread only

    def _closed(self) -> bool:
        return self._muted or (self._ptt and not self._held)

    @property
    def muted(self) -> bool:
        return self._muted

    @property
    def push_to_talk(self) -> bool:
        return self._ptt

    @property
    def is_open(self) -> bool:
        with self._lock:
            return not self._closed()

    def set_muted(self, muted: bool) -> None:
        with self._lock:
            self._muted = muted

    def set_push_to_talk(self, enabled: bool) -> None:
        with self._lock:
            self._ptt = enabled
            self._held = False

    def set_talking(self, held: bool) -> None:
        """The push-to-talk key went down (True) or up (False)."""
        with self._lock:
            self._held = held

    def apply(self, block: Array) -> Array:
        """The block as the switch lets it through (callback thread); `block` is not changed."""
        with self._lock:
            target = 0.0 if self._closed() else 1.0
        start, self._gain = self._gain, target
        if start == target == 1.0:
            return block
        if start == target == 0.0:
            return np.zeros_like(block)
        ramp = np.linspace(start, target, block.shape[0] + 1, dtype=np.float32)[1:]
        out: Array = (block * ramp).astype(np.float32)
        return out
