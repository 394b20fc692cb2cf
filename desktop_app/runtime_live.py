"""Devices and the live engine for the GUI, built on `runtime/` (lists are read on the GUI
thread, sessions start and stop on the bridge's worker; callbacks arrive on runtime threads).

Hardware is passed in: the `sounddevice` module, the OpenCV module for webcams and the
pyvirtualcam backend name (fakes in tests). Nothing here touches Qt.
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

from desktop_app.backend import (
    LiveCallbacks,
    LiveConfig,
    LiveSession,
    LiveStats,
    Models,
    UserError,
    VirtualCameraInfo,
)
from desktop_app.images import RGB
from desktop_app.settings import Output, Pose, Quality
from runtime import engine as engine_api
from runtime import sessions as sessions_api
from runtime.audio_capture import AudioCapture, CaptureConfig, SoundDeviceLike
from runtime.face_crop import FaceTracker
from runtime.live_avatar import LiveAvatar, encode_avatar
from runtime.sinks import SinkUnavailable
from runtime.sinks.recorder import RecorderConfig, RecorderSink
from runtime.sinks.virtual_camera import FrameComposer, VirtualCameraConfig, VirtualCameraSink
from runtime.webcam import WebcamConfig, WebcamSource

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


GAZE_RANGE = 0.7
"""The model's gaze condition spans about -0.7..0.7; the sliders' -1..1 map onto it."""


def _engine_api() -> Any:
    return engine_api


def _sessions_api() -> Any:
    return sessions_api


def short_provider(name: str) -> str:
    """'CUDAExecutionProvider' -> 'CUDA'."""
    return name.removesuffix("ExecutionProvider") or name


def controls_for(pose: Pose, quality: Quality) -> Any:
    """The engine's LiveControls for the GUI's pose and quality settings."""
    api = _engine_api()
    natural = pose.natural
    return api.LiveControls(
        pose=None if natural else api.HeadPose(yaw=pose.yaw, pitch=pose.pitch, roll=pose.roll),
        gaze=None if natural else api.Gaze(x=pose.gaze_x * GAZE_RANGE, y=pose.gaze_y * GAZE_RANGE),
        cfg_scale=quality.cfg_scale,
        nfe=quality.steps + 1,  # nfe time-grid points = steps + 1
        hop=quality.hop,
    )


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))


def blurred_backdrop(image: RGB, width: int, height: int) -> RGB:
    """The avatar, scaled to cover the output, heavily blurred and darkened (the 'blur' mode)."""
    small_w, small_h = max(8, width // 8), max(8, height // 8)
    h, w = image.shape[:2]
    scale = max(small_w / w, small_h / h)
    size = (max(small_w, round(w * scale)), max(small_h, round(h * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    top, left = (size[1] - small_h) // 2, (size[0] - small_w) // 2
    cropped = resized[top : top + small_h, left : left + small_w]
    blurred = cv2.GaussianBlur(cropped, (0, 0), sigmaX=max(2.0, small_w / 40))
    big = cv2.resize(blurred, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray((big.astype(np.float32) * 0.7).astype(np.uint8))


def composer_for(output: Output, avatar: RGB) -> FrameComposer:
    """How the face is placed on the output picture (shared by the camera and the preview)."""
    backdrop = None
    if output.background == "blur":
        backdrop = blurred_backdrop(avatar, output.width, output.height)
    colour = hex_rgb(output.background_colour) if output.background == "colour" else (0, 0, 0)
    return FrameComposer(
        width=output.width,
        height=output.height,
        mirror=output.mirror,
        background=colour,
        background_image=backdrop,
    )


class _Look:
    """The current output settings and composer, swapped whole under a lock (any thread)."""

    def __init__(self, output: Output, avatar: RGB) -> None:
        self._lock = threading.Lock()
        self._output = output
        self._avatar = avatar
        self._composer = composer_for(output, avatar)
        self.version = 0

    def get(self) -> tuple[Output, FrameComposer, int]:
        with self._lock:
            return self._output, self._composer, self.version

    def update(self, *, output: Output | None = None, avatar: RGB | None = None) -> None:
        with self._lock:
            self._output = output or self._output
            self._avatar = self._avatar if avatar is None else avatar
            self._composer = composer_for(self._output, self._avatar)
            self.version += 1


class _PreviewOut:
    """The preview sink: composes the output picture and hands it to the GUI (pacer thread)."""

    name = "preview"

    def __init__(self, look: _Look, on_frame: Callable[[RGB], None]) -> None:
        self._look = look
        self._on_frame = on_frame

    def open(self, *, fps: float) -> None:
        pass

    def send(self, frame: Any, repeat: bool) -> None:
        if repeat:
            return
        _, composer, _ = self._look.get()
        self._on_frame(composer.compose(frame.image))

    def close(self, timeout: float = 1.0) -> None:
        pass


class _CameraOut:
    """The virtual camera with live output changes (pacer thread).

    Mirror and background change in place; a new resolution reopens the camera (pyvirtualcam
    cannot resize one), which the next frame does.
    """

    name = "virtual camera"

    def __init__(self, look: _Look, backend: str | None) -> None:
        self._look = look
        self._backend = backend
        self._fps = 25.0
        self._sink: VirtualCameraSink | None = None
        self._size: tuple[int, int] = (0, 0)
        self._version = -1
        self.device: str | None = None
        self.backend_name: str | None = None

    def open(self, *, fps: float) -> None:
        self._fps = fps
        output, composer, version = self._look.get()
        self._open(output)
        self._use(composer, version)

    def _open(self, output: Output) -> None:
        config = VirtualCameraConfig(
            width=output.width, height=output.height, backend=self._backend
        )
        sink = VirtualCameraSink(config)
        sink.open(fps=self._fps)  # raises SinkUnavailable with the backend's reason
        self._sink, self._size = sink, (output.width, output.height)
        self.device, self.backend_name = sink.device, sink.backend

    def _use(self, composer: FrameComposer, version: int) -> None:
        assert self._sink is not None
        # The runtime sink builds its composer from its config; it has no setter for a new
        # look, so the app swaps it (mirror and background must change without reopening).
        self._sink._composer = composer
        self._version = version

    def send(self, frame: Any, repeat: bool) -> None:
        output, composer, version = self._look.get()
        if version != self._version:
            if (output.width, output.height) != self._size:
                self.close()
                self._open(output)
            self._use(composer, version)
        if self._sink is None:
            raise RuntimeError("virtual camera is not open")
        self._sink.send(frame, repeat)

    def close(self, timeout: float = 1.0) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close(timeout)


class RecorderTap(RecorderSink):
    """A recorder the engine always has (it feeds audio only to the RecorderSinks it was built
    with), recording only between begin() and end(); it also meters the audio it sees.
    Frames come on the pacer thread, audio on the inference worker, begin/end on the bridge's
    worker."""

    def __init__(self) -> None:
        super().__init__(RecorderConfig(path=Path("unused.mp4")))
        self._tap_lock = threading.Lock()
        self._inner: RecorderSink | None = None
        self._tap_fps = 25.0
        self.level = 0.0

    @property
    def name(self) -> str:
        return "recording"

    def open(self, *, fps: float) -> None:
        self._tap_fps = fps

    def send(self, frame: Any, repeat: bool) -> None:
        with self._tap_lock:
            inner = self._inner
        if inner is not None:
            inner.send(frame, repeat)

    def add_audio(self, first_sample: int, samples: Any) -> None:
        self.level = level_of(samples)
        with self._tap_lock:
            inner = self._inner
        if inner is not None:
            inner.add_audio(first_sample, samples)

    def begin(self, path: Path) -> None:
        recorder = RecorderSink(RecorderConfig(path=path))
        recorder.open(fps=self._tap_fps)  # SinkUnavailable says why it cannot
        with self._tap_lock:
            previous, self._inner = self._inner, recorder
        if previous is not None:
            previous.close(timeout=10.0)

    def end(self) -> Path | None:
        with self._tap_lock:
            inner, self._inner = self._inner, None
        if inner is None:
            return None
        inner.close(timeout=10.0)
        if inner.error:
            raise UserError(f"the recording failed: {inner.error}")
        return inner.finished_path or inner.config.path

    def close(self, timeout: float = 1.0) -> None:
        self.end()


class RuntimeSession:
    """One live session: the runtime engine with its preview, camera and recorder sinks."""

    def __init__(
        self,
        *,
        engine: Any,
        models: Any,
        look: _Look,
        camera: _CameraOut,
        tap: RecorderTap,
        pose: Pose,
        quality: Quality,
    ) -> None:
        self._engine = engine
        self._models = models
        self._look = look
        self._camera = camera
        self._tap = tap
        self._lock = threading.Lock()
        self._pose = pose
        self._quality = quality
        self.provider = short_provider(models.providers[0])
        self.virtual_camera = self._camera_info()

    @property
    def engine(self) -> Any:
        return self._engine

    def _camera_info(self) -> VirtualCameraInfo:
        for status in self._engine.stats().sinks:
            if status.name == _CameraOut.name:
                if status.open:
                    return VirtualCameraInfo(
                        True, self._camera.backend_name, self._camera.device, None
                    )
                return VirtualCameraInfo(False, None, None, status.unavailable)
        return VirtualCameraInfo(False, None, None, "no virtual camera")

    def set_avatar(self, avatar: RGB, avatar_id: str) -> None:
        live = _engine_live_avatar(self._models, avatar, avatar_id)
        self._engine.set_avatar(live)
        self._look.update(avatar=avatar)

    def set_pose(self, pose: Pose) -> None:
        with self._lock:
            self._pose = pose
            controls = controls_for(self._pose, self._quality)
        self._engine.set_controls(controls)

    def set_quality(self, quality: Quality) -> None:
        with self._lock:
            self._quality = quality
            controls = controls_for(self._pose, self._quality)
        self._engine.set_controls(controls)

    def set_output(self, output: Output) -> None:
        self._look.update(output=output)

    def stats(self) -> LiveStats:
        stats = self._engine.stats()
        lat = stats.latency
        rtf = lat.real_time_factor
        measured = math.isfinite(rtf) and lat.frames_unique > 0
        realtime = rtf <= 1.0 if measured else self.provider != "CPU"
        return LiveStats(
            fps=lat.output_fps if math.isfinite(lat.output_fps) else 0.0,
            latency_ms=lat.latency_p50_ms if math.isfinite(lat.latency_p50_ms) else None,
            provider=self.provider,
            realtime=realtime,
            audio_level=self._tap.level if stats.audio is not None else None,
        )

    def start_recording(self, path: Path) -> None:
        self._tap.begin(path)

    def stop_recording(self) -> Path | None:
        result: Path | None = self._tap.end()
        return result

    def stop(self) -> None:
        try:
            self._tap.end()
        finally:
            if not self._engine.stop():
                logger.warning("a live-engine thread did not end in time")


def _engine_live_avatar(models: Any, image: RGB, name: str) -> LiveAvatar:
    return encode_avatar(models["avatar_encoder"], image, name=name)


class RuntimeEngine:
    """Starts live sessions over the runtime engine; probes the virtual camera."""

    def __init__(
        self,
        *,
        models: Models,
        devices: RuntimeDevices,
        vcam_backend: str | None = None,
        on_hop: Callable[[Any], None] | None = None,
    ) -> None:
        self.models = models
        self.devices = devices
        self.vcam_backend = vcam_backend
        self.on_hop = on_hop  # diagnostics and tests: every hop the engine makes
        self._model_set: Any = None
        self._model_dir: Path | None = None

    def virtual_camera_status(self) -> VirtualCameraInfo:
        """Open the virtual camera for a moment: the only reliable way to know it works."""
        config = VirtualCameraConfig(width=640, height=360, backend=self.vcam_backend)
        sink = VirtualCameraSink(config)
        try:
            sink.open(fps=25)
        except SinkUnavailable as exc:
            return VirtualCameraInfo(False, None, None, str(exc))
        device, backend = sink.device, sink.backend
        sink.close()
        return VirtualCameraInfo(True, backend, device, None)

    def _open_models(self) -> Any:
        state = self.models.model_state()
        if not state.ready or state.graphs_dir is None:
            raise UserError("the model is not set up yet (Help > Model set-up)")
        if self._model_set is None or self._model_dir != state.graphs_dir:
            sessions = _sessions_api()
            self._model_set = sessions.open_model_set(
                state.graphs_dir, options=sessions.SessionOptions()
            )
            self._model_dir = state.graphs_dir
        return self._model_set

    def _source(self, config: LiveConfig) -> Any:
        api = _engine_api()
        if config.source == "webcam":
            index = webcam_index(config.webcam)
            return api.WebcamInput(cv2=self.devices.cv2, config=WebcamConfig(index=index))
        return api.MicrophoneInput(sd=self.devices.sd, device=config.microphone)

    def start(self, config: LiveConfig, callbacks: LiveCallbacks) -> LiveSession:
        api = _engine_api()
        models = self._open_models()
        avatar = _engine_live_avatar(models, config.avatar, config.avatar_id)
        look = _Look(config.output, config.avatar)
        camera = _CameraOut(look, self.vcam_backend)
        tap = RecorderTap()

        def on_event(event: Any) -> None:
            if event.kind == "error":
                callbacks.on_error(f"The live engine stopped: {event.message}")

        engine = api.LiveEngine(
            models=models,
            source=self._source(config),
            sinks=[_PreviewOut(look, callbacks.on_frame), camera, tap],
            listener=api.EngineListener(on_event=on_event, on_hop=self.on_hop),
        )
        engine.start(avatar, controls_for(config.pose, config.quality))
        session = RuntimeSession(
            engine=engine,
            models=models,
            look=look,
            camera=camera,
            tap=tap,
            pose=config.pose,
            quality=config.quality,
        )
        return session
