"""What the GUI needs from the runtime, as plain types and protocols (no Qt, no runtime imports).

Widgets are written against these; `desktop_app.runtime_services.models` is the one module that
implements them with `runtime/`. Callbacks given to a backend may be called on any thread:
the GUI side only ever turns them into Qt signals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from desktop_app.gallery import CropSquare
from desktop_app.images import RGB
from desktop_app.settings import Output, Pose, Quality, SourceKind


class UserError(Exception):
    """A failure whose message is written for the user (shown as is, no traceback)."""


class Cancelled(UserError):
    """The user cancelled a long operation."""


class Offline(UserError):
    """The network (or the model hub) cannot be reached."""


# ---- avatars


class AvatarTools(Protocol):
    def load_photo(self, path: Path) -> RGB:
        """The photo as upright RGB; raises UserError saying why it cannot be used."""
        ...

    def detect_face(self, photo: RGB) -> CropSquare | None:
        """The suggested crop square around the largest face, or None when none is found."""
        ...

    def crop(self, photo: RGB, square: CropSquare) -> RGB:
        """The model-ready square avatar (padded where the square leaves the photo)."""
        ...


# ---- devices


class Closable(Protocol):
    def close(self) -> None: ...


class Devices(Protocol):
    def microphones(self) -> list[str]: ...

    def default_microphone(self) -> str | None: ...

    def webcams(self) -> list[str]: ...

    def monitor_microphone(self, device: str | None, on_level: Callable[[float], None]) -> Closable:
        """Open the microphone and report its level (0..1, ~20 times a second) until closed."""
        ...

    def preview_webcam(self, device: str, on_frame: Callable[[RGB], None]) -> Closable:
        """Open the webcam and report the tracked face crop of each frame until closed."""
        ...


@dataclass(frozen=True)
class VirtualCameraInfo:
    available: bool
    backend: str | None  # e.g. "v4l2loopback", "obs"
    device: str | None  # what other programs list, e.g. "/dev/video10"
    reason: str | None  # why not available, in pyvirtualcam's words


# ---- models


@dataclass(frozen=True)
class ModelState:
    ready: bool  # converted graphs exist and can be opened
    graphs_dir: Path | None
    weights_missing: tuple[str, ...]  # files of the model still to download or import
    detail: str  # one sentence for the user


@dataclass(frozen=True)
class Progress:
    """One progress update of a download, import or conversion."""

    phase: Literal["download", "copy", "verify", "convert"]
    label: str  # what is being worked on
    fraction: float | None  # 0..1, None when unknown
    speed: float | None = None  # bytes per second
    eta: float | None = None  # seconds


ProgressFn = Callable[[Progress], None]


class Models(Protocol):
    def model_state(self) -> ModelState: ...

    def download(self, *, progress: ProgressFn, cancel: threading.Event) -> None: ...

    def import_files(
        self, paths: Sequence[Path], *, progress: ProgressFn, cancel: threading.Event
    ) -> tuple[str, ...]:
        """Import; returns the files still missing afterwards."""
        ...

    def convert(self, *, progress: ProgressFn, cancel: threading.Event) -> Path: ...

    def offline_help(self) -> str:
        """What to do without a network connection: where to get the files, how to import."""
        ...


# ---- live engine


@dataclass(frozen=True)
class LiveConfig:
    avatar: RGB  # the model-ready square crop
    avatar_id: str  # the gallery's id (names the avatar in the engine's reports)
    source: SourceKind
    microphone: str | None
    webcam: str | None
    pose: Pose
    quality: Quality
    output: Output
    virtual_camera: bool  # send to the virtual camera (when one is available)


@dataclass(frozen=True)
class LiveStats:
    fps: float
    latency_ms: float | None
    provider: str  # short name of the provider doing the work: "CUDA", "CPU", ...
    realtime: bool
    audio_level: float | None  # 0..1 microphone level, when the source is a microphone


@dataclass(frozen=True)
class LiveCallbacks:
    """Called from engine threads: implementations only emit Qt signals."""

    on_frame: Callable[[RGB], None]  # the newest output frame, for the preview
    on_error: Callable[[str], None]  # the engine stopped on an error (message for the user)


class LiveSession(Protocol):
    virtual_camera: VirtualCameraInfo

    def set_avatar(self, avatar: RGB, avatar_id: str) -> None:
        """Switch avatars while running (slow: encodes the avatar; call off the GUI thread)."""
        ...

    def set_pose(self, pose: Pose) -> None: ...  # cheap and thread-safe

    def set_quality(self, quality: Quality) -> None: ...  # cheap and thread-safe

    def set_output(self, output: Output) -> None: ...  # cheap and thread-safe

    def stats(self) -> LiveStats: ...

    def start_recording(self, path: Path) -> None: ...

    def stop_recording(self) -> Path | None: ...

    def stop(self) -> None:
        """Stop every thread and release every device (blocks until done)."""
        ...


class LiveEngine(Protocol):
    def virtual_camera_status(self) -> VirtualCameraInfo: ...

    def start(self, config: LiveConfig, callbacks: LiveCallbacks) -> LiveSession:
        """Open the model, the source and the sinks and start producing frames (slow)."""
        ...


@dataclass(frozen=True)
class Backend:
    avatars: AvatarTools
    devices: Devices
    models: Models
    engine: LiveEngine
