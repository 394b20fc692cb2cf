"""Auto's fewer Euler steps (issue 12): only with the user's permission, never below their
minimum or 2, back up toward their steps with hysteresis, explicit steps untouched without
permission (pure numbers: the costs are given, no clock)."""

from __future__ import annotations

import pytest

from runtime.engine.live.hop_choice import HopChooser, describe_plan
from runtime.engine.live.types import LiveControls

AUDIO_S = 0.05  # features + projections per hop
RENDER_S = 0.001  # per rendered frame


def feed(
    chooser: HopChooser,
    eval_s: float,
    hops: int,
    *,
    hop: int | None = None,
    nfe: int = 10,
    min_nfe: int | None = None,
) -> None:
    """`hops` hops at the plan's own hop and steps, each velocity evaluation `eval_s`."""
    for _ in range(hops):
        plan = chooser.current(hop, quality=False, nfe=nfe, min_nfe=min_nfe)
        frames = plan.hop if plan.real_time or hop is not None else 1
        sampler = (plan.nfe - 1) * eval_s
        chooser.observe(
            fixed_s=AUDIO_S + sampler,
            render_s=RENDER_S * frames,
            rendered=frames,
            sampler_s=sampler,
            nfe=plan.nfe,
        )


def test_without_permission_the_steps_stay_and_it_is_a_slideshow() -> None:
    # nfe 10: 0.05 + 9 * 0.2 = 1.85 s per chunk; no hop up to 48 (1.92 s) fits 70 %.
    chooser = HopChooser(fps=25, lookahead=2)
    feed(chooser, 0.2, 10)
    plan = chooser.current(None, quality=False, nfe=10)
    assert plan.nfe == 10 and not plan.real_time and plan.slideshow
    assert plan.picture_interval_s == pytest.approx(AUDIO_S + 9 * 0.2 + RENDER_S)


def test_with_permission_it_uses_the_most_steps_that_keep_real_time() -> None:
    chooser = HopChooser(fps=25, lookahead=2)
    feed(chooser, 0.2, 10, min_nfe=5)
    plan = chooser.current(None, quality=False, nfe=10, min_nfe=5)
    # nfe 7: 1.25 s fixed, hop 47 costs 1.297 <= 0.7 * 1.88 s; nfe 8 (1.45 s) fits no hop.
    assert plan.real_time and not plan.slideshow
    assert (plan.hop, plan.nfe) == (47, 7)
    assert describe_plan(plan, auto=True, nfe=10) == "hop 47 (1880 ms) (auto), nfe 7 of 10"
    assert describe_plan(plan, auto=True, nfe=7) == "hop 47 (1880 ms) (auto)"


def test_the_floor_is_respected_before_the_slideshow() -> None:
    chooser = HopChooser(fps=25, lookahead=2)
    feed(chooser, 0.2, 10, min_nfe=8)  # nfe 8..10 fit no hop: a slideshow at the floor
    plan = chooser.current(None, quality=False, nfe=10, min_nfe=8)
    assert not plan.real_time and plan.nfe == 8
    assert plan.picture_interval_s == pytest.approx(AUDIO_S + 7 * 0.2 + RENDER_S)
    assert "nfe 8 of 10" in describe_plan(plan, auto=True, nfe=10)
    feed(chooser, 10.0, 10, min_nfe=1 + 1)  # nothing fits at all: never below 2
    plan = chooser.current(None, quality=False, nfe=10, min_nfe=2)
    assert not plan.real_time and plan.nfe == 2
    # A minimum above the user's steps allows nothing.
    feed(chooser, 0.2, 10, nfe=6, min_nfe=8)
    assert chooser.current(None, quality=False, nfe=6, min_nfe=8).nfe == 6


def test_steps_go_back_up_with_hysteresis() -> None:
    chooser = HopChooser(fps=25, lookahead=2)
    feed(chooser, 0.2, 10, min_nfe=5)
    assert chooser.plan.nfe == 7
    # 0.125 s: nfe 10 (1.175 s) fits hop 44 in 70 % but no hop in 60 %; nfe 9 (1.05 s) fits
    # hop 46 in 60 %: up to 9, not 10.
    feed(chooser, 0.125, 20, min_nfe=5)
    assert (chooser.plan.hop, chooser.plan.nfe) == (46, 9)
    feed(chooser, 0.125, 20, min_nfe=5)  # steady: no flapping
    assert chooser.plan.nfe == 9
    feed(chooser, 0.1, 20, min_nfe=5)  # room at the user's steps: back to them
    assert chooser.plan.nfe == 10 and chooser.plan.real_time
    # Fast again: the hop falls to the smallest that fits 60 % (0.059 s fixed: hop 3).
    feed(chooser, 0.001, 20, min_nfe=5)
    assert (chooser.plan.hop, chooser.plan.nfe) == (3, 10)


def test_steps_fall_only_when_no_hop_fits_the_users_steps() -> None:
    chooser = HopChooser(fps=25, lookahead=2)
    feed(chooser, 0.05, 10, min_nfe=2)  # 0.5 s fixed: hop 19 keeps nfe 10 real time
    assert (chooser.plan.hop, chooser.plan.nfe) == (19, 10)


def test_taking_permission_back_restores_the_steps_at_once() -> None:
    chooser = HopChooser(fps=25, lookahead=2)
    feed(chooser, 0.2, 10, min_nfe=5)
    assert chooser.current(None, quality=False, nfe=10, min_nfe=5).nfe == 7
    plan = chooser.current(None, quality=False, nfe=10, min_nfe=None)
    assert plan.nfe == 10 and not plan.real_time


def test_explicit_hop_keeps_explicit_steps_without_permission() -> None:
    chooser = HopChooser(fps=25, lookahead=2)
    feed(chooser, 0.05, 10, hop=10)
    plan = chooser.current(10, quality=False, nfe=10)
    assert plan.hop == 10 and plan.nfe == 10 and not plan.real_time  # 0.51 s > 0.4 s


def test_explicit_hop_with_permission_lowers_the_steps_so_it_fits() -> None:
    chooser = HopChooser(fps=25, lookahead=2)
    feed(chooser, 0.05, 10, hop=10, min_nfe=2)
    plan = chooser.current(10, quality=False, nfe=10, min_nfe=2)
    # 0.05 + (n - 1) * 0.05 + 0.01 <= 0.7 * 0.4 s: n = 5.
    assert (plan.hop, plan.nfe, plan.real_time) == (10, 5, True)
    # Hysteresis: 0.04 s per evaluation fits nfe 6 in 70 % (0.26 s) but not in 60 % (0.24 s):
    # a fresh choice would take 6, the chooser stays at 5.
    feed(chooser, 0.04, 20, hop=10, min_nfe=2)
    assert chooser.current(10, quality=False, nfe=10, min_nfe=2).nfe == 5
    feed(chooser, 0.015, 20, hop=10, min_nfe=2)  # 0.06 + 9 * 0.015 <= 0.24 s: all of them
    assert chooser.current(10, quality=False, nfe=10, min_nfe=2).nfe == 10


def test_quality_mode_never_lowers_the_steps() -> None:
    chooser = HopChooser(fps=25, lookahead=0)
    feed(chooser, 0.2, 10, min_nfe=2)
    assert chooser.current(None, quality=True, nfe=10, min_nfe=2).nfe == 10


def test_controls_check_the_minimum() -> None:
    assert LiveControls(min_nfe=None).min_nfe is None
    assert LiveControls(nfe=4, min_nfe=5).min_nfe == 5  # allows nothing, not an error
    with pytest.raises(ValueError, match="min_nfe must be at least 2"):
        LiveControls(min_nfe=1)
