"""The one hop scheduler of the audio-driven path, and the one place its compute is assembled.

Runs on its host's compute thread: the live engine's `live-worker`, or a render-server
session's compute thread. `hops`, `skipped_frames`, `skipped_hops` and `plan` are read from any
thread (ints and one immutable value, each replaced whole).

Local compute and a render server drive the same object. Each `step` plans one hop from the
user's controls and the measured compute (`runtime.engine.live.plan`), decides what to make of
the audio the timeline holds (`hop_choice.next_step`: wait, make, or first skip ahead to the
newest audio), runs it (`runtime.engine.live.hop.HopRunner`) and feeds its cost back to Auto.

The latency bound lives here, and it is structural: every hop is planned when it starts, from
the newest audio the timeline holds, and leaves less than two hops (four frames at hop 1) of older
audio unmade; the end of the input gets one last hop of its newest frames; in every mode. So the
newest frame a hop makes was captured less than `max(2 hop, 4) + lookahead` frames before the
newest audio in (plus however late the input delivered that), and its picture exists one hop's
compute later, whatever the machine did before: no stage can carry a backlog from one hop into
the next, because the next hop is planned anew.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runtime.core.timing import Clock
from runtime.engine.features import encoder_from_session, utterance_features
from runtime.engine.live.audio_timeline import AudioTimeline
from runtime.engine.live.avatar import LiveAvatar
from runtime.engine.live.generator import LiveGenerator
from runtime.engine.live.hop import FrameQueue, Graph, HopRunner
from runtime.engine.live.hop_choice import HopCompute, HopPlan, next_step
from runtime.engine.live.latency import LatencyMonitor
from runtime.engine.live.plan import HopPlanner
from runtime.engine.live.types import Emit, EngineConfig, HopRecord, LiveControls
from runtime.engine.motion_sampler import (
    NoiseFn,
    conditioner_from_session,
    fixed_noise,
    random_noise,
    velocity_from_session,
)
from runtime.model.contract import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from runtime.model.versions import ModelVersion

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class HopDone:
    """What one scheduled hop did."""

    first: int
    """Timeline frame (25 fps) of its first emitted frame."""
    emitted: int
    skipped: int
    """Frames of audio skipped just before it."""
    cost: HopCompute
    plan: HopPlan


def keep_seconds(config: EngineConfig) -> float:
    """Audio history a timeline keeps: the encoder's context plus room for the skip-ahead."""
    return max(12.0, config.context_s + 4 * config.max_backlog_s)


class HopScheduler:
    def __init__(
        self,
        *,
        runner: HopRunner,
        planner: HopPlanner,
        lookahead: int,
        monitor: LatencyMonitor,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.runner = runner
        self.planner = planner
        self._look = lookahead
        self._monitor = monitor
        self._clock = clock
        self.next_frame = 0
        """The next timeline frame to make (everything before it was made or skipped)."""
        self.hops = 0
        self.skipped_frames = 0
        self.skipped_hops = 0
        """Times it skipped ahead, in hops of the hop then in use."""
        self._unreported = 0

    @property
    def timeline(self) -> AudioTimeline:
        return self.runner.timeline

    @property
    def plan(self) -> HopPlan:
        return self.planner.plan

    def step(
        self,
        *,
        controls: LiveControls,
        avatar: LiveAvatar,
        ended: bool = False,
        silence_follows: bool = False,
    ) -> HopDone | None:
        """Run at most one hop on what the timeline holds now; None when none is due (not
        enough new audio yet). `ended`: the input is over and all of it is in the timeline: the
        one last hop, of its newest frames (None if nothing is left). `silence_follows`: time
        goes on after the end (the local engine idles on silence), so a tail that this silence
        has already put two hops behind is skipped like any other old audio."""
        timeline = self.timeline
        if ended:
            timeline.pad_last_frame()
        plan = self.planner.plan_for(controls)
        # At the end there is no more audio to wait for: the last frames go without lookahead.
        ready = timeline.frames - (0 if ended else self._look)
        span = ready - self.next_frame
        if ended and silence_follows and span > 0:
            behind = (self._clock() - timeline.end_time) * FPS
            if behind >= max(2 * plan.hop, 4):
                self._skip(span, plan.hop)
                return None
        step = next_step(span, plan, ended=ended, lookahead=self._look)
        if step is None:
            return None
        oldest_usable = -(-timeline.oldest // SAMPLES_PER_FRAME)
        skipped = max(step.skipped, oldest_usable - self.next_frame)
        emit = min(step.hop, ready - self.next_frame - skipped)
        if emit <= 0:
            return None
        if skipped > 0:
            self._skip(skipped, step.hop)
        # Reported with this hop: everything skipped since the last one (a skipped tail too).
        skipped, self._unreported = self._unreported, 0
        first = self.next_frame
        cost = self.runner.run(
            first=first,
            emit=emit,
            real=min(emit + self._look, timeline.frames - first),
            skipped=skipped,
            avatar=avatar,
            controls=controls,
            nfe=plan.nfe,
            newest_only=plan.slideshow,
        )
        self.planner.observe(cost)
        self.next_frame += emit
        self.hops += 1
        return HopDone(first=first, emitted=emit, skipped=skipped, cost=cost, plan=plan)

    def _skip(self, frames: int, hop: int) -> None:
        self.next_frame += frames
        self.skipped_frames += frames
        self.skipped_hops += -(-frames // hop)
        self._unreported += frames
        self._monitor.count("skipped_frames", frames)


def hop_scheduler(
    *,
    config: EngineConfig,
    graph: Callable[[str], Graph],
    renderer: Graph,
    frames: FrameQueue,
    monitor: LatencyMonitor,
    controls: LiveControls,
    emit: Emit,
    model_version: ModelVersion,
    on_gpu: bool,
    clock: Clock = time.perf_counter,
    on_hop: Callable[[HopRecord], None] | None = None,
    whole_audio: tuple[Array, int] | None = None,
) -> HopScheduler:
    """The audio-driven compute over `graph`'s sessions, assembled once for every host: the
    audio encoder, the sampler with its noise (the config's seed, else fresh), a timeline of
    `keep_seconds`, the `HopRunner` handing frames to `frames` (the pacer, or a server's
    collector) and its scheduler. `whole_audio` (samples, rate): quality mode over a file, whose
    features are the whole file's, as offline."""
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
    if whole_audio is not None and config.quality:
        audio, rate = whole_audio
        if rate != SAMPLE_RATE:
            import soxr

            audio = soxr.resample(audio, rate, SAMPLE_RATE, "HQ")
        precomputed = utterance_features(encode, np.asarray(audio, np.float32))
    runner = HopRunner(
        config=config,
        timeline=AudioTimeline(keep_seconds=keep_seconds(config)),
        encode=encode,
        precomputed=precomputed,
        generator=generator,
        renderer=renderer,
        pacer=frames,
        monitor=monitor,
        clock=clock,
        on_hop=on_hop,
        on_gpu=on_gpu,
        model_version=model_version,
    )
    lookahead = 0 if config.quality else config.lookahead
    planner = HopPlanner(
        fps=config.fps,
        lookahead=lookahead,
        quality=config.quality,
        controls=controls,
        emit=emit,
        expected=config.expected_hop,
    )
    return HopScheduler(
        runner=runner, planner=planner, lookahead=lookahead, monitor=monitor, clock=clock
    )
