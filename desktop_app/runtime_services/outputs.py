"""Where a GUI live session's frames go, built on `runtime/sinks`: the composed picture
(size, background, mirror) shared by the preview, the virtual camera and the recording tap.
Sinks run on the pacer thread; `update` is called from the GUI's worker. Nothing here touches Qt.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from desktop_app.images import RGB
from desktop_app.runtime_services.devices import level_of
from desktop_app.services import UserError
from desktop_app.settings import Output
from runtime.sinks.recorder import RecorderConfig, RecorderSink
from runtime.sinks.virtual_camera import FrameComposer, VirtualCameraConfig, VirtualCameraSink
from runtime.sinks.virtual_camera import composer_for as runtime_composer_for

logger = logging.getLogger(__name__)


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))


def camera_config(output: Output, backend: str | None = None) -> VirtualCameraConfig:
    """The app's output settings as the runtime's camera configuration."""
    return VirtualCameraConfig(
        width=output.width,
        height=output.height,
        mirror=output.mirror,
        background=hex_rgb(output.background_colour)
        if output.background == "colour"
        else (0, 0, 0),
        blur=output.background == "blur",
        backend=backend,
    )


def composer_for(output: Output, avatar: RGB) -> FrameComposer:
    """How the face is placed on the output picture (shared by the camera and the preview)."""
    return runtime_composer_for(camera_config(output), avatar)


class OutputLook:
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


class PreviewOut:
    """The preview sink: composes the output picture and hands it to the GUI (pacer thread)."""

    name = "preview"

    def __init__(self, look: OutputLook, on_frame: Callable[[RGB], None]) -> None:
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


class CameraOut:
    """The virtual camera with live output changes (pacer thread).

    Mirror and background change in place; a new resolution reopens the camera (pyvirtualcam
    cannot resize one), which the next frame does.
    """

    name = "virtual camera"

    def __init__(self, look: OutputLook, backend: str | None) -> None:
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
        sink = VirtualCameraSink(camera_config(output, self._backend))
        sink.open(fps=self._fps)  # raises SinkUnavailable with the backend's reason
        self._sink, self._size = sink, (output.width, output.height)
        self.device, self.backend_name = sink.device, sink.backend

    def _use(self, composer: FrameComposer, version: int) -> None:
        assert self._sink is not None
        self._sink.set_composer(composer)  # mirror and background change without reopening
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
    worker. It records what the virtual camera sends: the composed picture (size, background,
    mirror), at the size the recording began with."""

    def __init__(self, look: OutputLook | None = None) -> None:
        super().__init__(RecorderConfig(path=Path("unused.mp4")))
        self._tap_lock = threading.Lock()
        self._inner: RecorderSink | None = None
        self._look = look
        self._size: tuple[int, int] | None = None  # the recording's picture size
        self._composer: FrameComposer | None = None
        self._tap_fps = 25.0
        self._idle_src: Any = None  # the idle picture last passed on
        self.level = 0.0

    @property
    def name(self) -> str:
        return "recording"

    def open(self, *, fps: float) -> None:
        self._tap_fps = fps

    def send(self, frame: Any, repeat: bool) -> None:
        with self._tap_lock:
            inner = self._inner
        if inner is None or (repeat and frame.index >= 0):
            return
        if frame.index < 0:  # the idle picture (the file starts on it): composed once
            if frame.image is self._idle_src:
                return
            self._idle_src = frame.image
        if self._look is not None:
            output, composer, _ = self._look.get()
            if (output.width, output.height) == self._size:
                self._composer = composer  # mirror and background follow the camera
            if self._composer is not None:
                frame = dataclasses.replace(frame, image=self._composer.compose(frame.image))
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
        if self._look is not None:
            output, composer, _ = self._look.get()
            self._size, self._composer = (output.width, output.height), composer
        with self._tap_lock:
            previous, self._inner = self._inner, recorder
            self._idle_src = None
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
