"""Automatic hop size ("Auto"): the smallest hop whose measured compute fits the time it covers
(inference worker thread; plain numbers, no clock).

A hop costs a fixed part (audio features + one sampler chunk, whatever the hop) plus a part per
rendered frame. With `F` the fixed part and `R` the render time per frame at the output rate,
hop `h` (frames at 25 fps) takes `F + R * h * fps / 25` seconds of compute for `h / 25` seconds
of media. The chooser keeps `F` and `R` as medians over the last hops (a lone slow hop, the
machine briefly busy, does not move the choice; a lasting change does) and picks the smallest
`h` whose compute fits in `budget` (70 %) of its duration. When no hop fits (the renderer alone
is slower than real time, or the fixed part needs more than a whole chunk) the engine cannot be
real time: it
then makes the motion of everything since the last picture (so the motion context stays
continuous) but renders only the newest frame, one picture every `F + R` seconds.

Hysteresis keeps it from flapping: it moves to a smaller hop only when that hop also fits in
`budget_down` (60 %), and leaves the current hop only when it no longer fits in `budget_up`
(85 %).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, replace

from runtime.model.contract import CLIP_FRAMES, FPS

INITIAL_HOP = 1
"""Auto's hop before anything has been measured: the lowest latency. Starting higher would
raise the pacer's playout delay for its first seconds, and bringing it down again later costs a
dropped frame per period."""


@dataclass(frozen=True, kw_only=True)
class HopPlan:
    hop: int
    """Frames (at 25 fps) per step; in a slideshow, the most motion frames one step makes."""
    real_time: bool
    """False: render the newest frame only, one picture every `picture_interval_s`."""
    picture_interval_s: float
    """Expected seconds between new pictures' steps (nan until measured)."""
    measured: bool
    slideshow: bool = False
    """Auto and not real time: each step renders only its newest frame."""


@dataclass(frozen=True, kw_only=True)
class Step:
    hop: int
    """Frames of motion this step makes."""
    skipped: int
    """Frames of audio skipped (no motion) just before it."""


def next_step(span: int, plan: HopPlan, *, quality: bool) -> Step | None:
    """What the worker does with `span` frames ready (audio and lookahead in, not yet made):
    None to wait for more. Two hops behind (or 160 ms, so that a hiccup at hop 1 is caught up,
    not skipped) it skips to the newest audio in whole hops, leaving less than a hop; a
    slideshow makes the motion of everything since its last picture (up to a chunk)."""
    if span < (1 if plan.slideshow else plan.hop):
        return None
    if plan.slideshow:
        hop = min(span, plan.hop)
        return Step(hop=hop, skipped=span - hop)
    behind = span - plan.hop
    skip = not quality and behind >= max(2 * plan.hop, 4)
    return Step(hop=plan.hop, skipped=behind // plan.hop * plan.hop if skip else 0)


@dataclass(frozen=True, kw_only=True)
class HopChoiceConfig:
    budget: float = 0.7
    budget_down: float = 0.6
    budget_up: float = 0.85
    window_hops: int = 16
    """Hops whose median costs decide."""
    warmup_hops: int = 3
    """Hops measured before the first choice (the first runs of a graph are slow)."""

    def __post_init__(self) -> None:
        if not 0 < self.budget_down <= self.budget <= self.budget_up:
            raise ValueError("need 0 < budget_down <= budget <= budget_up")
        if self.window_hops < 1:
            raise ValueError("window_hops must be at least 1")


def smallest_hop(
    fixed_s: float, render_s: float, *, fps: float, budget: float, max_hop: int
) -> int:
    """The smallest hop (1..max_hop) whose compute fits `budget` of its duration; 0 if none."""
    per_frame_budget = budget / FPS - render_s * fps / FPS
    if per_frame_budget <= 0:
        return 0
    hop = max(1, math.ceil(fixed_s / per_frame_budget - 1e-9))
    return hop if hop <= max_hop else 0


class HopChooser:
    def __init__(
        self, *, fps: float, lookahead: int, config: HopChoiceConfig | None = None
    ) -> None:
        self.config = config if config is not None else HopChoiceConfig()
        self.fps = fps
        self.max_hop = CLIP_FRAMES - lookahead
        self._fixed = math.nan
        self._render = math.nan
        self._fixed_seen: deque[float] = deque(maxlen=self.config.window_hops)
        self._render_seen: deque[float] = deque(maxlen=self.config.window_hops)
        self._seen = 0
        self._plan = HopPlan(
            hop=min(INITIAL_HOP, self.max_hop),
            real_time=True,
            picture_interval_s=math.nan,
            measured=False,
        )

    @property
    def plan(self) -> HopPlan:
        return self._plan

    @property
    def fixed_s(self) -> float:
        return self._fixed

    @property
    def render_per_frame_s(self) -> float:
        return self._render

    def observe(self, *, fixed_s: float, render_s: float, rendered: int) -> HopPlan:
        """One hop's measured compute: fixed part, render time and frames rendered."""
        self._seen += 1
        if rendered > 0:
            self._render_seen.append(render_s / rendered)
            self._render = statistics.median(self._render_seen)
        self._fixed_seen.append(fixed_s)
        self._fixed = statistics.median(self._fixed_seen)
        if self._seen >= self.config.warmup_hops and not math.isnan(self._render):
            self._plan = self._choose()
        return self._plan

    def _cost(self, hop: int) -> float:
        return self._fixed + self._render * hop * self.fps / FPS

    def _fits(self, hop: int, budget: float) -> bool:
        return self._cost(hop) <= budget * hop / FPS

    def _choose(self) -> HopPlan:
        cfg, cur = self.config, self._plan

        def smallest(budget: float) -> int:
            return smallest_hop(
                self._fixed, self._render, fps=self.fps, budget=budget, max_hop=self.max_hop
            )

        hop = cur.hop
        if cur.real_time and cur.measured:
            if not self._fits(cur.hop, cfg.budget_up):
                hop = smallest(cfg.budget)
            else:
                down = smallest(cfg.budget_down)
                hop = down if 0 < down < cur.hop else cur.hop
        elif not cur.measured:
            hop = smallest(cfg.budget)
        else:  # a slideshow: back to real time only with room to spare
            hop = smallest(cfg.budget_down)
        if hop == 0:
            return HopPlan(
                hop=self.max_hop,
                real_time=False,
                picture_interval_s=self._fixed + self._render,
                measured=True,
            )
        return HopPlan(hop=hop, real_time=True, picture_interval_s=self._cost(hop), measured=True)

    def current(self, hop: int | None, *, quality: bool) -> HopPlan:
        """The plan for the user's choice: quality's hop, their own hop, or Auto's."""
        if quality:
            return HopPlan(
                hop=CLIP_FRAMES, real_time=True, picture_interval_s=math.nan, measured=False
            )
        if hop is not None:
            return self.fixed(hop)
        plan = self._plan
        return replace(plan, slideshow=not plan.real_time)

    def fixed(self, hop: int) -> HopPlan:
        """The user's own hop, with whether the measured compute keeps it real time."""
        if not self._plan.measured:
            return HopPlan(hop=hop, real_time=True, picture_interval_s=math.nan, measured=False)
        cost = self._cost(hop)
        return HopPlan(hop=hop, real_time=cost <= hop / FPS, picture_interval_s=cost, measured=True)


def describe_plan(plan: HopPlan, *, auto: bool) -> str:
    """One line for logs and events: the hop in use, or what a slideshow gives."""
    if not plan.real_time:
        return f"not real time on this machine: {picture_rate(plan.picture_interval_s)}"
    ms = plan.hop * 1000 // FPS
    return f"hop {plan.hop} ({ms} ms){' (auto)' if auto else ''}"


def picture_rate(interval_s: float) -> str:
    """'about 1 new picture every 3 s' / 'about 8 new pictures per second'."""
    if not math.isfinite(interval_s) or interval_s <= 0:
        return "new pictures as fast as it can (not measured yet)"
    if interval_s >= 1.0:
        return f"about 1 new picture every {interval_s:.2g} s"
    return f"about {1.0 / interval_s:.2g} new pictures per second"
