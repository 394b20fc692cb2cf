"""Devices and the live engine for the GUI, built on `runtime/` (called from the GUI thread for
lists, from the bridge's worker for start/stop; callbacks arrive on runtime threads).

Hardware is passed in: the `sounddevice` module (a fake in tests), the pyvirtualcam backend
name (a registered fake in tests) and the webcam opener. Nothing here touches Qt.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from desktop_app.backend import (
    LiveCallbacks,
    LiveConfig,
    LiveSession,
    Models,
    UserError,
    VirtualCameraInfo,
)
from desktop_app.images import RGB
from runtime.audio_capture import AudioCapture, CaptureConfig, SoundDeviceLike
from runtime.sinks import SinkUnavailable
from runtime.sinks.virtual_camera import VirtualCameraConfig, VirtualCameraSink

logger = logging.getLogger(__name__)

LEVEL_PERIOD_S = 0.05
LEVEL_FLOOR_DB = -60.0


def level_of(samples: np.ndarray) -> float:
    """Loudness for a meter: RMS in dBFS mapped from [-60, 0] dB to [0, 1]."""
    if samples.size == 0:
        return 0.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    db = 20.0 * math.log10(max(rms, 1e-9))
    return min(1.0, max(0.0, (db - LEVEL_FLOOR_DB) / -LEVEL_FLOOR_DB))


def _import_sounddevice() -> SoundDeviceLike:
    try:
        module: ModuleType = importlib.import_module("sounddevice")
    except OSError as exc:  # PortAudio itself is missing
        raise UserError(f"the audio system is not available: {exc}") from None
    return module


class MicrophoneMonitor:
    """Opens the microphone and reports its level from a reader thread until closed."""

    def __init__(self, sd: SoundDeviceLike, device: str | None, on_level: Callable[[float], None]):
        self._capture = AudioCapture(sd=sd, config=CaptureConfig(device=device))
        self._on_level = on_level
        self._stop = threading.Event()
        self._capture.start()
        self._thread = threading.Thread(target=self._run, name="mic-level", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(LEVEL_PERIOD_S):
            audio = self._capture.read()
            if audio.samples.size:
                self._on_level(level_of(audio.samples))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._capture.stop()


class RuntimeDevices:
    def __init__(self, *, sd: SoundDeviceLike | None = None) -> None:
        self._sd = sd

    @property
    def sd(self) -> SoundDeviceLike:
        if self._sd is None:
            self._sd = _import_sounddevice()
        return self._sd

    def microphones(self) -> list[str]:
        devices: Any = self.sd.query_devices()
        names: list[str] = []
        for info in devices:
            name = str(info["name"])
            if int(info.get("max_input_channels", 0)) > 0 and name not in names:
                names.append(name)
        return names

    def default_microphone(self) -> str | None:
        try:
            return str(self.sd.query_devices(kind="input")["name"])
        except Exception:
            return None

    def webcams(self) -> list[str]:
        return []  # filled in when the runtime's webcam source lands

    def monitor_microphone(
        self, device: str | None, on_level: Callable[[float], None]
    ) -> MicrophoneMonitor:
        return MicrophoneMonitor(self.sd, device, on_level)

    def preview_webcam(self, device: str, on_frame: Callable[[RGB], None]) -> Any:
        raise UserError("webcam input is not available in this version yet")


class RuntimeEngine:
    """Starts live sessions; probes the virtual camera."""

    def __init__(
        self, *, models: Models, devices: RuntimeDevices, vcam_backend: str | None = None
    ) -> None:
        self.models = models
        self.devices = devices
        self.vcam_backend = vcam_backend

    def virtual_camera_status(self) -> VirtualCameraInfo:
        """Open the virtual camera for a moment: the only reliable way to know it works."""
        sink = VirtualCameraSink(
            VirtualCameraConfig(width=640, height=360, backend=self.vcam_backend)
        )
        try:
            sink.open(fps=25)
        except SinkUnavailable as exc:
            return VirtualCameraInfo(False, None, None, str(exc))
        device, backend = sink.device, sink.backend
        sink.close()
        return VirtualCameraInfo(True, backend, device, None)

    def start(self, config: LiveConfig, callbacks: LiveCallbacks) -> LiveSession:
        try:
            importlib.import_module("runtime.engine")
        except ModuleNotFoundError:
            raise UserError("the live engine is not part of this version yet") from None
        raise UserError("the live engine is not connected yet")
