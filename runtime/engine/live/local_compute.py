"""The local compute of the audio-driven live worker (`live-worker` thread): the engine's graphs
under `runtime.engine.live.hop_scheduler`'s one assembly, with the whole file's features in quality
mode. (With a render server the worker is `runtime.engine.live.remote` instead; the server
assembles its sessions with the same function.)"""

from __future__ import annotations

from collections.abc import Callable

from runtime.core.timing import Clock
from runtime.engine.live.hop import FrameQueue, Graph
from runtime.engine.live.hop_scheduler import HopScheduler, hop_scheduler
from runtime.engine.live.latency import LatencyMonitor
from runtime.engine.live.types import (
    Emit,
    EngineConfig,
    FileInput,
    HopRecord,
    LiveControls,
    MicrophoneInput,
)
from runtime.model.execution.sessions import ModelSet


def on_gpu(models: ModelSet) -> bool:
    try:
        return bool(models.on_gpu)
    except (AttributeError, IndexError, StopIteration):  # sessions without provider information
        return False


def local_scheduler(
    *,
    models: ModelSet,
    config: EngineConfig,
    source: FileInput | MicrophoneInput,
    graph: Callable[[str], Graph],
    renderer: Graph,
    pacer: FrameQueue,
    monitor: LatencyMonitor,
    clock: Clock,
    controls: LiveControls,
    emit: Emit,
    on_hop: Callable[[HopRecord], None] | None,
) -> HopScheduler:
    return hop_scheduler(
        config=config,
        graph=graph,
        renderer=renderer,
        frames=pacer,
        monitor=monitor,
        controls=controls,
        emit=emit,
        model_version=models.version,
        on_gpu=on_gpu(models),
        clock=clock,
        on_hop=on_hop,
        whole_audio=(source.audio, source.rate) if isinstance(source, FileInput) else None,
    )
