"""The composed picture (the face on the output's size, background and mirror) and the sinks
that share it: the preview, the virtual camera that follows a new look live, and the recording
of the composed picture begun and ended on demand.

Threads: the sinks' `send` runs on the pacer thread and `RecordingTap.add_audio` on the
inference worker; `Look.update`, `RecordingTap.begin` and `RecordingTap.end` come from the front
end's thread (the app's session worker). The look is swapped whole under a lock, so a frame is
composed with one look, never half of two.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from runtime.media.level_meter import level_of
from runtime.sinks import SinkUnavailable
from runtime.sinks.frame import LiveFrame
from runtime.sinks.recorder import RecorderConfig, RecorderSink
from runtime.sinks.virtual_camera import (
    FrameComposer,
    VirtualCameraConfig,
    VirtualCameraSink,
    composer_for,
)

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]

RECORDING_CLOSE_S = 10.0  # an on-demand recording's writer: time to finish its file


class RecordingFailed(Exception):
    """An on-demand recording could not begin, or its file could not be written; the message
    says why."""


def _camera(config: VirtualCameraConfig) -> tuple[int, int, str | None, str | None]:
    """What a camera is opened with: another of these needs another camera."""
    return config.width, config.height, config.backend, config.device


class Look:
    """The picture's look (`VirtualCameraConfig`) and its composer, for the avatar's picture
    (the blurred backdrop is made from it); replaced whole under a lock (any thread)."""

    def __init__(self, config: VirtualCameraConfig, avatar: Image) -> None:
        self._lock = threading.Lock()
        self._config = config
        self._avatar = avatar
        self._composer = composer_for(config, avatar)
        self._version = 0

    def get(self) -> tuple[VirtualCameraConfig, FrameComposer, int]:
        """The look, its composer and a number that changes with every update."""
        with self._lock:
            return self._config, self._composer, self._version

    def update(
        self, *, config: VirtualCameraConfig | None = None, avatar: Image | None = None
    ) -> None:
        with self._lock:
            self._config = self._config if config is None else config
            self._avatar = self._avatar if avatar is None else avatar
            self._composer = composer_for(self._config, self._avatar)
            self._version += 1


class PreviewOut:
    """Hands each new composed picture to `on_picture` (pacer thread; it must only hand it
    over: the array is the composer's canvas, overwritten by the next frame)."""

    def __init__(self, look: Look, on_picture: Callable[[Image], None]) -> None:
        self._look = look
        self._on_picture = on_picture

    @property
    def name(self) -> str:
        return "preview"

    def open(self, *, fps: float) -> None:
        pass

    def send(self, frame: LiveFrame, repeat: bool) -> None:
        if repeat:
            return
        _, composer, _ = self._look.get()
        self._on_picture(composer.compose(frame.image))

    def close(self, timeout: float = 1.0) -> None:
        pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class CameraInfo:
    """The virtual camera as the user sees it: open (on which backend and device) or not, and
    why not in the backend's words."""

    open: bool
    backend: str | None = None  # e.g. "v4l2loopback", "obs"
    device: str | None = None  # what other programs list, e.g. "/dev/video10"
    reason: str | None = None


class CameraOut:
    """The virtual camera, following the look live (pacer thread).

    Mirror and background change in place; another size (or backend, or device) reopens the
    camera (pyvirtualcam cannot resize one), which the next frame does.
    """

    def __init__(self, look: Look) -> None:
        self._look = look
        self._fps = 25.0
        self._sink: VirtualCameraSink | None = None
        self._opened_as: tuple[int, int, str | None, str | None] | None = None
        self._version = -1
        self._info = CameraInfo(open=False, reason="not open yet")

    @property
    def name(self) -> str:
        return "virtual camera"

    def info(self) -> CameraInfo:
        return self._info

    def open(self, *, fps: float) -> None:
        self._fps = fps
        config, composer, version = self._look.get()
        self._open(config)
        self._use(composer, version)

    def _open(self, config: VirtualCameraConfig) -> None:
        sink = VirtualCameraSink(config)
        try:
            sink.open(fps=self._fps)  # raises SinkUnavailable with the backend's reason
        except SinkUnavailable as exc:
            self._info = CameraInfo(open=False, reason=str(exc))
            raise
        except Exception as exc:  # as `SinkSet` reports it
            self._info = CameraInfo(open=False, reason=f"{type(exc).__name__}: {exc}")
            raise
        self._sink, self._opened_as = sink, _camera(config)
        self._info = CameraInfo(open=True, backend=sink.backend, device=sink.device)

    def _use(self, composer: FrameComposer, version: int) -> None:
        assert self._sink is not None
        self._sink.set_composer(composer)  # mirror and background change without reopening
        self._version = version

    def send(self, frame: LiveFrame, repeat: bool) -> None:
        config, composer, version = self._look.get()
        if version != self._version:
            if _camera(config) != self._opened_as:
                self.close()
                self._open(config)
            self._use(composer, version)
        if self._sink is None:
            raise RuntimeError("virtual camera is not open")
        self._sink.send(frame, repeat)

    def close(self, timeout: float = 1.0) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close(timeout)
            self._info = CameraInfo(open=False, reason="closed")


class RecordingTap:
    """Recordings of the composed picture, begun and ended on demand; it also meters the audio
    it sees (`level`, 0..1).

    The engine gives it the audio like any `AudioSink`; it passes frames and audio on only
    between `begin` and `end`. It records what the virtual camera sends (size, background,
    mirror) at the size the recording began with: mirror and background follow the look while
    the size stays.
    """

    def __init__(self, look: Look) -> None:
        self._look = look
        self._lock = threading.Lock()
        self._inner: RecorderSink | None = None
        self._size: tuple[int, int] | None = None  # the recording's picture size
        self._composer: FrameComposer | None = None
        self._fps = 25.0
        self._idle_src: Image | None = None  # the idle picture last passed on
        self.level = 0.0

    @property
    def name(self) -> str:
        return "recording"

    def open(self, *, fps: float) -> None:
        self._fps = fps

    def send(self, frame: LiveFrame, repeat: bool) -> None:
        with self._lock:
            inner = self._inner
        if inner is None or (repeat and frame.index >= 0):
            return
        if frame.index < 0:  # the idle picture (the file starts on it): composed once
            if frame.image is self._idle_src:
                return
            self._idle_src = frame.image
        config, composer, _ = self._look.get()
        if (config.width, config.height) == self._size:
            self._composer = composer
        if self._composer is not None:
            frame = dataclasses.replace(frame, image=self._composer.compose(frame.image))
        inner.send(frame, repeat)

    def add_audio(self, first_sample: int, samples: npt.NDArray[np.float32]) -> None:
        self.level = level_of(samples)
        with self._lock:
            inner = self._inner
        if inner is not None:
            inner.add_audio(first_sample, samples)

    def begin(self, path: Path) -> None:
        """Record to `path` from the next frame on (a recording under way ends)."""
        recorder = RecorderSink(RecorderConfig(path=path))
        try:
            recorder.open(fps=self._fps)
        except SinkUnavailable as exc:
            raise RecordingFailed(str(exc)) from exc
        config, composer, _ = self._look.get()
        with self._lock:
            self._size, self._composer = (config.width, config.height), composer
            previous, self._inner = self._inner, recorder
            self._idle_src = None
        if previous is not None:
            previous.close(timeout=RECORDING_CLOSE_S)

    def end(self) -> Path | None:
        """End the recording under way: the file written, or None when none was under way."""
        with self._lock:
            inner, self._inner = self._inner, None
        if inner is None:
            return None
        inner.close(timeout=RECORDING_CLOSE_S)
        if inner.error:
            raise RecordingFailed(f"the recording failed: {inner.error}")
        return inner.finished_path or inner.config.path

    def close(self, timeout: float = 1.0) -> None:
        self.end()
