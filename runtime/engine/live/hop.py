"""One hop of the audio-driven live engine: features -> motion -> retimed -> rendered -> the
pacer (inference worker thread), and the graph wrapper that ends runs when the engine stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from runtime.core.timing import Clock, FrameTiming
from runtime.engine.features import window_features
from runtime.engine.live.audio_timeline import AudioTimeline
from runtime.engine.live.avatar import LiveAvatar, render, to_uint8
from runtime.engine.live.generator import LiveGenerator
from runtime.engine.live.hop_choice import HopCompute
from runtime.engine.live.latency import LatencyMonitor
from runtime.engine.live.pacer import MotionRetimer
from runtime.engine.live.types import EngineConfig, HopRecord, LiveControls
from runtime.model.contract import FPS, MOTION_DIM, RENDERER, SAMPLES_PER_FRAME
from runtime.model.execution.device_graphs import DeviceGraph, DeviceRenderer
from runtime.model.execution.sessions import CUDA_GRAPH_GRAPHS, GraphSession
from runtime.model.versions import ModelVersion
from runtime.sinks.frame import LiveFrame

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]


class FrameQueue(Protocol):
    """Where a hop's frames go: the pacer locally, a collector on a render server."""

    def submit(self, frames: Sequence[LiveFrame]) -> None: ...


class Stopped(Exception):
    """The engine is stopping: abandon the hop in flight."""


class Graph:
    """A session whose runs end promptly when the engine stops (ORT run termination).

    Real sessions run device-resident (`runtime.model.execution.device_graphs`): the velocity graph
    through preallocated bindings, the renderer with the current avatar's tensors kept on the
    session's device (uploaded when the avatar changes, not per hop; `render_avatar`). Test
    doubles without IOBinding run plainly.
    """

    def __init__(self, session: GraphSession, options: ort.RunOptions, stop: threading.Event):
        self._options, self._stop = options, stop
        self._session: Any = session
        self._device: DeviceRenderer | None = None
        if isinstance(session, GraphSession):
            if session.spec.name == RENDERER.name:
                self._device = DeviceRenderer(session)
            elif session.spec.name in CUDA_GRAPH_GRAPHS:  # fixed-shape steps: the velocity
                self._session = DeviceGraph(session)

    def run(self, inputs: Mapping[str, npt.NDArray[np.generic]]) -> dict[str, Array]:
        out: dict[str, Array] = self._guarded(
            lambda: self._session.run(inputs, run_options=self._options)
        )
        return out

    def render_avatar(self, avatar: LiveAvatar, motion: Array) -> Array:
        """(B, 32) motion against `avatar` -> (B, 3, 512, 512) frames, valid until the next
        render of the same batch size."""
        device = self._device
        if device is None:
            feeds: dict[str, npt.NDArray[np.generic]] = dict(avatar.tensors)
            feeds["motion"] = np.ascontiguousarray(motion, np.float32).reshape(-1, MOTION_DIM)
            return self.run(feeds)["frames"]

        def rendered() -> Array:
            device.use(avatar.tensors)
            return device.render(motion, run_options=self._options)

        frames: Array = self._guarded(rendered)
        return frames

    def _guarded(self, body: Callable[[], Any]) -> Any:
        if self._stop.is_set():
            raise Stopped
        try:
            return body()
        except Exception:
            if self._stop.is_set():
                raise Stopped from None
            raise


class HopRunner:
    """Runs hops for one engine run; holds the per-run state (generator, retimer, timeline)."""

    def __init__(
        self,
        *,
        config: EngineConfig,
        timeline: AudioTimeline,
        encode: Callable[[Array], Array],
        precomputed: Array | None,
        generator: LiveGenerator,
        renderer: Graph,
        pacer: FrameQueue,
        monitor: LatencyMonitor,
        clock: Clock = time.perf_counter,
        on_hop: Callable[[HopRecord], None] | None = None,
        model_version: ModelVersion,
        on_gpu: bool = False,
    ) -> None:
        self.config = config
        self.timeline = timeline
        self._encode = encode
        self._precomputed = precomputed
        self._generator = generator
        self._retimer = MotionRetimer(source_fps=FPS, output_fps=config.fps)
        self.renderer = renderer
        self._pacer = pacer
        self._monitor = monitor
        self._clock = clock
        self._on_hop = on_hop
        self._on_gpu = on_gpu
        self._version = model_version

    def features(self, first: int, real: int) -> Array:
        pre = self._precomputed
        if pre is not None and first + real <= pre.shape[0]:
            return pre[first : first + real]
        timeline = self.timeline
        stop = first + real
        start = max(first - round(self.config.context_s * FPS), 0)
        start = max(start, -(-timeline.oldest // SAMPLES_PER_FRAME))
        window = timeline.samples(start * SAMPLES_PER_FRAME, stop * SAMPLES_PER_FRAME)
        # A copy: a view would keep the whole window's features alive in every HopRecord.
        return np.array(window_features(self._encode, window, last_frames=real))

    def run(
        self,
        *,
        first: int,
        emit: int,
        real: int,
        skipped: int,
        avatar: LiveAvatar,
        controls: LiveControls,
        nfe: int | None = None,
        newest_only: bool = False,
    ) -> HopCompute:
        """Make `emit` frames of motion from frame `first` (with `real - emit` lookahead) and
        render them; `nfe`: the sampler's steps if not the controls' own (Auto lowered them);
        `newest_only`: render only the newest (a slideshow that keeps up)."""
        steps = controls.nfe if nfe is None else nfe
        t0 = self._clock()
        features = self.features(first, real)
        t_feat = self._clock()
        raw = controls.raw_conditions(real)
        out = self._generator.step(
            features=features,
            raw=raw,
            emit=emit,
            ref_motion=avatar.source_motion,
            cfg_scale=controls.cfg_for(self._version),
            nfe=steps,
        )
        t_motion = self._clock()
        capture = np.array(
            [self.timeline.frame_capture_time(k) for k in range(first, first + emit)], np.float64
        )
        retimed = self._retimer.push(first, out.motion, capture)
        indices, motion, captured = retimed.indices, retimed.motion, retimed.capture
        if newest_only:
            indices, motion, captured = indices[-1:], motion[-1:], captured[-1:]
        frames = self.render_frames(avatar, motion)
        t_pix = self._clock()
        self._pacer.submit(
            [
                LiveFrame(
                    index=int(j),
                    image=frames[i],
                    timing=FrameTiming(
                        capture=float(captured[i]),
                        features=t_feat,
                        motion=t_motion,
                        pixels=t_pix,
                    ),
                )
                for i, j in enumerate(indices)
            ]
        )
        mon = self._monitor
        mon.record_compute("features", t_feat - t0)
        mon.record_compute("motion", t_motion - t_feat)
        mon.record_compute("render", t_pix - t_motion)
        mon.record_compute("hop", t_pix - t0)
        mon.record_media(emit / FPS)
        if self._on_hop is not None:
            record = HopRecord(
                first_frame=first,
                emitted=emit,
                real_frames=real,
                skipped_before=skipped,
                features=features,
                raw=raw,
                controls=controls,
                avatar=avatar.name,
                motion=out.motion,
                capture=capture,
                started=t0,
                finished=t_pix,
                rendered=len(indices),
                nfe=steps,
            )
            try:
                self._on_hop(record)
            except Exception:
                logger.exception("hop listener failed")
        return HopCompute(
            fixed_s=t_motion - t0,
            render_s=t_pix - t_motion,
            rendered=len(indices),
            sampler_s=out.sampler_s,
            nfe=steps,
        )

    def render_frames(self, avatar: LiveAvatar, motion: Array) -> Any:
        if motion.shape[0] == 0:
            return np.zeros((0, 1, 1, 3), np.uint8)
        step = self.config.render_batch or (motion.shape[0] if self._on_gpu else 1)
        parts = [
            to_uint8(render(self.renderer, avatar, motion[i : i + step]))
            for i in range(0, motion.shape[0], step)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
