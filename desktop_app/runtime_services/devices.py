"""Microphones and webcams for the GUI, built on `runtime/`: lists are read on the GUI thread,
the level monitor and webcam preview run on their own threads and call back from there.

Hardware is passed in: the `sounddevice` module and the OpenCV module (fakes in tests). Nothing
here touches Qt.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2

from desktop_app.images import RGB
from desktop_app.services import AudioLevel, DeviceChoice, SourceUnavailable, UserError
from desktop_app.settings import SourceKind
from runtime.media import device_names
from runtime.media.audio_capture import AudioCapture, CaptureConfig, SoundDeviceLike
from runtime.media.device_names import Microphone, PulseSource, Runner
from runtime.media.face_crop import FaceTracker
from runtime.media.level_meter import LevelMeter, LevelReading, MeteredSoundDevice
from runtime.media.webcam import WebcamConfig, WebcamSource

logger = logging.getLogger(__name__)


LEVEL_PERIOD_S = 1 / 30  # meters redraw 30 times a second


def _import_sounddevice() -> SoundDeviceLike:
    try:
        module: ModuleType = importlib.import_module("sounddevice")
    except OSError as exc:  # PortAudio itself is missing
        raise UserError(f"the audio system is not available: {exc}") from None
    return module


def audio_level(reading: LevelReading) -> AudioLevel:
    return AudioLevel(rms_db=reading.rms_db, peak_db=reading.peak_db)


class MicrophoneMonitor:
    """Opens the microphone and reports its level (measured in the audio callback) from a
    thread 30 times a second until closed."""

    def __init__(
        self,
        sd: SoundDeviceLike,
        device: int | str | None,
        on_level: Callable[[AudioLevel], None],
        *,
        on_close: Callable[[MicrophoneMonitor], None] | None = None,
    ):
        self._on_close = on_close
        self._meter = LevelMeter()
        self._capture = AudioCapture(
            sd=MeteredSoundDevice(sd, self._meter), config=CaptureConfig(device=device)
        )
        self._on_level = on_level
        self._stop = threading.Event()
        self._capture.start()
        self._thread = threading.Thread(target=self._run, name="mic-level", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(LEVEL_PERIOD_S):
            reading = self._meter.read()
            if reading.blocks:
                self._on_level(audio_level(reading))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._capture.stop()
        if self._on_close is not None:
            self._on_close(self)


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
        pactl: Runner | None = None,
        platform: str = sys.platform,
    ) -> None:
        self._sd = sd
        self.cv2 = cv2 if cv2_module is None else cv2_module
        if webcam_lister is None:
            webcam_lister = linux_webcams if platform.startswith("linux") else _numbered
        self._webcam_lister = webcam_lister
        self._pactl = pactl
        self._platform = platform
        self._listed: list[Microphone] = []
        self._default: str | None = None
        self._open: set[MicrophoneMonitor] = set()

    @property
    def sd(self) -> SoundDeviceLike:
        if self._sd is None:
            self._sd = _import_sounddevice()
        return self._sd

    def _pulse(self, names: set[str]) -> tuple[list[PulseSource], str | None] | None:
        """The sound server's sources, asked only when PortAudio reaches one through ALSA."""
        if not self._platform.startswith("linux") or not {"pulse", "pipewire"} & names:
            return None
        if self._pactl is None:
            return device_names.pulse_sources()
        return device_names.pulse_sources(self._pactl)

    def _scan(self) -> list[Microphone]:
        sd: Any = self.sd
        devices = [dict(d) for d in sd.query_devices()]
        hostapis_fn = getattr(sd, "query_hostapis", None)
        hostapis = [dict(a) for a in hostapis_fn()] if hostapis_fn is not None else []
        pulse = self._pulse({str(d.get("name", "")) for d in devices})
        found = device_names.microphones(devices, hostapis, pulse=pulse, platform=self._platform)
        default_index: int | None = None
        default = getattr(sd, "default", None)
        if default is not None:
            try:
                default_index = int(default.device[0])
            except (TypeError, ValueError, IndexError, AttributeError):
                default_index = None
        self._default = device_names.default_label(
            devices, default_index, pulse=pulse, choices=found
        )
        self._listed = found
        return found

    def microphones(self) -> list[DeviceChoice]:
        return [DeviceChoice(id=m.id, label=m.label) for m in self._scan()]

    def rescan(self) -> None:
        """PortAudio lists devices once, when it starts: restart it so a microphone plugged
        in since then is listed. Skipped while a level monitor has a stream open (restarting
        the library would pull it away); the live engine's streams are closed whenever the
        window offers Refresh. sounddevice has no public call for this; its private pair is
        used when present."""
        if self._open:
            logger.info("not restarting the audio system: a microphone test is running")
            return
        sd: Any = self.sd
        terminate = getattr(sd, "_terminate", None)
        initialize = getattr(sd, "_initialize", None)
        if terminate is None or initialize is None:
            return
        try:
            terminate()
            initialize()
        except Exception as exc:  # the lists still work from what PortAudio knew
            logger.warning("could not restart the audio system: %s", exc)
        self._listed = []

    def default_microphone(self) -> str | None:
        if not self._listed:
            try:
                self._scan()
            except Exception:
                return None
        return self._default

    def resolve_microphone(self, device_id: str | None) -> int | str | None:
        """What to pass to PortAudio for a remembered id (None: the system default). A
        sound-server source is chosen through PULSE_SOURCE, set here for the next stream."""
        if device_id is None:
            device_names.select_pulse_source(None)
            return None
        mic = next((m for m in self._listed if m.id == device_id), None)
        if mic is None:
            self._scan()
            mic = next((m for m in self._listed if m.id == device_id), None)
        if mic is None:
            # Not listed (unplugged, or a name saved by an older version): let PortAudio
            # look it up by name, so the error names it.
            return device_id.removeprefix(device_names.PULSE_PREFIX)
        device_names.select_pulse_source(mic.pulse_source)
        return mic.device

    def check_source(self, kind: SourceKind, device: str | None) -> None:
        """Raise SourceUnavailable when the chosen source cannot be opened right now."""
        if kind == "webcam":
            index = webcam_index(device)
            capture = self.cv2.VideoCapture(index)
            try:
                if not capture.isOpened():
                    name = device or f"camera {index}"
                    raise SourceUnavailable(
                        f"The webcam “{name}” cannot be opened: it is not connected, or another "
                        "app is using it.",
                        kind="webcam",
                    )
            finally:
                capture.release()
            return
        try:
            resolved = self.resolve_microphone(device)
            self.sd.query_devices(resolved, kind="input")
        except SourceUnavailable:
            raise
        except Exception as exc:
            label = next((m.label for m in self._listed if m.id == device), device)
            what = f"The microphone “{label}”" if device else "The system default microphone"
            raise SourceUnavailable(
                f"{what} cannot be opened ({exc}).", kind="microphone"
            ) from None

    def webcams(self) -> list[str]:
        return self._webcam_lister()

    def monitor_microphone(
        self, device: str | None, on_level: Callable[[AudioLevel], None]
    ) -> MicrophoneMonitor:
        monitor = MicrophoneMonitor(
            self.sd, self.resolve_microphone(device), on_level, on_close=self._open.discard
        )
        self._open.add(monitor)
        return monitor

    def preview_webcam(self, device: str, on_frame: Callable[[RGB], None]) -> WebcamPreview:
        return WebcamPreview(self.cv2, webcam_index(device), on_frame)


def _numbered() -> list[str]:
    """Where webcams cannot be listed without opening them: offer the first two indices."""
    return ["0: Camera 0", "1: Camera 1"]
