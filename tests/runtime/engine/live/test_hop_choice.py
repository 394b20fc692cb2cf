"""Auto hop: the smallest hop whose measured compute fits 70 % of its duration, steady under
spikes, a slideshow when no hop is real time (pure numbers, no clock)."""

from __future__ import annotations

import math

import pytest

from runtime.engine.live.hop_choice import (
    HopChoiceConfig,
    HopChooser,
    describe_plan,
    picture_rate,
    smallest_hop,
)


def feed(chooser: HopChooser, fixed_s: float, render_per_frame_s: float, hops: int) -> None:
    for _ in range(hops):
        plan = chooser.plan
        frames = plan.hop if plan.real_time else 1
        chooser.observe(fixed_s=fixed_s, render_s=render_per_frame_s * frames, rendered=frames)


@pytest.mark.parametrize(
    ("fixed_ms", "render_ms", "hop"),
    [
        (1.0, 1.0, 1),  # stub graphs: hop 1 (40 ms) costs 2 ms
        (20.0, 5.0, 1),  # 25 ms <= 70 % of 40 ms
        (60.0, 10.0, 4),  # 3: 90 > 84 ms; 4: 100 <= 112 ms
        (150.0, 20.0, 19),  # 18: 510 > 504 ms; 19: 530 <= 532 ms
    ],
)
def test_smallest_hop_fits_seventy_percent(fixed_ms: float, render_ms: float, hop: int) -> None:
    got = smallest_hop(fixed_ms / 1e3, render_ms / 1e3, fps=25, budget=0.7, max_hop=48)
    cost = lambda h: (fixed_ms + render_ms * h) / 1e3  # noqa: E731
    assert got > 0
    assert cost(got) <= 0.7 * got / 25 + 1e-12
    assert got == 1 or cost(got - 1) > 0.7 * (got - 1) / 25
    assert got == hop


def test_no_hop_fits_when_rendering_alone_is_too_slow() -> None:
    assert smallest_hop(0.001, 0.03, fps=25, budget=0.7, max_hop=48) == 0  # 30 ms > 28 ms
    assert smallest_hop(0.001, 0.025, fps=30, budget=0.7, max_hop=48) == 0  # 6/5 frames each
    assert smallest_hop(2.0, 0.001, fps=25, budget=0.7, max_hop=48) == 0  # the chunk alone


def test_chooser_settles_and_ignores_a_lone_spike() -> None:
    chooser = HopChooser(fps=25, lookahead=2)
    assert chooser.plan.hop == 1 and not chooser.plan.measured
    feed(chooser, 0.060, 0.010, 10)
    settled = chooser.plan
    assert settled.measured and settled.real_time and settled.hop == 4
    chooser.observe(fixed_s=2.0, render_s=1.0, rendered=1)  # the machine hiccups once
    assert chooser.plan == settled


def test_chooser_goes_up_at_once_and_down_only_with_room() -> None:
    chooser = HopChooser(fps=25, lookahead=2)
    feed(chooser, 0.001, 0.001, 20)
    assert chooser.plan.hop == 1
    feed(chooser, 0.060, 0.010, 20)  # a game started: costs went up and stay up
    assert chooser.plan.hop == 4
    feed(chooser, 0.045, 0.010, 20)  # a little better: hop 3 fits 70 % but not 60 %
    assert (0.045 + 0.030) <= 0.7 * 3 / 25 and (0.045 + 0.030) > 0.6 * 3 / 25
    assert chooser.plan.hop == 4
    feed(chooser, 0.001, 0.001, 20)  # the game ended
    assert chooser.plan.hop == 1


def test_far_from_real_time_is_a_slideshow_that_says_so() -> None:
    chooser = HopChooser(fps=25, lookahead=2)
    feed(chooser, 2.0, 10.0, 5)  # CPU, full-size graphs: seconds per frame
    plan = chooser.plan
    assert not plan.real_time and plan.hop == 10  # the newest frame and the next context
    assert plan.picture_interval_s == pytest.approx(12.0)
    text = describe_plan(plan, auto=True)
    assert "not real time" in text and "1 new picture every 12 s" in text
    feed(chooser, 0.001, 0.001, 20)  # a GPU appeared
    assert chooser.plan.real_time and chooser.plan.hop == 1


def test_fixed_hop_reports_whether_it_is_real_time() -> None:
    chooser = HopChooser(fps=25, lookahead=2)
    assert chooser.fixed(5).real_time and not chooser.fixed(5).measured
    feed(chooser, 0.1, 0.12, 5)
    plan = chooser.fixed(5)
    assert plan.hop == 5 and not plan.real_time
    assert plan.picture_interval_s == pytest.approx(0.1 + 5 * 0.12)


def test_picture_rate_words() -> None:
    assert picture_rate(3.04) == "about 1 new picture every 3 s"
    assert picture_rate(0.125) == "about 8 new pictures per second"
    assert "not measured" in picture_rate(math.nan)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="budget"):
        HopChoiceConfig(budget=0.9, budget_up=0.8)


def test_a_bench_seeds_the_first_plan() -> None:
    """Figures measured before the session (the bench of these graphs) make the first plan:
    a slow machine is a slideshow from the first hop, announced with its picture rate, and the
    real hops then take over (the seed is three hops of the median window, no more)."""
    from runtime.engine.live.hop_choice import HopCompute

    chooser = HopChooser(fps=25, lookahead=2)
    assert not chooser.plan.measured
    slow = HopCompute(fixed_s=0.8, render_s=1.0, rendered=1, sampler_s=0.65, nfe=10)
    plan = chooser.seed(slow)
    assert plan.measured and not plan.real_time
    assert plan.picture_interval_s == pytest.approx(1.8)
    for _ in range(5):  # the machine is fast after all
        frames = chooser.plan.hop if chooser.plan.real_time else 1
        chooser.observe(
            fixed_s=0.002, render_s=0.001 * frames, rendered=frames, sampler_s=0.001, nfe=10
        )
    assert chooser.plan.real_time and chooser.plan.hop == 1
