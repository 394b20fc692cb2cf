"""What the live engine is told and what it tells: controls, inputs, configuration, events,
per-hop records and stats (plain immutable values; built on any thread, read on any thread).

`runtime.engine.live.engine` re-exports every name here, so callers import them from there.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from runtime.engine.live.hop_choice import HopCompute, HopPlan
from runtime.engine.live.latency import LatencyStats
from runtime.engine.motion_sampler import RawConditions
from runtime.media.audio_capture import CaptureConfig, CaptureStatus, SoundDeviceLike
from runtime.media.audio_gate import GateConfig
from runtime.media.virtual_mic import VirtualMicStatus
from runtime.media.webcam import WebcamConfig
from runtime.model.contract import CLIP_FRAMES, SAMPLE_RATE
from runtime.model.versions import ModelVersion
from runtime.remote.link_status import LinkStatus
from runtime.sinks import SinkStatus

Array = npt.NDArray[np.float32]


# -- controls --------------------------------------------------------------------------------

DEFAULT_MIN_NFE = 5
"""The fewest time-grid points (4 Euler steps) when the user allows fewer without naming a
number (the app's checkbox, `live --allow-fewer-steps`): about half the reference's sampler
work, where the motion still follows the voice closely."""


@dataclass(frozen=True)
class HeadPose:
    """Head rotation in degrees (the model's pose condition is axis-angle in radians:
    x = pitch, y = yaw, z = roll)."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def as_condition(self) -> tuple[float, float, float]:
        return (math.radians(self.pitch), math.radians(self.yaw), math.radians(self.roll))


@dataclass(frozen=True)
class Gaze:
    """Gaze direction in the model's units (about -0.7 .. 0.7)."""

    x: float = 0.0
    y: float = 0.0


@dataclass(frozen=True)
class LiveControls:
    """Everything the user can change while live; applies from the next hop.

    None for pose/gaze/cam is "natural": no condition, the model's own motion.
    """

    pose: HeadPose | None = None
    gaze: Gaze | None = None
    cam: tuple[float, float, float] | None = None
    cfg_scale: float | None = None
    """Expressiveness (audio classifier-free guidance); None = the model version's default
    (`ModelVersion.default_cfg`: 2.0 for v2, 3.0 for v1, as upstream)."""
    nfe: int = 10  # time-grid points of the Euler sampler (nfe - 1 evaluations)
    hop: int | None = None
    """Frames generated per hop (5 = 200 ms); None = Auto: the smallest hop the measured
    compute keeps real time (`runtime.engine.live.hop_choice`). Ignored in quality mode."""
    min_nfe: int | None = None
    """The fewest time-grid points the engine may use when the machine falls behind (fewer
    steps change the motion, so only with the user's permission); None = always `nfe`. One
    above `nfe` allows nothing. Ignored in quality mode."""

    def __post_init__(self) -> None:
        if self.nfe < 2:
            raise ValueError("nfe must be at least 2")
        if self.min_nfe is not None and self.min_nfe < 2:
            raise ValueError("min_nfe must be at least 2 (one velocity evaluation)")
        if self.hop is not None and not 1 <= self.hop <= CLIP_FRAMES:
            raise ValueError(f"hop must be 1..{CLIP_FRAMES}")

    def cfg_for(self, version: ModelVersion) -> float:
        """The guidance scale to use with `version`'s model."""
        return version.default_cfg if self.cfg_scale is None else self.cfg_scale

    def raw_conditions(self, frames: int) -> RawConditions:
        def rows(values: tuple[float, ...] | None) -> Array | None:
            if values is None:
                return None
            return np.tile(np.asarray(values, np.float32), (frames, 1))

        return RawConditions(
            gaze=rows(None if self.gaze is None else (self.gaze.x, self.gaze.y)),
            pose=rows(None if self.pose is None else self.pose.as_condition()),
            cam=rows(self.cam),
        )


# -- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MicrophoneInput:
    sd: SoundDeviceLike  # the `sounddevice` module (or a fake)
    device: int | str | None = None


@dataclass(frozen=True, eq=False)
class FileInput:
    """A recording fed through the microphone path in real time."""

    audio: Array  # mono float32 at `rate`
    rate: int = SAMPLE_RATE
    name: str = "audio file"


@dataclass(frozen=True)
class WebcamInput:
    cv2: Any  # the `cv2` module (or a fake)
    config: WebcamConfig = field(default_factory=WebcamConfig)
    cropper: Callable[[], Any] | None = None
    """Makes the face cropper (`update(rgb) -> (S, S, 3) rgb`, S the model's source size);
    default FaceTracker."""


Source = MicrophoneInput | FileInput | WebcamInput


@dataclass(frozen=True)
class EngineConfig:
    fps: int = 25  # output rate: 25 native, 30 by interpolating motion latents
    lookahead: int = 2  # frames of audio after the hop fed to the encoder (80 ms)
    context_s: float = 2.0  # audio before the hop in each encoder window
    quality: bool = False
    """Hop 50, no lookahead, fixed noise: every hop is one reference chunk. With a file input
    the features are the whole file's (as offline), so the output equals the offline sampler."""
    seed: int | None = 25  # fixed per-chunk noise like the reference; None: fresh noise per hop
    max_backlog_s: float = 1.0
    """Sizes the audio history kept (the worker skips to the newest audio in whole hops as
    soon as it is a hop behind)."""
    playout_delay_s: float | None = None  # None: adaptive
    align_ticks: bool | None = None
    """Move the pacer's ticks onto the frames instead of rounding the delay up to a whole period
    (`PacerConfig.align_ticks`); None: for audio-driven sources, local or remote compute (a
    webcam's frames are on no capture grid)."""
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    """The noise gate in front of the model (off by default; `engine.gate` changes it live)."""
    silence_fill_s: float = 0.04
    """With no input, fill time with silence in steps of this: one frame, so that silence
    arrives as steadily as sound (larger steps made the worker skip ahead at every step)."""
    stats_window_s: float = 10.0
    stop_timeout_s: float = 1.0
    max_queue: int = 120  # frames waiting in the pacer
    expected_hop: HopCompute | None = None
    """A hop's compute measured before the session on these graphs (`imtalker-cam bench`,
    `BenchResult.hop_costs`): Auto plans the first hops with it and the stats say from the
    start what this machine gives (not real time: a slideshow), instead of after a few hops."""
    render_batch: int | None = None
    """Frames per renderer call; None: the whole hop in one batch on a GPU, one at a time on
    the CPU (where batching gains little and the full-size renderer needs about 0.3 GB of
    working memory per frame)."""

    def __post_init__(self) -> None:
        if self.fps not in (25, 30):
            raise ValueError("fps must be 25 or 30")
        if not 0 <= self.lookahead < CLIP_FRAMES:
            raise ValueError("lookahead out of range")


# -- what the engine tells -------------------------------------------------------------------


class EngineState(enum.Enum):
    STOPPED = "stopped"
    RUNNING = "running"
    FAILED = "failed"


class EventKind(enum.StrEnum):
    """What an `EngineEvent` is about."""

    STARTED = "started"
    STOPPED = "stopped"
    AUDIO = "audio"  # the input's state changed (`message`: the state and its error)
    AUDIO_ENDED = "audio_ended"  # a file input was played to its end
    WEBCAM = "webcam"  # the webcam's state changed
    SINK = "sink"  # a sink failed or is unavailable
    AVATAR = "avatar"  # the avatar was switched
    VIRTUAL_MIC = "virtual_mic"  # `detail`: a `MicEvent`
    HOP = "hop"  # the plan changed (hop, steps, real time or not); `detail`: the `HopPlan`
    REMOTE = "remote"  # the render server link's state changed, or an attempt failed;
    # `detail`: the `LinkStatus` (attempt count, next retry, the sentence)
    ERROR = "error"  # the worker failed; the engine stops


class MicEvent(enum.StrEnum):
    """What happened to the virtual microphone (`EventKind.VIRTUAL_MIC`)."""

    OPEN = "open"
    UNAVAILABLE = "unavailable"
    NO_AUDIO = "no_audio"  # the source has no audio (a webcam)
    OUT_OF_SYNC = "out_of_sync"  # the delay sync needs is over the cap
    IN_SYNC = "in_sync"  # back under the cap


EventDetail = HopPlan | MicEvent | LinkStatus | None


class Emit(Protocol):
    """How the engine's parts report an event (the engine stamps and delivers it)."""

    def __call__(self, kind: EventKind, message: str, detail: EventDetail = None) -> None: ...


@dataclass(frozen=True)
class EngineEvent:
    kind: EventKind
    message: str
    """In words, for a log or a status line; decide on `kind` and `detail`, never on this."""
    when: float
    detail: EventDetail = None

    @property
    def plan(self) -> HopPlan | None:
        """`EventKind.HOP`: the plan now in use."""
        return self.detail if isinstance(self.detail, HopPlan) else None

    @property
    def mic(self) -> MicEvent | None:
        """`EventKind.VIRTUAL_MIC`: what happened."""
        return self.detail if isinstance(self.detail, MicEvent) else None

    @property
    def link(self) -> LinkStatus | None:
        """`EventKind.REMOTE`: the render server link's state, attempts and next retry."""
        return self.detail if isinstance(self.detail, LinkStatus) else None


@dataclass(frozen=True, eq=False)
class HopRecord:
    """What one hop did (for tests, diagnostics, and a GUI's meters)."""

    first_frame: int  # 25 fps timeline index of the first emitted frame
    emitted: int
    real_frames: int  # frames with real features (emitted + lookahead available)
    skipped_before: int  # frames skipped to catch up with real time just before this hop
    features: Array  # (real_frames, 768)
    raw: RawConditions  # the raw conditions given to the conditioner
    controls: LiveControls
    avatar: str
    motion: Array  # (emitted, 32)
    capture: npt.NDArray[np.float64]  # (emitted,) capture time of each frame's audio
    started: float
    finished: float
    rendered: int = 0  # frames rendered at the output rate (1 in a slideshow)
    nfe: int = 0  # the sampler's time-grid points this hop used (controls.nfe or fewer)


@dataclass(frozen=True)
class EngineListener:
    on_event: Callable[[EngineEvent], None] | None = None
    on_hop: Callable[[HopRecord], None] | None = None


@dataclass(frozen=True)
class EngineStats:
    state: EngineState
    latency: LatencyStats
    playout_delay_ms: float
    audio: CaptureStatus | None
    webcam: str | None
    sinks: list[SinkStatus]
    hops: int
    skipped_frames: int
    controls: LiveControls
    avatar: str
    virtual_mic: VirtualMicStatus | None = None
    skipped_hops: int = 0
    """Times the worker skipped ahead to the newest audio (in hops of the hop then in use)."""
    hop: int = 0  # the hop in use (Auto's choice), 0 before the first
    auto_hop: bool = False
    real_time: bool = True
    """False: compute cannot keep up; Auto then shows the newest motion only."""
    picture_interval_s: float = math.nan
    """Measured compute per step (seconds between new pictures when not real time)."""
    nfe: int = 0
    """The sampler's time-grid points in use: `controls.nfe`, or fewer when the user allowed
    it (`controls.min_nfe`) and the machine needs it."""
    remote: str | None = None
    """Remote compute: the link's state (connecting, connected, reconnecting, failed)."""
    remote_link: LinkStatus | None = None
    """Remote compute: the link's state with its failed attempts in a row, the next retry and
    the sentence for them ("cannot reach the render server at ...: connection refused (attempt
    3, retrying in 2 s)"); `status` says the same while the server cannot be reached."""
    frame_format: str | None = None
    """Remote compute: how frames come down now (jpeg, h264, raw)."""
    link_mbps: float = math.nan
    """Remote compute: frames received, Mbit/s (the last few seconds)."""
    link_capacity_mbps: float = math.nan
    """Remote compute: what the link delivers back to back, Mbit/s (NaN until measured)."""
    phase: str = "stopped"
    """starting (no picture made yet), live, not_real_time (a slideshow), stopped, failed."""
    status: str = ""
    """The phase in words, for a status line: "starting: making the first picture", "not real
    time on this machine: about 1 new picture every 6.5 s", "live: hop 1 (40 ms) (auto)"."""

    @property
    def unique_fps(self) -> float:
        return self.latency.unique_fps

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "latency": self.latency.as_dict(),
            "playout_delay_ms": self.playout_delay_ms,
            "audio": None
            if self.audio is None
            else {**self.audio.__dict__, "state": self.audio.state.value},
            "webcam": self.webcam,
            "sinks": [s.__dict__ for s in self.sinks],
            "hops": self.hops,
            "skipped_frames": self.skipped_frames,
            "skipped_hops": self.skipped_hops,
            "output_fps": self.latency.output_fps,
            "unique_fps": self.latency.unique_fps,
            "newest_latency_ms": self.latency.newest_latency_ms,
            "real_time_factor": self.latency.real_time_factor,
            "hop": self.hop,
            "auto_hop": self.auto_hop,
            "real_time": self.real_time,
            "picture_interval_s": self.picture_interval_s,
            "nfe": self.nfe,
            "avatar": self.avatar,
            "virtual_mic": None if self.virtual_mic is None else self.virtual_mic.as_dict(),
            "remote": self.remote,
            "remote_attempt": None if self.remote_link is None else self.remote_link.attempt,
            "remote_retry_in_s": None if self.remote_link is None else self.remote_link.retry_in_s,
            "remote_message": None if self.remote_link is None else self.remote_link.message,
            "server_compute_ms": self.latency.compute["server"].mean_ms,
            "network_rtt_ms": self.latency.compute["network"].mean_ms,
            "frame_format": self.frame_format,
            "link_mbps": self.link_mbps,
            "link_capacity_mbps": self.link_capacity_mbps,
            "phase": self.phase,
            "status": self.status,
        }

    def line(self) -> str:
        """One human line for `live --stats`: what the session is doing, then its figures (a
        dash for a figure not measured yet, never "nan")."""
        lat = self.latency
        c = lat.counters
        audio = "-" if self.audio is None else self.audio.state.value
        hop = f"hop {self.hop}{' auto' if self.auto_hop else ''}"
        if not self.real_time:
            hop += " NOT REAL TIME"
        hop += f" nfe {self.nfe}"
        if 0 < self.nfe < self.controls.nfe:
            hop += f" of {self.controls.nfe}"
        head = f"{self.status} | " if self.status else ""
        rates = (
            f"fps {_num(lat.output_fps, 5, 1)} new {_num(lat.unique_fps, 5, 1)} | latency newest "
            f"{_num(lat.newest_latency_ms, 6)} ms p50 {_num(lat.latency_p50_ms, 6)} ms "
            f"p95 {_num(lat.latency_p95_ms, 6)} ms"
        )
        counts = (
            f"late {c.get('late', 0)} repeated {c.get('repeated', 0)} dropped {c.get('dropped', 0)}"
        )
        if self.remote is not None:
            return (
                f"{head}{rates} | remote {self.remote}: server compute "
                f"{_num(lat.compute['server'].mean_ms, 6, 1)} ms/hop network round trip "
                f"{_num(lat.compute['network'].mean_ms, 6, 1)} ms frames "
                f"{self.frame_format or '-'} {_num(self.link_mbps, 5, 1)} Mbit/s (link "
                f"{_num(self.link_capacity_mbps, 5, 1)}) | {hop} | {counts} | audio {audio}"
            )
        return (
            f"{head}{rates} | rtf {_num(lat.real_time_factor, 5, 2)} | {hop} | features "
            f"{_num(lat.compute['features'].mean_ms, 5, 1)} ms motion "
            f"{_num(lat.compute['motion'].mean_ms, 6, 1)} ms render "
            f"{_num(lat.compute['render'].mean_ms, 6, 1)} ms | {counts} skipped "
            f"{self.skipped_hops} hops ({self.skipped_frames} frames) | audio {audio} overflows "
            f"{0 if self.audio is None else self.audio.overflows}"
        )


def _num(value: float, width: int, places: int = 0) -> str:
    """A figure for a status line; a dash (as wide) until it has been measured."""
    if not math.isfinite(value):
        return "-".rjust(width)
    return f"{value:{width}.{places}f}"
