"""What the GUI needs from the runtime, as plain types and protocols (no Qt, no runtime imports).

Widgets are written against these; `desktop_app.runtime_services.models` is the one module that
implements them with `runtime/`. Callbacks given to a backend may be called on any thread:
the GUI side only ever turns them into Qt signals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from desktop_app.gallery import CropSquare
from desktop_app.images import RGB
from desktop_app.settings import CallAudio, Compute, Output, Pose, Quality, SourceKind


class UserError(Exception):
    """A failure whose message is written for the user (shown as is, no traceback)."""


class Cancelled(UserError):
    """The user cancelled a long operation."""


class Offline(UserError):
    """The network (or the model hub) cannot be reached."""


class SourceUnavailable(UserError):
    """The chosen source (microphone or webcam) cannot be opened: Go Live refuses."""

    def __init__(self, message: str, *, kind: SourceKind) -> None:
        super().__init__(message)
        self.kind: SourceKind = kind


class ModelLoadFailed(UserError):
    """The converted model is there but cannot be loaded (damaged files, out of memory...)."""


# ---- avatars


class AvatarTools(Protocol):
    def load_photo(self, path: Path) -> RGB:
        """The photo as upright RGB; raises UserError saying why it cannot be used."""
        ...

    def detect_face(self, photo: RGB) -> CropSquare | None:
        """The suggested crop square around the largest face, or None when none is found."""
        ...

    def crop(self, photo: RGB, square: CropSquare, size: int | None = None) -> RGB:
        """The model-ready square avatar (padded where the square leaves the photo), `size`
        pixels a side (the installed model's source size; None: the current version's)."""
        ...


# ---- devices


class Closable(Protocol):
    def close(self) -> None: ...


@dataclass(frozen=True)
class DeviceChoice:
    """One device as the user sees it, and the stable id the settings remember."""

    id: str  # survives re-plugging and reboots (not an index)
    label: str  # the system's description, e.g. "Blue Yeti Stereo Microphone"


@dataclass(frozen=True)
class AudioLevel:
    """A meter reading: the RMS and peak of the audio since the previous reading, in dBFS."""

    rms_db: float
    peak_db: float


class Devices(Protocol):
    def microphones(self) -> list[DeviceChoice]:
        """Each microphone once, by its description; the system default is not listed."""
        ...

    def default_microphone(self) -> str | None:
        """The description of the system default microphone, when it is known."""
        ...

    def rescan(self) -> None:
        """Ask the system for its devices again, so one plugged in since start is listed
        (Refresh; only while no device of this object is open)."""
        ...

    def webcams(self) -> list[str]: ...

    def monitor_microphone(
        self, device: str | None, on_level: Callable[[AudioLevel], None]
    ) -> Closable:
        """Open the microphone (by id; None: the system default) and report its level 30 times
        a second until closed."""
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
    model_version: str | None = None  # "v1", "v2": what the installed files are, when known
    source_size: int | None = None  # avatar side the ready model takes (256 v1, 512 v2)
    default_cfg: float | None = None  # the ready model's own expressiveness (v2 2.0, v1 3.0)


@dataclass(frozen=True)
class Progress:
    """One progress update of a download, import or conversion."""

    phase: Literal["download", "copy", "verify", "convert", "measure"]
    label: str  # what is being worked on
    fraction: float | None  # 0..1, None when unknown
    speed: float | None = None  # bytes per second
    eta: float | None = None  # seconds


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class Timing:
    """What timing the converted model on this computer found."""

    verdict: str  # "Real time at hop 5 with lookahead 2: no, 57.6x slower than real time ..."
    not_real_time: str | None = None
    """When it is not: what going live gives and what to do instead ("Not real time on this
    CPU: about 1 new picture every 3 s. For smooth video use a GPU, ..."); None when it is."""


class Models(Protocol):
    def model_state(self) -> ModelState: ...

    def download(self, *, progress: ProgressFn, cancel: threading.Event) -> None: ...

    def import_files(
        self, paths: Sequence[Path], *, progress: ProgressFn, cancel: threading.Event
    ) -> tuple[str, ...]:
        """Import; returns the files still missing afterwards."""
        ...

    def convert(self, *, progress: ProgressFn, cancel: threading.Event) -> Path: ...

    def measure(self, *, progress: ProgressFn, cancel: threading.Event) -> Timing:
        """Time the converted model on this computer once (`imtalker-cam bench`, kept in the
        cache folder): the verdict, and what going live gives when it is not real time."""
        ...

    def offline_help(self) -> str:
        """What to do without a network connection: where to get the files, how to import."""
        ...


# ---- the CUDA runtime


@dataclass(frozen=True)
class CudaOffer:
    """Why fetching the CUDA runtime would help here, and what it takes."""

    reason: str  # the runtime's sentence: "RTX 4090 can run the model with CUDA, but ..."
    total_bytes: int  # what the download weighs
    files: int  # how many packages that is


class CudaRuntime(Protocol):
    """NVIDIA's CUDA and cuDNN libraries, fetched once into this user's folder where an NVIDIA
    driver answers and no CUDA runtime is installed (the bundle carries none)."""

    def offer(self) -> CudaOffer | None:
        """Worker thread (asks the driver, then the package index): the offer, or None when
        fetching would not help (no NVIDIA driver, a CPU build, a driver too old, CUDA there
        already). Raises UserError when the index cannot say what to fetch."""
        ...

    def fetch(self, *, progress: ProgressFn, cancel: threading.Event) -> None:
        """Worker thread: download the offer's packages (progress with speed and time left),
        check them, keep their libraries and load them; the next Go Live opens the model on
        CUDA. Raises Cancelled (nothing left behind) or UserError (one sentence)."""
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
    call_audio: CallAudio = field(default_factory=CallAudio)
    compute: Compute = field(default_factory=Compute)
    """This computer, or a render server (then no model is needed here)."""
    audio_file: Path | None = None
    """The recording played in real time as the voice when `source` is "file"."""


SourceState = Literal["starting", "running", "retrying", "stopped"]


@dataclass(frozen=True)
class SourceHealth:
    """How the live source is doing, for the window to say (not only the log)."""

    kind: SourceKind
    state: SourceState
    detail: str | None = None  # what went wrong, in the runtime's words
    retries: int = 0  # attempts to reopen it so far

    def describe(self) -> str:
        name = {"microphone": "microphone", "webcam": "webcam", "file": "audio file"}[self.kind]
        if self.kind == "file" and self.state == "stopped" and not self.detail:
            return "The audio file played to its end. Stop and Go Live to play it again."
        if self.state == "retrying":
            why = f" ({self.detail})" if self.detail else ""
            tries = f", attempt {self.retries}" if self.retries else ""
            return f"The {name} was lost{why}. Retrying{tries}…"
        if self.state == "stopped":
            return f"The {name} stopped" + (f": {self.detail}" if self.detail else ".")
        if self.state == "starting":
            return f"Opening the {name}…"
        return f"The {name} is working."


@dataclass(frozen=True)
class VirtualMicInfo:
    """The virtual microphone of a live session."""

    open: bool
    device: str | None  # what to pick as the microphone in the call app
    delay_ms: float | None  # the delay in use (the measured latency plus the offset)
    reason: str | None  # why there is none, with what to install
    out_of_sync: str | None = None
    """While the delay sync needs is over the cap: "lips not in sync: video 4.8 s behind"."""


@dataclass(frozen=True)
class LiveStats:
    fps: float
    latency_ms: float | None
    provider: str  # short name of the provider doing the work: "CUDA", "CPU", ...
    realtime: bool
    audio_level: float | None  # 0..1 microphone level, when the source is a microphone
    source: SourceHealth | None = None
    virtual_mic: VirtualMicInfo | None = None  # None when it was not asked for
    unique_fps: float | None = None  # new pictures per second (fps counts repeats too)
    expectation: str | None = None  # when not real time: what the user gets, in words
    steps: tuple[int, int] | None = None
    """(in use, chosen) Euler steps while Auto uses fewer than chosen (the user allowed it);
    None otherwise."""
    remote: str | None = None
    """With a render server: "connecting", "connected", "reconnecting" or "failed"."""
    remote_problem: str | None = None
    """With a render server that cannot be reached: why, with the attempt count and the next
    retry ("cannot reach the render server at ...: connection refused (attempt 3, retrying in
    0.5 s)"); None while it is reached (or nothing has failed yet)."""
    network_ms: float | None = None  # round trip to the render server
    server_ms: float | None = None  # the server's compute per step
    frame_format: str | None = None  # how frames come down: "jpeg", "h264" or "raw"
    link_mbps: float | None = None  # frames received from the render server, Mbit/s


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class LiveCallbacks:
    """Called from engine threads: implementations only emit Qt signals."""

    on_frame: Callable[[RGB], None]  # the newest output frame, for the preview
    on_error: Callable[[str], None]  # the engine stopped on an error (message for the user)
    on_source: Callable[[], None] = _nothing  # the source's health changed: ask stats() now


class LiveSession(Protocol):
    virtual_camera: VirtualCameraInfo

    def set_avatar(self, avatar: RGB, avatar_id: str) -> None:
        """Switch avatars while running (slow: encodes the avatar; call off the GUI thread)."""
        ...

    def set_pose(self, pose: Pose) -> None: ...  # cheap and thread-safe

    def set_quality(self, quality: Quality) -> None: ...  # cheap and thread-safe

    def set_output(self, output: Output) -> None: ...  # cheap and thread-safe

    def set_call_audio(self, call_audio: CallAudio) -> None:
        """Gate threshold, push-to-talk mode and the virtual microphone's offset (cheap,
        thread-safe; switching the virtual microphone itself on or off takes a restart)."""
        ...

    def set_muted(self, muted: bool) -> None: ...  # cheap and thread-safe

    def set_talking(self, held: bool) -> None:
        """The push-to-talk key went down or up (cheap and thread-safe)."""
        ...

    def stats(self) -> LiveStats: ...

    def audio_level(self) -> AudioLevel | None:
        """The microphone's level since the last call, read from the capture side (cheap,
        any thread); None when the source is not a microphone."""
        ...

    def start_recording(self, path: Path) -> None: ...

    def stop_recording(self) -> Path | None: ...

    def stop(self) -> None:
        """Stop every thread and release every device (blocks until done)."""
        ...


class LiveEngine(Protocol):
    def virtual_camera_status(self) -> VirtualCameraInfo: ...

    def expectation(self, quality: Quality) -> str | None:
        """Before Go Live: what this machine was measured to give with these settings when it
        is not real time ("about 1 new picture every 3 s..."), by the last session or the
        set-up's timing run; None when it keeps up or nothing is known."""
        ...

    def backend_unavailable(self, backend: str) -> str | None:
        """Why the compute backend `backend` ("openvino", ...) cannot run here, in plain words
        for a tooltip; None when it can."""
        ...

    def check_source(self, config: LiveConfig) -> None:
        """Raise SourceUnavailable when the chosen source cannot be opened right now (the
        bridge's worker: opening a webcam takes a moment)."""
        ...

    def recover_recordings(self) -> list[str]:
        """Save what recordings a crash interrupted left (at start-up); one sentence each,
        saying where it went."""
        ...

    def start(self, config: LiveConfig, callbacks: LiveCallbacks) -> LiveSession:
        """Open the model, the source and the sinks and start producing frames (slow).

        Raises SourceUnavailable when the chosen source cannot be opened and ModelLoadFailed
        when the model cannot be loaded, before anything starts."""
        ...


@dataclass(frozen=True)
class Backend:
    avatars: AvatarTools
    devices: Devices
    models: Models
    engine: LiveEngine
    cuda: CudaRuntime | None = None
    """None where the CUDA runtime is never offered (test backends, a render-server client)."""
