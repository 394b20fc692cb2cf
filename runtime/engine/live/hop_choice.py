"""Automatic hop size ("Auto"): the smallest hop whose measured compute fits the time it covers
(inference worker thread; plain numbers, no clock).

A hop costs a fixed part (audio features + one sampler chunk, whatever the hop) plus a part per
rendered frame. The fixed part is `A + (nfe - 1) * E`: `A` the audio features and condition
projections, `E` one velocity evaluation of the sampler's `nfe - 1`. With `F` the fixed part and
`R` the render time per frame at the output rate, hop `h` (frames at 25 fps) takes
`F + R * h * fps / 25` seconds of compute for `h / 25` seconds of media. The chooser keeps `A`,
`E` and `R` as medians over the last hops (a lone slow hop, the machine briefly busy, does not
move the choice; a lasting change does) and picks the smallest `h` whose compute fits in
`budget` (70 %) of its duration. When no hop fits (the renderer alone is slower than real time,
or the fixed part needs more than a whole chunk) the engine cannot be real time: each step then
makes the motion of the newest frames only (the one it renders and the motion context the next
chunk needs, `SLIDESHOW_FRAMES`) and renders the newest, one picture every `F + R` seconds.

Hysteresis keeps it from flapping: it moves to a smaller hop only when that hop also fits in
`budget_down` (60 %), and leaves the current hop only when it no longer fits in `budget_up`
(85 %).

Fewer Euler steps, only when the user allows it (`min_nfe`; fewer steps change the motion): when
no hop fits at the user's step count, Auto uses the most steps (down to the permitted minimum,
never below 2) at which some hop fits, before it falls back to a slideshow (which then uses the
minimum: its pictures come soonest). It goes back up toward the user's count, before it lowers
the hop, when a hop fits the higher count in `budget_down`. An explicit hop with permission
uses the most steps at which that hop fits, with the same hysteresis. Without permission the
user's steps are never changed.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, replace

from runtime.model.contract import CLIP_FRAMES, FPS, PREV_FRAMES

INITIAL_HOP = 1
"""Auto's hop before anything has been measured: the lowest latency. Starting higher would
raise the pacer's playout delay for its first seconds, and bringing it down again later costs a
dropped frame per period."""


@dataclass(frozen=True, kw_only=True)
class HopCompute:
    """What one hop cost: the fixed part (features + motion), rendering, frames rendered; and
    of the fixed part, the sampler's `nfe - 1` velocity evaluations."""

    fixed_s: float
    render_s: float
    rendered: int
    sampler_s: float
    nfe: int


@dataclass(frozen=True, kw_only=True)
class HopPlan:
    hop: int
    """Frames (at 25 fps) per step; in a slideshow, the motion frames one step makes: the newest
    frame and the ones before it that the next chunk takes as its motion context."""
    real_time: bool
    """False: render the newest frame only, one picture every `picture_interval_s`."""
    picture_interval_s: float
    """Expected seconds between new pictures' steps (nan until measured)."""
    measured: bool
    nfe: int
    """The sampler's time-grid points in use (nfe - 1 velocity evaluations per chunk): the
    user's, or fewer where they allowed it and the machine needs it."""
    slideshow: bool = False
    """Auto and not real time: each step renders only its newest frame."""


SLIDESHOW_FRAMES = PREV_FRAMES
"""Motion frames a slideshow step makes: its one rendered frame and the frames before it that
the next chunk takes as context. More would cost audio features for motion nobody sees (the
sampler's chunk costs the same either way)."""


@dataclass(frozen=True, kw_only=True)
class Step:
    hop: int
    """Frames of motion this step makes."""
    skipped: int
    """Frames of audio skipped (no motion) just before it."""


def next_step(span: int, plan: HopPlan, *, ended: bool = False, lookahead: int = 0) -> Step | None:
    """What the worker does with `span` frames ready (audio and lookahead in, not yet made):
    None to wait for more (or, once the input has `ended`, when nothing is left). Two hops behind
    (or 160 ms, so that a hiccup at hop 1 is caught up, not skipped) it skips to the newest audio
    in whole hops, leaving less than a hop; a slideshow makes only the newest frames
    (`SLIDESHOW_FRAMES`). The end of the input is no exception: it gets one last step, of the
    newest frames (a hop and the `lookahead` frames that no longer need audio after them; in a
    slideshow, its hop), and anything older is skipped, not worked through hop after hop. The
    same holds in quality mode (hop 50), so no pattern of compute lets a backlog of old audio
    build up anywhere."""
    if span <= 0:
        return None
    if ended:
        hop = min(span, plan.hop if plan.slideshow else plan.hop + lookahead)
        return Step(hop=hop, skipped=span - hop)
    if span < (1 if plan.slideshow else plan.hop):
        return None
    if plan.slideshow:
        hop = min(span, plan.hop)
        return Step(hop=hop, skipped=span - hop)
    behind = span - plan.hop
    skip = behind >= max(2 * plan.hop, 4)
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
        self,
        *,
        fps: float,
        lookahead: int,
        config: HopChoiceConfig | None = None,
        nfe: int = 10,
        min_nfe: int | None = None,
    ) -> None:
        self.config = config if config is not None else HopChoiceConfig()
        self.fps = fps
        self.max_hop = CLIP_FRAMES - lookahead
        self._base = math.nan
        self._eval = 0.0
        self._render = math.nan
        self._base_seen: deque[float] = deque(maxlen=self.config.window_hops)
        self._eval_seen: deque[float] = deque(maxlen=self.config.window_hops)
        self._render_seen: deque[float] = deque(maxlen=self.config.window_hops)
        self._seen = 0
        self._nfe, self._floor = nfe, steps_floor(nfe, min_nfe)
        self._plan = HopPlan(
            hop=min(INITIAL_HOP, self.max_hop),
            real_time=True,
            picture_interval_s=math.nan,
            measured=False,
            nfe=nfe,
        )
        self._explicit: HopPlan | None = None

    @property
    def plan(self) -> HopPlan:
        return self._plan

    @property
    def fixed_s(self) -> float:
        """The fixed part at the step count in use."""
        return self._fixed(self._plan.nfe)

    @property
    def evaluation_s(self) -> float:
        """One velocity evaluation (0 until a sampler time has been observed)."""
        return self._eval

    @property
    def render_per_frame_s(self) -> float:
        return self._render

    def observe(
        self,
        *,
        fixed_s: float,
        render_s: float,
        rendered: int,
        sampler_s: float = 0.0,
        nfe: int = 2,
    ) -> HopPlan:
        """One hop's measured compute: fixed part, render time and frames rendered; and of
        the fixed part, `sampler_s` spent in the sampler's `nfe - 1` velocity evaluations."""
        self._seen += 1
        if rendered > 0:
            self._render_seen.append(render_s / rendered)
            self._render = statistics.median(self._render_seen)
        self._base_seen.append(max(fixed_s - sampler_s, 0.0))
        self._base = statistics.median(self._base_seen)
        if sampler_s > 0 and nfe > 1:
            self._eval_seen.append(sampler_s / (nfe - 1))
            self._eval = statistics.median(self._eval_seen)
        if self._warm():
            self._plan = self._choose()
        return self._plan

    def seed(self, cost: HopCompute) -> HopPlan:
        """Start from costs measured before the session (`imtalker-cam bench` on these graphs)
        as if the warm-up hops had cost that: the first plan is then already the right one (a
        slideshow at once on a slow machine, announced as such), and real hops replace the
        figures as they come (medians over the last `window_hops`)."""
        for _ in range(self.config.warmup_hops):
            self.observe_hop(cost)
        return self._plan

    def observe_hop(self, cost: HopCompute) -> HopPlan:
        """`observe` with what `HopRunner.run` measured."""
        return self.observe(
            fixed_s=cost.fixed_s,
            render_s=cost.render_s,
            rendered=cost.rendered,
            sampler_s=cost.sampler_s,
            nfe=cost.nfe,
        )

    def _warm(self) -> bool:
        return self._seen >= self.config.warmup_hops and not math.isnan(self._render)

    def _fixed(self, nfe: int) -> float:
        return self._base + (nfe - 1) * self._eval

    def _cost(self, hop: int, nfe: int) -> float:
        return self._fixed(nfe) + self._render * hop * self.fps / FPS

    def _fits(self, hop: int, nfe: int, budget: float) -> bool:
        return self._cost(hop, nfe) <= budget * hop / FPS

    def _smallest(self, nfe: int, budget: float) -> int:
        return smallest_hop(
            self._fixed(nfe), self._render, fps=self.fps, budget=budget, max_hop=self.max_hop
        )

    def _best(self, budget: float, *, above: int = 0) -> tuple[int, int] | None:
        """(hop, nfe): the most steps (over `above`, from the permitted range) at which a hop
        fits `budget`, with the smallest such hop; None if none does."""
        for nfe in range(self._nfe, max(self._floor, above + 1) - 1, -1):
            hop = self._smallest(nfe, budget)
            if hop > 0:
                return hop, nfe
        return None

    def _choose(self) -> HopPlan:
        cfg, cur = self.config, self._plan
        in_range = self._floor <= cur.nfe <= self._nfe
        if cur.real_time and cur.measured and in_range:
            if not self._fits(cur.hop, cur.nfe, cfg.budget_up):
                pick = self._best(cfg.budget)
            else:  # room: first back toward the user's steps, then a smaller hop
                pick = self._best(cfg.budget_down, above=cur.nfe)
                if pick is None:
                    down = self._smallest(cur.nfe, cfg.budget_down)
                    pick = (down if 0 < down < cur.hop else cur.hop), cur.nfe
        elif cur.measured and not cur.real_time and in_range:
            pick = self._best(cfg.budget_down)  # a slideshow: back only with room to spare
        else:  # first measurement, or the user changed their steps
            pick = self._best(cfg.budget)
        if pick is None:
            nfe = self._floor
            return HopPlan(
                hop=min(SLIDESHOW_FRAMES, self.max_hop),
                real_time=False,
                picture_interval_s=self._fixed(nfe) + self._render,
                measured=True,
                nfe=nfe,
            )
        hop, nfe = pick
        return HopPlan(
            hop=hop, real_time=True, picture_interval_s=self._cost(hop, nfe), measured=True, nfe=nfe
        )

    def set_steps(self, nfe: int, min_nfe: int | None) -> None:
        """The user's steps and the fewest they allow (None: never fewer); a change is
        taken at once when something has been measured."""
        floor = steps_floor(nfe, min_nfe)
        if (nfe, floor) == (self._nfe, self._floor):
            return
        self._nfe, self._floor = nfe, floor
        if self._warm() and self._plan.measured:
            self._plan = self._choose()
        else:
            self._plan = replace(self._plan, nfe=nfe)

    def current(
        self, hop: int | None, *, quality: bool, nfe: int, min_nfe: int | None = None
    ) -> HopPlan:
        """The plan for the user's choice: quality's hop, their own hop, or Auto's; with
        their steps, or fewer where `min_nfe` allows (never in quality mode)."""
        if quality:
            nan = math.nan
            return HopPlan(
                hop=CLIP_FRAMES, real_time=True, picture_interval_s=nan, measured=False, nfe=nfe
            )
        self.set_steps(nfe, min_nfe)
        if hop is not None:
            return self.fixed(hop)
        plan = self._plan
        return replace(plan, slideshow=not plan.real_time)

    def fixed(self, hop: int) -> HopPlan:
        """The user's own hop, with whether the measured compute keeps it real time; with
        permission, at the most steps at which it fits (with hysteresis)."""
        if not self._plan.measured:
            return HopPlan(
                hop=hop, real_time=True, picture_interval_s=math.nan, measured=False, nfe=self._nfe
            )
        cfg, prev = self.config, self._explicit
        steps = range(self._nfe, self._floor - 1, -1)
        if prev is not None and prev.hop == hop and self._floor <= prev.nfe <= self._nfe:
            if self._fits(hop, prev.nfe, cfg.budget_up):
                up = [n for n in steps if n > prev.nfe and self._fits(hop, n, cfg.budget_down)]
                nfe = up[0] if up else prev.nfe
            else:
                nfe = next((n for n in steps if self._fits(hop, n, cfg.budget)), self._floor)
        else:
            nfe = next((n for n in steps if self._fits(hop, n, cfg.budget)), self._floor)
        cost = self._cost(hop, nfe)
        plan = HopPlan(
            hop=hop, real_time=cost <= hop / FPS, picture_interval_s=cost, measured=True, nfe=nfe
        )
        self._explicit = plan
        return plan


def steps_floor(nfe: int, min_nfe: int | None) -> int:
    """The fewest steps a plan may use: the user's own without permission, else their
    minimum (never below 2, never above their steps)."""
    if min_nfe is None:
        return nfe
    return max(2, min(min_nfe, nfe))


def describe_plan(plan: HopPlan, *, auto: bool, nfe: int | None = None) -> str:
    """One line for logs and events: the hop in use, or what a slideshow gives; and the steps
    in use when fewer than the user's `nfe`."""
    steps = f", nfe {plan.nfe} of {nfe}" if nfe is not None and plan.nfe < nfe else ""
    if not plan.real_time:
        return f"not real time on this machine: {picture_rate(plan.picture_interval_s)}{steps}"
    ms = plan.hop * 1000 // FPS
    return f"hop {plan.hop} ({ms} ms){' (auto)' if auto else ''}{steps}"


def picture_rate(interval_s: float) -> str:
    """'about 1 new picture every 3 s' / 'about 8 new pictures per second'."""
    if not math.isfinite(interval_s) or interval_s <= 0:
        return "new pictures as fast as it can (not measured yet)"
    if interval_s >= 1.0:
        return f"about 1 new picture every {interval_s:.2g} s"
    return f"about {1.0 / interval_s:.2g} new pictures per second"
