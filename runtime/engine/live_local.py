"""The local compute of the audio-driven live worker, assembled (`live-worker` thread): the
audio encoder, the sampler with its noise, a whole file's features in quality mode, and the
`HopRunner` over them and the renderer. (With a render server the worker is
`runtime.engine.live_remote` instead.)"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from runtime.core.timing import Clock
from runtime.engine.audio_timeline import AudioTimeline
from runtime.engine.features import encoder_from_session, utterance_features
from runtime.engine.latency import LatencyMonitor
from runtime.engine.live_generator import LiveGenerator
from runtime.engine.live_hop import FrameQueue, Graph, HopRunner
from runtime.engine.motion_sampler import (
    NoiseFn,
    conditioner_from_session,
    fixed_noise,
    random_noise,
    velocity_from_session,
)
from runtime.engine.types import EngineConfig, FileInput, HopRecord, MicrophoneInput
from runtime.model.contract import SAMPLE_RATE
from runtime.model.sessions import ModelSet

Array = npt.NDArray[np.float32]


def on_gpu(models: ModelSet) -> bool:
    try:
        return models.providers[0] != "CPUExecutionProvider"
    except (AttributeError, IndexError):  # sessions without provider information
        return False


def local_runner(
    *,
    models: ModelSet,
    config: EngineConfig,
    source: FileInput | MicrophoneInput,
    graph: Callable[[str], Graph],
    renderer: Graph,
    pacer: FrameQueue,
    monitor: LatencyMonitor,
    clock: Clock,
    on_hop: Callable[[HopRecord], None] | None,
) -> HopRunner:
    encode = encoder_from_session(graph("audio_encoder"))
    noise: NoiseFn = (
        fixed_noise(config.seed)
        if config.seed is not None
        else random_noise(np.random.default_rng())
    )
    generator = LiveGenerator(
        velocity=velocity_from_session(graph("velocity")),
        conditioner=conditioner_from_session(graph("conditioner")),
        noise=noise,
        clock=clock,
    )
    precomputed: Array | None = None
    if isinstance(source, FileInput) and config.quality:
        audio16k = source.audio
        if source.rate != SAMPLE_RATE:
            import soxr

            audio16k = soxr.resample(source.audio, source.rate, SAMPLE_RATE, "HQ")
        precomputed = utterance_features(encode, np.asarray(audio16k, np.float32))
    timeline = AudioTimeline(keep_seconds=max(12.0, config.context_s + 4 * config.max_backlog_s))
    return HopRunner(
        config=config,
        timeline=timeline,
        encode=encode,
        precomputed=precomputed,
        generator=generator,
        renderer=renderer,
        pacer=pacer,
        monitor=monitor,
        clock=clock,
        on_hop=on_hop,
        on_gpu=on_gpu(models),
        model_version=models.version,
    )
