"""Every backend/precision candidate timed and checked against ONNX Runtime fp32 on the same
inputs, and the choice ``--backend auto`` keeps (the caller's thread: `imtalker-cam bench`).

Per candidate (`runtime.model.execution.backends.candidates`): the renderer per frame at batch
1 (frames |d| mean, 99th percentile and PSNR against the reference's frames) and the sampler
per hop (one 50-frame chunk through the velocity graph; relative error of the motion). A
candidate that cannot open or run is listed with its error. The choice is the cheapest hop
(sampler + hop x renderer per frame) among the candidates within `TOLERANCE` in both.
"""

from __future__ import annotations

import gc
import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from runtime.engine.motion_sampler import (
    ChunkContext,
    ProjectedConditions,
    fixed_noise,
    sample_chunk,
    velocity_from_session,
)
from runtime.model import contract
from runtime.model.execution.backends import (
    REFERENCE,
    TOLERANCE,
    BackendChoice,
    Tolerance,
    ort_providers,
)
from runtime.model.execution.device_graphs import DeviceGraph, DeviceRenderer
from runtime.model.execution.model_set import open_model_set
from runtime.model.execution.sessions import OPENVINO, SessionOptions

__all__ = [
    "BackendTrials",
    "RendererTrial",
    "SamplerTrial",
    "choose",
    "options_for",
    "run_trials",
]

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]
Clock = Callable[[], float]


@dataclass(frozen=True, kw_only=True)
class RendererTrial:
    backend: str
    device: str
    precision: str
    ms_per_frame: float | None
    mean_abs_diff: float | None
    p99_abs_diff: float | None
    psnr_db: float | None
    within_tolerance: bool
    error: str = ""


@dataclass(frozen=True, kw_only=True)
class SamplerTrial:
    backend: str
    device: str
    precision: str
    ms_per_hop: float | None
    rel_diff: float | None
    within_tolerance: bool
    error: str = ""


@dataclass(frozen=True, kw_only=True)
class BackendTrials:
    renderer: tuple[RendererTrial, ...]
    sampler: tuple[SamplerTrial, ...]
    chosen: str
    """The label (`BackendChoice.label`) of the choice; `REFERENCE` when nothing beat it."""


def options_for(base: SessionOptions, choice: BackendChoice) -> SessionOptions:
    """`base` running as `choice` (threads and caches kept)."""
    return replace(
        base,
        backend=choice.backend,
        precision=choice.precision,
        openvino_device=choice.device if choice.backend == OPENVINO else "auto",
        providers=ort_providers(choice) if choice.backend != OPENVINO else base.providers,
    )


def _median_ms(fn: Callable[[], object], repeats: int, clock: Clock) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return 1000.0 * statistics.median(times)


def psnr_db(a: Array, b: Array) -> float:
    """Peak signal-to-noise ratio of frames in [0, 1]."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0.0 else -10.0 * math.log10(mse)


@dataclass(frozen=True)
class _Outputs:
    frames: Array
    motion: Array
    frame_ms: float
    hop_ms: float


def _measure(
    graphs: Path,
    options: SessionOptions,
    avatar: Mapping[str, Array],
    motion_in: Array,
    *,
    hop: int,
    nfe: int,
    cfg_scale: float,
    repeats: int,
    clock: Clock,
) -> _Outputs:
    models = open_model_set(
        graphs, options=options, names=[contract.RENDERER.name, contract.VELOCITY.name]
    )
    renderer = DeviceRenderer(models[contract.RENDERER.name])
    renderer.use(avatar)
    frames = renderer.render(motion_in).copy()
    frame_ms = _median_ms(lambda: renderer.render(motion_in), repeats, clock)
    velocity = velocity_from_session(DeviceGraph(models[contract.VELOCITY.name]))
    rng = np.random.default_rng(1)
    ref = rng.standard_normal(contract.MOTION_DIM).astype(np.float32)
    conditions = ProjectedConditions.zeros(contract.CLIP_FRAMES)
    noise = fixed_noise(25)(0)

    def sample() -> Array:
        return sample_chunk(
            velocity,
            noise=noise,
            ref_motion=ref,
            conditions=conditions,
            context=ChunkContext.zeros(),
            cfg_scale=cfg_scale,
            nfe=nfe,
        )

    motion = np.array(sample(), np.float32)
    hop_ms = _median_ms(sample, repeats, clock)
    return _Outputs(frames=frames, motion=motion, frame_ms=frame_ms, hop_ms=hop_ms)


def run_trials(
    graphs: Path,
    choices: Sequence[BackendChoice],
    *,
    base: SessionOptions,
    avatar: Mapping[str, Array],
    hop: int = 5,
    nfe: int = 10,
    cfg_scale: float = 3.0,
    repeats: int = 3,
    tolerance: Tolerance = TOLERANCE,
    clock: Clock = time.perf_counter,
    progress: Callable[[str], None] | None = None,
) -> BackendTrials:
    """Time and check `choices` (see the module docstring); `REFERENCE` is measured first
    whether or not it is listed. `avatar`: the renderer's avatar tensors (contract
    `AVATAR_TENSORS`)."""
    say = progress or (lambda _text: None)
    rng = np.random.default_rng(0)
    motion_in: Array = rng.standard_normal((1, contract.MOTION_DIM)).astype(np.float32)
    order = [REFERENCE, *(c for c in choices if c != REFERENCE)]
    outputs: dict[BackendChoice, _Outputs | str] = {}
    for choice in order:
        say(f"backend {choice.label}")
        try:
            outputs[choice] = _measure(
                graphs, options_for(base, choice), avatar, motion_in,
                hop=hop, nfe=nfe, cfg_scale=cfg_scale, repeats=repeats, clock=clock,
            )  # fmt: skip
        except Exception as exc:  # a candidate that cannot run is a finding, not a crash
            logger.warning("backend %s: %s: %s", choice.label, type(exc).__name__, exc)
            outputs[choice] = f"{type(exc).__name__}: {exc}"
        gc.collect()  # one candidate's compiled graphs at a time
    reference = outputs[REFERENCE]
    if isinstance(reference, str):
        raise RuntimeError(f"the reference {REFERENCE.label} did not run: {reference}")
    renderer: list[RendererTrial] = []
    sampler: list[SamplerTrial] = []
    for choice in order:
        out = outputs[choice]
        names = {"backend": choice.backend, "device": choice.device, "precision": choice.precision}
        if isinstance(out, str):
            renderer.append(RendererTrial(**names, ms_per_frame=None, mean_abs_diff=None,
                                          p99_abs_diff=None, psnr_db=None,
                                          within_tolerance=False, error=out))  # fmt: skip
            sampler.append(SamplerTrial(**names, ms_per_hop=None, rel_diff=None,
                                        within_tolerance=False, error=out))  # fmt: skip
            continue
        d = np.abs(out.frames.astype(np.float64) - reference.frames)
        mean, p99 = float(d.mean()), float(np.percentile(d, 99))
        frames_ok = bool(np.isfinite(out.frames).all()) and tolerance.frames_ok(mean, p99)
        rel = float(
            np.linalg.norm(out.motion - reference.motion)
            / max(float(np.linalg.norm(reference.motion)), 1e-12)
        )
        motion_ok = bool(np.isfinite(out.motion).all()) and tolerance.motion_ok(rel)
        psnr = psnr_db(out.frames, reference.frames)
        renderer.append(RendererTrial(**names, ms_per_frame=out.frame_ms, mean_abs_diff=mean,
                                      p99_abs_diff=p99, psnr_db=None if math.isinf(psnr) else psnr,
                                      within_tolerance=frames_ok))  # fmt: skip
        sampler.append(SamplerTrial(**names, ms_per_hop=out.hop_ms, rel_diff=rel,
                                    within_tolerance=motion_ok))  # fmt: skip
    return BackendTrials(
        renderer=tuple(renderer), sampler=tuple(sampler), chosen=choose(renderer, sampler, hop=hop)
    )


def choose(renderer: Sequence[RendererTrial], sampler: Sequence[SamplerTrial], *, hop: int) -> str:
    """The label of the cheapest hop (sampler + hop x renderer per frame) among the trials
    within tolerance in both; `REFERENCE` when none is (or none ran)."""
    best, best_cost = REFERENCE.label, math.inf
    for r, s in zip(renderer, sampler, strict=True):
        if not (r.within_tolerance and s.within_tolerance):
            continue
        if r.ms_per_frame is None or s.ms_per_hop is None:
            continue
        cost = s.ms_per_hop + hop * r.ms_per_frame
        if cost < best_cost:
            best, best_cost = f"{r.backend}/{r.device}/{r.precision}", cost
    return best
