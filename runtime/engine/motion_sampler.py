"""The flow-matching motion sampler over the `velocity` graph, shared by offline render and live.

Runs on the caller's thread (the offline render thread or the live inference worker); it holds
no state between calls. It follows the reference `FMGenerator.sample` step by step:

- conditions: raw gaze/pose/cam are cropped or zero-padded to the clip length and projected
  through the `conditioner` graph; a condition that is absent ("natural") is zeros after
  projection, not the projection of zeros;
- 50-frame chunks; the first chunk's 10 context frames (motion and every condition) are zeros,
  later chunks take the last 10 frames of the chunk before; a short last chunk is padded by
  repeating its last frame;
- each chunk starts from noise (the same noise for every chunk when seeded) and is integrated
  with Euler steps between consecutive points of `linspace(0, 1, nfe)` (nfe - 1 velocity
  evaluations, as torchdiffeq's fixed-grid Euler does).

Velocity and conditioner are plain callables over the contract's tensor names, so a session, a
pure-numpy fake or an instrumented wrapper can be passed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from runtime.model.contract import (
    AUDIO_FEATURE_DIM,
    CLIP_FRAMES,
    COND_DIM,
    MOTION_DIM,
    PREV_FRAMES,
)

Array = npt.NDArray[np.float32]

VelocityFn = Callable[[Mapping[str, Array]], Array]
"""Velocity graph inputs by contract name -> `velocity` (B, 50, 32)."""

ConditionerFn = Callable[[Mapping[str, Array]], Mapping[str, Array]]
"""Conditioner graph inputs by contract name -> its outputs by name."""

NoiseFn = Callable[[int], Array]
"""Chunk index -> the chunk's starting noise (50, 32)."""

CONDITION_NAMES = ("audio", "gaze", "pose", "cam")


class Runner(Protocol):
    """Anything with `run(dict) -> dict` (a `runtime.model.execution.sessions.GraphSession`)."""

    def run(self, inputs: Mapping[str, npt.NDArray[np.generic]]) -> dict[str, Array]: ...


def velocity_from_session(session: Runner) -> VelocityFn:
    def velocity(inputs: Mapping[str, Array]) -> Array:
        return session.run(inputs)["velocity"]

    return velocity


def conditioner_from_session(session: Runner) -> ConditionerFn:
    def conditioner(inputs: Mapping[str, Array]) -> Mapping[str, Array]:
        return session.run(inputs)

    return conditioner


def time_grid(nfe: int) -> Array:
    """`torch.linspace(0, 1, nfe)` in float32, value for value.

    Torch counts the first half up from 0 and the second half down from 1 with a float32 step,
    each value rounded once (a fused multiply-add); float64 arithmetic rounded to float32 at
    the end reproduces that exactly.
    """
    if nfe < 2:
        raise ValueError(f"nfe must be at least 2, got {nfe}")
    step = np.float64(np.float32(1.0) / np.float32(nfe - 1))
    idx = np.arange(nfe)
    grid = np.where(idx < nfe // 2, step * idx, 1.0 - step * (nfe - 1 - idx))
    return grid.astype(np.float32)


def torch_compatible_randn(seed: int, shape: tuple[int, ...]) -> Array:
    """`torch.randn(shape, generator=torch.Generator().manual_seed(seed))` on the CPU, in numpy.

    Torch draws 32-bit MT19937 words, keeps 24 bits as a uniform float in [0, 1) and turns
    groups of 16 into normals with Box-Muller (first 8 = radius * cos, last 8 = radius * sin);
    a tail that is not a multiple of 16 recomputes the last 16 values from fresh uniforms.
    Matches torch to ~1 ulp (torch's vectorised log/cos may round differently). Tensors of
    fewer than 16 values take a different torch path and are refused.
    """
    n = math.prod(shape)
    if n < 16:
        raise ValueError("torch-compatible noise needs at least 16 values")
    extra = 16 if n % 16 else 0
    bits = np.random.MT19937(0)
    bits._legacy_seeding(seed)
    words = bits.random_raw(n + extra).astype(np.uint64)
    uniform = (words & np.uint64((1 << 24) - 1)).astype(np.float32) * np.float32(2.0**-24)
    out = uniform[:n].copy()
    whole = n - n % 16
    groups = out[:whole].reshape(-1, 16)
    out[:whole] = _box_muller16(groups).reshape(-1)
    if extra:
        out[n - 16 :] = _box_muller16(uniform[n:].reshape(1, 16)).reshape(-1)
    return out.reshape(shape)


def _box_muller16(u: Array) -> Array:
    radius = np.sqrt(np.float32(-2.0) * np.log(np.float32(1.0) - u[:, :8]))
    theta = np.float32(2.0 * math.pi) * u[:, 8:]
    return np.concatenate([radius * np.cos(theta), radius * np.sin(theta)], axis=1).astype(
        np.float32
    )


def fixed_noise(seed: int) -> NoiseFn:
    """The reference's seeded noise: the same (50, 32) draw for every chunk."""
    noise = torch_compatible_randn(seed, (1, CLIP_FRAMES, MOTION_DIM))[0]
    return constant_noise(noise)


def constant_noise(noise: Array) -> NoiseFn:
    chunk = np.ascontiguousarray(noise, dtype=np.float32).reshape(CLIP_FRAMES, MOTION_DIM)
    chunk.setflags(write=False)
    return lambda _index: chunk


def random_noise(rng: np.random.Generator) -> NoiseFn:
    """Fresh noise for every chunk (unseeded runs)."""
    return lambda _index: rng.standard_normal((CLIP_FRAMES, MOTION_DIM), dtype=np.float32)


@dataclass(frozen=True)
class RawConditions:
    """Per-frame user conditions before projection; None = natural (no condition)."""

    gaze: Array | None = None  # (T, 2)
    pose: Array | None = None  # (T, 3)
    cam: Array | None = None  # (T, 3)


@dataclass(frozen=True)
class ProjectedConditions:
    """The four projected condition streams, (T, 32) each, frame-aligned."""

    audio: Array
    gaze: Array
    pose: Array
    cam: Array

    def __post_init__(self) -> None:
        lengths = {a.shape for a in self.arrays()}
        if len(lengths) != 1 or next(iter(lengths))[1:] != (COND_DIM,):
            raise ValueError(f"conditions must share one (T, {COND_DIM}) shape, got {lengths}")

    def arrays(self) -> tuple[Array, Array, Array, Array]:
        return (self.audio, self.gaze, self.pose, self.cam)

    @property
    def frames(self) -> int:
        return int(self.audio.shape[0])

    @staticmethod
    def zeros(frames: int) -> ProjectedConditions:
        z = np.zeros((frames, COND_DIM), np.float32)
        return ProjectedConditions(audio=z, gaze=z, pose=z, cam=z)

    def _map(self, fn: Callable[[Array], Array]) -> ProjectedConditions:
        audio, gaze, pose, cam = (fn(a) for a in self.arrays())
        return ProjectedConditions(audio=audio, gaze=gaze, pose=pose, cam=cam)

    def slice(self, start: int, stop: int) -> ProjectedConditions:
        return self._map(lambda a: a[start:stop])

    def padded_to(self, frames: int) -> ProjectedConditions:
        """Pad to `frames` by repeating the last frame (the reference's short-chunk padding)."""
        missing = frames - self.frames
        if missing < 0:
            raise ValueError(f"cannot pad {self.frames} frames down to {frames}")
        if missing == 0:
            return self
        if self.frames == 0:
            raise ValueError("cannot pad an empty chunk")
        return self._map(lambda a: np.concatenate([a, np.repeat(a[-1:], missing, axis=0)]))

    def concat(self, other: ProjectedConditions) -> ProjectedConditions:
        mine, theirs = self.arrays(), other.arrays()
        audio, gaze, pose, cam = (np.concatenate([a, b]) for a, b in zip(mine, theirs, strict=True))
        return ProjectedConditions(audio=audio, gaze=gaze, pose=pose, cam=cam)


@dataclass(frozen=True)
class ChunkContext:
    """The 10 frames before a chunk: motion and projected conditions."""

    motion: Array  # (10, 32)
    conditions: ProjectedConditions  # 10 frames

    @staticmethod
    def zeros() -> ChunkContext:
        return ChunkContext(
            motion=np.zeros((PREV_FRAMES, MOTION_DIM), np.float32),
            conditions=ProjectedConditions.zeros(PREV_FRAMES),
        )

    def advanced(self, motion: Array, conditions: ProjectedConditions) -> ChunkContext:
        """The context after `motion` frames (with their conditions) were emitted."""
        if motion.shape[0] != conditions.frames:
            raise ValueError("motion and conditions must cover the same frames")
        joined_motion = np.concatenate([self.motion, motion])[-PREV_FRAMES:]
        joined = self.conditions.concat(conditions)
        total = joined.frames
        return ChunkContext(
            motion=np.ascontiguousarray(joined_motion),
            conditions=joined.slice(total - PREV_FRAMES, total),
        )


def align_condition(raw: Array | None, frames: int) -> Array | None:
    """Crop or zero-pad a raw per-frame condition to `frames` (the reference's alignment)."""
    if raw is None:
        return None
    raw = np.asarray(raw, np.float32)
    if raw.shape[0] >= frames:
        return raw[:frames]
    pad = np.zeros((frames - raw.shape[0], raw.shape[1]), np.float32)
    return np.concatenate([raw, pad])


def project_conditions(
    conditioner: ConditionerFn, audio_features: Array, raw: RawConditions
) -> ProjectedConditions:
    """Project (T, 768) audio features and the raw conditions into (T, 32) streams."""
    frames = int(audio_features.shape[0])
    if audio_features.shape != (frames, AUDIO_FEATURE_DIM):
        raise ValueError(
            f"audio features must be (T, {AUDIO_FEATURE_DIM}), got {audio_features.shape}"
        )
    gaze = align_condition(raw.gaze, frames)
    pose = align_condition(raw.pose, frames)
    cam = align_condition(raw.cam, frames)
    feeds = {
        "audio_features": audio_features[None],
        "gaze": (gaze if gaze is not None else np.zeros((frames, 2), np.float32))[None],
        "pose": (pose if pose is not None else np.zeros((frames, 3), np.float32))[None],
        "cam": (cam if cam is not None else np.zeros((frames, 3), np.float32))[None],
    }
    out = conditioner(feeds)
    zeros = np.zeros((frames, COND_DIM), np.float32)
    return ProjectedConditions(
        audio=np.asarray(out["audio_cond"][0], np.float32),
        gaze=np.asarray(out["gaze_cond"][0], np.float32) if gaze is not None else zeros,
        pose=np.asarray(out["pose_cond"][0], np.float32) if pose is not None else zeros,
        cam=np.asarray(out["cam_cond"][0], np.float32) if cam is not None else zeros,
    )


def velocity_feeds(
    *,
    t: float | np.float32,
    x: Array,
    ref_motion: Array,
    conditions: ProjectedConditions,
    context: ChunkContext,
    cfg_scale: float,
) -> dict[str, Array]:
    """One velocity evaluation's inputs (batch 1) by contract name."""
    prev = context.conditions
    return {
        "t": np.asarray([t], np.float32),
        "x": x[None],
        "prev_x": context.motion[None],
        "ref_x": np.asarray(ref_motion, np.float32).reshape(1, MOTION_DIM),
        "audio_cond": conditions.audio[None],
        "prev_audio_cond": prev.audio[None],
        "gaze_cond": conditions.gaze[None],
        "prev_gaze_cond": prev.gaze[None],
        "pose_cond": conditions.pose[None],
        "prev_pose_cond": prev.pose[None],
        "cam_cond": conditions.cam[None],
        "prev_cam_cond": prev.cam[None],
        "cfg_scale": np.asarray([cfg_scale], np.float32),
    }


def sample_chunk(
    velocity: VelocityFn,
    *,
    noise: Array,
    ref_motion: Array,
    conditions: ProjectedConditions,
    context: ChunkContext,
    cfg_scale: float,
    nfe: int,
) -> Array:
    """Integrate one full 50-frame chunk from `noise` to motion latents (50, 32)."""
    if conditions.frames != CLIP_FRAMES:
        raise ValueError(f"a chunk has {CLIP_FRAMES} frames, got {conditions.frames}")
    grid = time_grid(nfe)
    x = np.array(noise, dtype=np.float32, copy=True).reshape(CLIP_FRAMES, MOTION_DIM)
    for t0, t1 in itertools.pairwise(grid):
        feeds = velocity_feeds(
            t=t0,
            x=x,
            ref_motion=ref_motion,
            conditions=conditions,
            context=context,
            cfg_scale=cfg_scale,
        )
        v = np.asarray(velocity(feeds), np.float32).reshape(CLIP_FRAMES, MOTION_DIM)
        x = x + np.float32(t1 - t0) * v
    return x


def sample_motion(
    velocity: VelocityFn,
    conditioner: ConditionerFn,
    *,
    audio_features: Array,
    ref_motion: Array,
    raw_conditions: RawConditions,
    cfg_scale: float,
    nfe: int,
    noise: NoiseFn,
) -> Array:
    """The offline sampler: (T, 768) audio features -> (T, 32) motion latents."""
    frames = int(audio_features.shape[0])
    if frames == 0:
        return np.zeros((0, MOTION_DIM), np.float32)
    conditions = project_conditions(conditioner, audio_features, raw_conditions)
    context = ChunkContext.zeros()
    pieces: list[Array] = []
    for index in range(math.ceil(frames / CLIP_FRAMES)):
        start = index * CLIP_FRAMES
        chunk = conditions.slice(start, min(start + CLIP_FRAMES, frames))
        padded = chunk.padded_to(CLIP_FRAMES)
        motion = sample_chunk(
            velocity,
            noise=noise(index),
            ref_motion=ref_motion,
            conditions=padded,
            context=context,
            cfg_scale=cfg_scale,
            nfe=nfe,
        )
        pieces.append(motion[: chunk.frames])
        # A following chunk only exists after a full one, so its context is all real frames.
        context = context.advanced(motion, padded)
    return np.concatenate(pieces)
