"""Where a live session's pictures go, built from one typed configuration for every front end
(the CLI and the app alike): the preview, the virtual camera, the on-demand recording of the
composed picture and the whole session's recording of the raw frames.

`Outputs` is built on the front end's thread (by `runtime.engine.live.session.start_session`);
its sinks then run on the pacer thread (frames) and the inference worker (audio), and its live
changes (`set_look`, `set_avatar`, `begin_recording`, `end_recording`) come from the front
end's thread (the app's session worker, the CLI's main thread).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from runtime.sinks import Sink
from runtime.sinks.composed import CameraInfo, CameraOut, Look, PreviewOut, RecordingTap
from runtime.sinks.recorder import RecorderConfig, RecorderSink
from runtime.sinks.virtual_camera import VirtualCameraConfig

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]

NO_CAMERA = "no virtual camera"


@dataclass(frozen=True, kw_only=True)
class OutputsConfig:
    """What a session sends its pictures to. The default sends them nowhere: a front end names
    each output it wants."""

    look: VirtualCameraConfig = field(default_factory=VirtualCameraConfig)
    """The composed picture (size, mirror, background colour or the avatar blurred) that the
    preview, the virtual camera and the on-demand recording share; the camera's backend and
    device."""
    virtual_camera: bool = False
    preview: Callable[[Image], None] | None = None
    """Receives each new composed picture (pacer thread: it must only hand it over)."""
    record: Path | None = None
    """Record the whole session, the raw frames as the engine makes them (`live --record`)."""
    recording_tap: bool = False
    """Recordings of the composed picture begun and ended on demand (the app's Record)."""


class Outputs:
    """The sinks built from an `OutputsConfig` and the avatar's picture, and their live
    changes. `sinks` go to the engine, which opens, feeds and closes them."""

    def __init__(self, config: OutputsConfig, *, avatar: Image) -> None:
        """`avatar`: its picture (the blurred backdrop is made from it)."""
        self.config = config
        self._look = Look(config.look, avatar)
        self._camera = CameraOut(self._look) if config.virtual_camera else None
        self._tap = RecordingTap(self._look) if config.recording_tap else None
        self._recorder = (
            RecorderSink(RecorderConfig(path=config.record)) if config.record is not None else None
        )
        sinks: list[Sink] = []
        if config.preview is not None:
            sinks.append(PreviewOut(self._look, config.preview))
        for sink in (self._camera, self._tap, self._recorder):
            if sink is not None:
                sinks.append(sink)
        self.sinks: tuple[Sink, ...] = tuple(sinks)

    def claim(self) -> None:
        """Hold the whole-session recording's file before the session starts
        (`SinkUnavailable` when another session records to it)."""
        if self._recorder is not None:
            self._recorder.claim()

    def release(self) -> None:
        """A session that did not start leaves no recording claimed (nor its empty file)."""
        if self._recorder is not None:
            self._recorder.close()

    def set_look(self, look: VirtualCameraConfig) -> None:
        """A new look from the next frame on: mirror and background in place, another size
        (backend, device) by reopening the camera."""
        self._look.update(config=look)

    def set_avatar(self, avatar: Image) -> None:
        """The avatar's new picture (for the blurred backdrop)."""
        self._look.update(avatar=avatar)

    def begin_recording(self, path: Path) -> None:
        """Record the composed picture to `path` from now on; `RecordingFailed` says why not."""
        if self._tap is None:
            raise ValueError("these outputs have no on-demand recording (recording_tap=False)")
        self._tap.begin(path)

    def end_recording(self) -> Path | None:
        """End the on-demand recording: its file, or None when none was under way;
        `RecordingFailed` when the file could not be written."""
        return None if self._tap is None else self._tap.end()

    @property
    def audio_level(self) -> float | None:
        """The loudness of the audio last seen, 0..1 (None without an on-demand recording)."""
        return None if self._tap is None else self._tap.level

    def camera(self) -> CameraInfo:
        """The virtual camera: open on which backend and device, or why not."""
        if self._camera is None:
            return CameraInfo(open=False, reason=NO_CAMERA)
        return self._camera.info()

    def wait_recorded(self, timeout: float) -> bool:
        """After the engine stopped: wait for the whole session's recording to be written;
        True when it is (or there is none)."""
        return self._recorder is None or self._recorder.wait_finished(timeout)
