"""One live session assembled from one typed configuration, for every front end (the caller's
thread: the CLI's main thread, the app's session worker).

`start_session` takes a `SessionConfig` (the source; the compute, local graphs or a render
server; the avatar's square crop; the controls; the engine's settings; the outputs, built by
`runtime.sinks.outputs`; the virtual microphone) and does what the CLI and the app each used to
do by hand: open the graphs (or take the ones the caller keeps open), encode the avatar at the
size the graphs take (a render server encodes it itself), start from the last bench of the same
graphs, build the outputs and the engine and start it. The render server assembles its
per-session compute with the same `runtime.engine.live.hop_scheduler.hop_scheduler`.

The `LiveSession` it returns is the front ends' one handle on a running session: controls,
avatar, call audio and outputs change through its typed methods (any thread; `set_avatar`
encodes, so not the GUI's).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from runtime.core.timing import Clock
from runtime.engine.bench import expected_hop
from runtime.engine.live.avatar import LiveAvatar, encode_avatar
from runtime.engine.live.engine import LiveEngine
from runtime.engine.live.remote import RemoteCompute, remote_avatar
from runtime.engine.live.types import (
    EngineConfig,
    EngineListener,
    EngineStats,
    LiveControls,
    Source,
)
from runtime.media.virtual_mic import VirtualMic
from runtime.model.execution.model_set import open_model_set
from runtime.model.execution.sessions import ModelSet, SessionOptions
from runtime.sinks import Sink
from runtime.sinks.outputs import Outputs, OutputsConfig

logger = logging.getLogger(__name__)

Image8 = npt.NDArray[np.uint8]


class AvatarSizeError(ValueError):
    """The avatar's crop is not the size the graphs take (it was made for another version)."""


@dataclass(frozen=True, kw_only=True)
class LocalCompute:
    """The graphs in `graphs`, run here; `models`: those graphs already open (the app keeps
    them between sessions), else they are opened with `options`."""

    graphs: Path
    options: SessionOptions = dataclasses.field(default_factory=SessionOptions)
    models: ModelSet | None = None
    bench_dir: Path | None = None
    """Where `imtalker-cam bench` keeps its result (the cache dir): a result for these graphs
    seeds Auto (`EngineConfig.expected_hop`); None: start from nothing."""


@dataclass(frozen=True, kw_only=True)
class SessionConfig:
    source: Source
    compute: LocalCompute | RemoteCompute
    avatar: Image8
    """The avatar's square crop: at the graphs' source size for local compute (the front end
    prepares it so), any size for a render server (512 px is what it takes best)."""
    avatar_name: str
    controls: LiveControls
    engine: EngineConfig = dataclasses.field(default_factory=EngineConfig)
    outputs: OutputsConfig | None = None
    """The preview, virtual camera and recordings (None: none of them)."""
    sinks: Sequence[Sink] = ()
    """Further sinks, after the outputs' own."""
    virtual_mic: VirtualMic | None = None
    listener: EngineListener = dataclasses.field(default_factory=EngineListener)
    clock: Clock = time.perf_counter


class LiveSession:
    """A running session: the engine, the graphs in use (`models`, None with a render server)
    and the outputs, with typed live changes (any thread)."""

    def __init__(
        self, *, engine: LiveEngine, models: ModelSet | None, avatar: LiveAvatar, outputs: Outputs
    ) -> None:
        self.engine = engine
        self.models = models
        self.outputs = outputs
        self._lock = threading.Lock()
        self._avatar = avatar

    @property
    def avatar(self) -> LiveAvatar:
        """The avatar the session was last given."""
        with self._lock:
            return self._avatar

    def set_avatar(self, image: Image8, name: str) -> None:
        """Switch to `image` (a square crop, as `SessionConfig.avatar`) from the next hop on; the
        outputs' blurred backdrop follows. Encodes it (slow); `AvatarSizeError` when it is not
        the size the graphs take."""
        avatar = session_avatar(self.models, image, name)
        with self._lock:
            self._avatar = avatar
        self.engine.set_avatar(avatar)
        self.outputs.set_avatar(image)

    def set_controls(self, controls: LiveControls) -> None:
        self.engine.set_controls(controls)

    def set_gate(self, threshold_dbfs: float | None) -> None:
        """The noise gate's threshold (None: off)."""
        self.engine.gate.set_threshold(threshold_dbfs)

    def set_push_to_talk(self, enabled: bool) -> None:
        self.engine.mic.set_push_to_talk(enabled)

    def set_muted(self, muted: bool) -> None:
        self.engine.mic.set_muted(muted)

    def set_talking(self, held: bool) -> None:
        """The push-to-talk key is down (True) or up."""
        self.engine.mic.set_talking(held)

    def set_mic_offset_ms(self, offset_ms: float) -> None:
        """Added to the measured latency by the virtual microphone (nothing without one)."""
        if self.engine.virtual_mic is not None:
            self.engine.virtual_mic.set_offset_ms(offset_ms)

    def set_max_mic_delay_ms(self, max_delay_ms: float) -> None:
        """The virtual microphone never delays the voice more (nothing without one)."""
        if self.engine.virtual_mic is not None:
            self.engine.virtual_mic.set_max_delay_ms(max_delay_ms)

    def stats(self) -> EngineStats:
        return self.engine.stats()

    def stop(self) -> bool:
        """Stop the engine (its sinks close); True when every thread ended in time."""
        return self.engine.stop()

    def __enter__(self) -> LiveSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def session_avatar(models: ModelSet | None, image: Image8, name: str) -> LiveAvatar:
    """`image` (a square crop) as the avatar for `models` (None: for a render server, which
    encodes it itself); `AvatarSizeError` when it is not the size the graphs take."""
    if models is None:
        if image.shape[0] != image.shape[1]:
            raise AvatarSizeError("the avatar must be a square crop; crop it again")
        return remote_avatar(image, name)
    size = models.source_size
    if image.shape[:2] != (size, size):
        raise AvatarSizeError(
            f"this avatar was prepared for another model version ({image.shape[1]} px, the "
            f"model takes {size} px); crop it again"
        )
    return encode_avatar(models["avatar_encoder"], image, size=size, name=name)


def start_session(
    config: SessionConfig, *, progress: Callable[[str], None] | None = None
) -> LiveSession:
    """Open, encode, build and start; `progress` hears "loading the model" and "encoding the
    avatar" as they begin. Raises `SinkUnavailable` when another session records to the same
    file, what opening the graphs raises, `AvatarSizeError`, and what `LiveEngine.start`
    raises; nothing is left running (or claimed) when it does."""
    say = progress or (lambda _: None)
    outputs = Outputs(config.outputs or OutputsConfig(), avatar=config.avatar)
    outputs.claim()  # SinkUnavailable now, before minutes of loading, when a file is taken
    try:
        compute = config.compute
        engine_config = config.engine
        if isinstance(compute, RemoteCompute):
            models = None
            avatar = session_avatar(None, config.avatar, config.avatar_name)
            remote: RemoteCompute | None = compute
        else:
            remote = None
            models = compute.models
            if models is None:
                say("loading the model")
                models = open_model_set(compute.graphs, options=compute.options)
            logger.info("running on %s", ", ".join(models.providers))
            if compute.bench_dir is not None and engine_config.expected_hop is None:
                seed = expected_hop(compute.bench_dir, compute.graphs, models)
                engine_config = dataclasses.replace(engine_config, expected_hop=seed)
            say("encoding the avatar")
            avatar = session_avatar(models, config.avatar, config.avatar_name)
        engine = LiveEngine(
            models=models,
            source=config.source,
            config=engine_config,
            sinks=(*outputs.sinks, *config.sinks),
            listener=config.listener,
            virtual_mic=config.virtual_mic,
            clock=config.clock,
            compute=remote,
        )
        try:
            engine.start(avatar, config.controls)
        except BaseException:
            engine.stop()
            raise
    except BaseException:
        outputs.release()
        raise
    return LiveSession(engine=engine, models=models, avatar=avatar, outputs=outputs)
