"""Microphones and webcams for the GUI, built on `runtime/`: lists are read on the GUI thread,
the level monitor and webcam preview run on their own threads and call back from there.

Hardware is passed in: the `sounddevice` module and the OpenCV module (fakes in tests). Nothing
here touches Qt.
"""

from __future__ import annotations

import importlib
import logging
import math
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from desktop_app.images import RGB
from desktop_app.services import UserError
from runtime.media.audio_capture import AudioCapture, CaptureConfig, SoundDeviceLike
from runtime.media.face_crop import FaceTracker
from runtime.media.webcam import WebcamConfig, WebcamSource

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


def linux_webcams(root: Path = Path("/sys/class/video4linux")) -> list[str]:
    """Capture devices as "index: name", from sysfs (no camera is opened). Loopback devices
    (virtual cameras, including ours) and metadata nodes are left out."""
    found: list[str] = []
    if not root.is_dir():
        return found
    for node in sorted(root.glob("video*"), key=lambda n: int(n.name[5:] or 0)):
        try:
            if "/virtual/" in str(node.resolve()):
                continue  # v4l2loopback and other virtual devices
            index_file = node / "index"
            if index_file.exists() and index_file.read_text().strip() != "0":
                continue  # a second node of the same camera (metadata)
            name = (node / "name").read_text().strip()
        except OSError:
            continue
        found.append(f"{node.name[5:]}: {name}")
    return found


def webcam_index(device: str | None) -> int:
    """'2: HD Camera' -> 2 (the OpenCV index); None or unparsable -> 0."""
    if not device:
        return 0
    head = device.split(":", 1)[0].strip()
    return int(head) if head.isdigit() else 0


class WebcamPreview:
    """Reads the webcam and reports the tracked face crop until closed (own thread)."""

    def __init__(self, cv2_module: Any, index: int, on_frame: Callable[[RGB], None]) -> None:
        self._source = WebcamSource(cv2=cv2_module, config=WebcamConfig(index=index))
        self._tracker = FaceTracker()
        self._on_frame = on_frame
        self._stop = threading.Event()
        self._source.start()
        self._thread = threading.Thread(target=self._run, name="webcam-preview", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = 0
        while not self._stop.is_set():
            grab = self._source.latest(after=last, timeout=0.1)
            if grab is None:
                continue
            last = grab.seq
            self._on_frame(self._tracker.update(grab.rgb))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._source.stop()


class RuntimeDevices:
    """Microphones through a sounddevice-like module, webcams through an OpenCV-like one."""

    def __init__(
        self,
        *,
        sd: SoundDeviceLike | None = None,
        cv2_module: Any = None,
        webcam_lister: Callable[[], list[str]] | None = None,
    ) -> None:
        self._sd = sd
        self.cv2 = cv2 if cv2_module is None else cv2_module
        if webcam_lister is None:
            webcam_lister = linux_webcams if sys.platform.startswith("linux") else _numbered
        self._webcam_lister = webcam_lister

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
        return self._webcam_lister()

    def monitor_microphone(
        self, device: str | None, on_level: Callable[[float], None]
    ) -> MicrophoneMonitor:
        return MicrophoneMonitor(self.sd, device, on_level)

    def preview_webcam(self, device: str, on_frame: Callable[[RGB], None]) -> WebcamPreview:
        return WebcamPreview(self.cv2, webcam_index(device), on_frame)


def _numbered() -> list[str]:
    """Where webcams cannot be listed without opening them: offer the first two indices."""
    return ["0: Camera 0", "1: Camera 1"]
