"""Hop-by-hop motion generation for the live engine (inference worker thread).

Each hop samples one full 50-frame chunk with the shared sampler: its first frames carry the
real features of the frames being generated (plus the lookahead), the rest repeat the last real
frame, exactly as the reference pads a short final chunk; the 10 context frames are the last
10 emitted ones (zeros before the first hop, as for the reference's first chunk). The first
`emit` frames are kept. With hop 50 and no lookahead every hop is one reference chunk, so the
output equals the offline sampler's.

Each step times its sampler (the `nfe - 1` velocity evaluations) apart from the condition
projections, so Auto knows what one evaluation costs (`runtime.engine.live.hop_choice`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runtime.core.timing import Clock
from runtime.engine.motion_sampler import (
    ChunkContext,
    ConditionerFn,
    NoiseFn,
    ProjectedConditions,
    RawConditions,
    VelocityFn,
    project_conditions,
    sample_chunk,
)
from runtime.model.contract import CLIP_FRAMES

Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class HopMotion:
    motion: Array  # (emit, 32)
    conditions: ProjectedConditions  # the emitted frames' projected conditions
    sampler_s: float = 0.0  # seconds in the sampler (its nfe - 1 velocity evaluations)


class LiveGenerator:
    def __init__(
        self,
        *,
        velocity: VelocityFn,
        conditioner: ConditionerFn,
        noise: NoiseFn,
        clock: Clock = time.perf_counter,
    ) -> None:
        self._velocity = velocity
        self._clock = clock
        self._conditioner = conditioner
        self._noise = noise
        self._context = ChunkContext.zeros()
        self._chunks = 0

    def reset(self) -> None:
        """A new stream: zero context, noise counting from the first chunk again."""
        self._context = ChunkContext.zeros()
        self._chunks = 0

    @property
    def context(self) -> ChunkContext:
        return self._context

    def step(
        self,
        *,
        features: Array,
        raw: RawConditions,
        emit: int,
        ref_motion: Array,
        cfg_scale: float,
        nfe: int,
    ) -> HopMotion:
        """`features` (R, 768): the frames to emit and their lookahead, R <= 50."""
        real = int(features.shape[0])
        if not 0 < emit <= real <= CLIP_FRAMES:
            raise ValueError(f"need 0 < emit ({emit}) <= real frames ({real}) <= {CLIP_FRAMES}")
        conditions = project_conditions(self._conditioner, features, raw)
        t0 = self._clock()
        motion = sample_chunk(
            self._velocity,
            noise=self._noise(self._chunks),
            ref_motion=ref_motion,
            conditions=conditions.padded_to(CLIP_FRAMES),
            context=self._context,
            cfg_scale=cfg_scale,
            nfe=nfe,
        )
        sampler_s = self._clock() - t0
        self._chunks += 1
        emitted = conditions.slice(0, emit)
        out = np.ascontiguousarray(motion[:emit])
        self._context = self._context.advanced(out, emitted)
        return HopMotion(motion=out, conditions=emitted, sampler_s=sampler_s)
