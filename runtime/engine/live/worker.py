"""What the live engine lends each of its workers, and what every worker tells it back.

The engine hosts one worker per session: local audio (`runtime.engine.live.audio_worker`), local
webcam (`runtime.engine.live.webcam`), or either through a render server
(`runtime.engine.live.remote`).
It builds one `WorkerContext` for it (on the thread that starts the engine) and asks it for its
`WorkerInputs` from any thread (to stop them, and for the stats): no worker is told apart by its
type. The context's callables are the engine's own and thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from runtime.core.timing import Clock
from runtime.engine.live.audio_timeline import AudioTimeline
from runtime.engine.live.avatar import LiveAvatar, render, to_uint8
from runtime.engine.live.capture import AudioFeed, open_capture
from runtime.engine.live.latency import LatencyMonitor
from runtime.engine.live.pacer import Pacer
from runtime.engine.live.types import (
    Emit,
    EngineConfig,
    EventKind,
    FileInput,
    HopRecord,
    LiveControls,
    MicrophoneInput,
    Source,
)
from runtime.media.audio_capture import AudioCapture, CaptureStatus, CaptureTap
from runtime.media.audio_gate import MicSwitch
from runtime.media.webcam import WebcamSource
from runtime.remote.link_status import LinkStatus
from runtime.sinks import AudioSink

if TYPE_CHECKING:
    from runtime.engine.live.hop import Graph
    from runtime.engine.live.hop_scheduler import HopScheduler

Array = npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class WorkerContext:
    """Everything a worker gets from the engine, in one object."""

    config: EngineConfig
    source: Source
    pacer: Pacer
    monitor: LatencyMonitor
    clock: Clock
    stop: threading.Event
    emit: Emit
    take_avatar: Callable[[], tuple[LiveAvatar, bool]]
    """The avatar for the next picture, and whether it changed since the last call."""
    controls: Callable[[], LiveControls]
    # Audio sources: the capture's switches and taps, the sinks that take audio, the end.
    mic: MicSwitch
    gate: Callable[[Array], Array]
    on_capture: Callable[[CaptureStatus], None]
    vmic_tap: CaptureTap | None
    vmic_update: Callable[[], None]
    audio_sinks: Sequence[AudioSink]
    audio_ended: threading.Event
    on_hop: Callable[[HopRecord], None] | None = None


@dataclass(frozen=True, kw_only=True)
class WorkerInputs:
    """What a worker has open now (any thread reads it): its inputs, to stop them and report
    them, and its progress."""

    capture: AudioCapture | None = None
    webcam: WebcamSource | None = None
    scheduler: HopScheduler | None = None
    """Local audio: the hop scheduler (its plan and counts)."""
    pictures: int = 0
    """Webcam: pictures made."""
    link_state: str | None = None
    """Remote compute: the link's state."""
    link: LinkStatus | None = None
    """Remote compute: the link's state with its failed attempts and next retry."""
    link_stats: Mapping[str, object] = field(default_factory=dict)
    """Remote compute: the link's figures (`EngineStats` fields: frame_format, link_mbps...)."""


class LiveWorker(Protocol):
    def run(self) -> None:
        """The worker's loop, on the engine's `live-worker` thread, until `context.stop`."""
        ...

    def inputs(self) -> WorkerInputs: ...


def audio_input(
    ctx: WorkerContext, source: FileInput | MicrophoneInput, timeline: AudioTimeline
) -> tuple[AudioCapture, AudioFeed]:
    """The capture of `source` with the context's mute switch and virtual-microphone tap (not
    started), and the feed that moves what it captures into `timeline` (through the noise
    gate) and to the audio sinks: the same for local and remote compute."""
    capture = open_capture(
        source,
        ctx.config,
        clock=ctx.clock,
        on_status=ctx.on_capture,
        switch=ctx.mic,
        tap=ctx.vmic_tap,
    )
    feed = AudioFeed(
        capture=capture,
        timeline=timeline,
        sinks=ctx.audio_sinks,
        monitor=ctx.monitor,
        clock=ctx.clock,
        silence_fill_s=ctx.config.silence_fill_s,
        emit=ctx.emit,
        gate=ctx.gate,
    )
    return capture, feed


def show_idle(ctx: WorkerContext, renderer: Graph, avatar: LiveAvatar) -> None:
    """The avatar at rest becomes the pacer's idle picture."""
    idle = to_uint8(render(renderer, avatar, avatar.source_motion[None]))[0]
    ctx.pacer.set_idle(idle)


def local_avatar(ctx: WorkerContext, renderer: Graph) -> LiveAvatar:
    """The avatar for the next local picture; a switch takes effect here (idle picture too)."""
    avatar, changed = ctx.take_avatar()
    if changed:
        show_idle(ctx, renderer, avatar)
        ctx.emit(EventKind.AVATAR, f"avatar {avatar.name}")
    return avatar
