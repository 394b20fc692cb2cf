"""Stub graphs that take virtual time (support/virtual_clock.py), with costs that change during a
session: a constant cost, recurring spikes, a slow drift, a stall of seconds. Any graph can be
slowed (audio encoder, velocity, renderer), alone or all at once; the wrapper records what each
run was given, so a test can check what work was done, not only how long it took."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.model.contract import SAMPLES_PER_FRAME
from runtime.model.execution.sessions import ModelSet
from tests.support.virtual_clock import VirtualClock

Profile = Callable[[float], float]
"""Seconds since the session started -> cost multiplier."""


def steady(_: float) -> float:
    return 1.0


def spikes(*, every_s: float, length_s: float, factor: float, start_s: float = 0.0) -> Profile:
    """`factor` times the cost for `length_s` out of every `every_s`."""

    def profile(t: float) -> float:
        return factor if t >= start_s and (t - start_s) % every_s < length_s else 1.0

    return profile


def drift(*, period_s: float, low: float, high: float) -> Profile:
    """A slow swing between `low` and `high` times the cost (a machine warming, throttling)."""

    def profile(t: float) -> float:
        return low + (high - low) * 0.5 * (1.0 - math.cos(2 * math.pi * t / period_s))

    return profile


def unit_of(name: str, inputs: Mapping[str, np.ndarray]) -> int:
    """What a run's cost scales with: frames of audio for the encoder, frames rendered for the
    renderer, one for any other graph."""
    if name == "audio_encoder":
        return int(inputs["audio"].shape[-1] // SAMPLES_PER_FRAME)
    if name == "renderer":
        return int(inputs["motion"].shape[0])
    return 1


@dataclass
class SlowGraph:
    """`inner` (a stub session) taking `per_unit_s * profile(t) * unit_of(inputs)` of virtual
    time per run, plus `stall_s` once, on the first run at or after `stall_at_s`."""

    inner: Any
    name: str
    clock: VirtualClock
    per_unit_s: float
    profile: Profile = steady
    t0: float = 0.0
    stall_at_s: float = math.inf
    stall_s: float = 0.0

    def __post_init__(self) -> None:
        self.providers = self.inner.providers
        self.units: list[int] = []  # per run, what its cost scaled with
        self._stalled = False

    def run(self, inputs: Mapping[str, np.ndarray], *, run_options: Any = None) -> Any:
        out = self.inner.run(inputs, run_options=run_options)
        t = self.clock() - self.t0
        units = unit_of(self.name, inputs)
        self.units.append(units)
        cost = self.per_unit_s * self.profile(t) * units
        if not self._stalled and t >= self.stall_at_s:
            self._stalled = True
            cost += self.stall_s
        end = self.clock() + cost
        while self.clock() < end:  # as ORT does, a run ends early when terminated
            if run_options is not None and run_options.terminate:
                raise RuntimeError("terminated")
            self.clock.sleep(min(0.01, end - self.clock()))
        return out


def slowed(models: ModelSet, graphs: Mapping[str, SlowGraph]) -> ModelSet:
    """`models` with some sessions replaced by their slow wrappers."""
    return ModelSet(sessions={**models.sessions, **graphs}, version=models.version)  # type: ignore[dict-item]
