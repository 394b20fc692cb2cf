"""The audio worker's plan per hop: what Auto (`runtime.engine.live.hop_choice`) makes of the user's
controls and the measured compute, announced when it changes (inference worker thread; `plan`
is read by `LiveEngine.stats` on any thread: one attribute, replaced whole).
"""

from __future__ import annotations

import math

from runtime.engine.live.hop_choice import HopChooser, HopCompute, HopPlan, describe_plan
from runtime.engine.live.types import Emit, EventKind, LiveControls
from runtime.model.contract import CLIP_FRAMES


class HopPlanner:
    def __init__(
        self,
        *,
        fps: int,
        lookahead: int,
        quality: bool,
        controls: LiveControls,
        emit: Emit,
        expected: HopCompute | None = None,
    ) -> None:
        """`expected`: a hop's compute measured before the session (the bench), to plan the
        first hops with (`HopChooser.seed`)."""
        self._quality = quality
        self._emit = emit
        self._chooser = HopChooser(
            fps=fps, lookahead=lookahead, nfe=controls.nfe, min_nfe=controls.min_nfe
        )
        self.plan = HopPlan(
            hop=CLIP_FRAMES if quality else (controls.hop or 0),
            real_time=True,
            picture_interval_s=math.nan,
            measured=False,
            nfe=controls.nfe,
        )
        if expected is not None and not quality:
            self._chooser.seed(expected)
            self.plan_for(controls)  # known (and said) before the first hop

    def plan_for(self, controls: LiveControls) -> HopPlan:
        """The hop and steps to use now (an "hop" event when they change)."""
        plan = self._chooser.current(
            controls.hop, quality=self._quality, nfe=controls.nfe, min_nfe=controls.min_nfe
        )
        before, self.plan = self.plan, plan
        now, was = (plan.hop, plan.real_time, plan.nfe), (before.hop, before.real_time, before.nfe)
        if plan.measured and now != was:
            words = describe_plan(plan, auto=controls.hop is None, nfe=controls.nfe)
            self._emit(EventKind.HOP, words, plan)
        return plan

    def observe(self, cost: HopCompute) -> None:
        self._chooser.observe_hop(cost)
