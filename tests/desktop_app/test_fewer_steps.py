"""The app's "Fewer steps if behind" (issue 12): the checkbox next to Steps
reaches the engine's controls through the settings/controls path, live; it is kept with the
other quality options; the live status says when the engine uses fewer steps.

The real window, runtime engine and sinks with hardware fakes and stub graphs.
"""

from __future__ import annotations

import time

from pytestqt.qtbot import QtBot

from desktop_app.live_bridge import LiveState
from desktop_app.runtime_services.live import controls_for, lowered_steps
from desktop_app.services import LiveStats
from desktop_app.settings import Pose, Quality
from runtime.engine.live.engine import DEFAULT_MIN_NFE
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)
from tests.support.gui_window import Hops, WindowFactory


def test_the_checkbox_reaches_the_engine_and_is_kept(
    qtbot: QtBot, make_window: WindowFactory, hops: Hops
) -> None:
    first = make_window()
    box = first.controls.fewer_steps
    assert not box.isChecked()  # off by default: fewer steps change the motion
    first.live.go_live()
    qtbot.waitUntil(lambda: first.bridge.state == LiveState.LIVE, timeout=20_000)
    qtbot.waitUntil(lambda: len(hops.since(0)) >= 2, timeout=10_000)
    assert all(h.controls.min_nfe is None for h in hops.since(0))

    changed = time.perf_counter()
    box.setChecked(True)  # while live: from the next hop
    qtbot.waitUntil(lambda: len(hops.since(changed)) >= 2, timeout=10_000)
    after = hops.since(changed)[-1]
    assert after.controls.min_nfe == DEFAULT_MIN_NFE and after.controls.nfe == 10
    assert after.nfe == 10  # stub graphs keep up: nothing lowered
    assert first.settings.quality.fewer_steps
    first.bridge.stop()
    qtbot.waitUntil(lambda: first.bridge.state == LiveState.IDLE, timeout=10_000)
    first.close()

    saved, _ = first.prefs.store.load()
    assert saved.quality.fewer_steps
    second = make_window()
    assert second.controls.fewer_steps.isChecked()


def test_the_live_status_says_when_steps_are_lowered(make_window: WindowFactory) -> None:
    window = make_window()
    stats = LiveStats(fps=25.0, latency_ms=900.0, provider="CPU", realtime=True, audio_level=None)
    window.live.show_stats(stats)
    assert "steps" not in window.provider_status.text()
    assert "steps" not in window.preview.overlay_text()
    window.live.show_stats(LiveStats(**{**stats.__dict__, "steps": (4, 9)}))
    assert window.provider_status.text().endswith(" · 4 of 9 steps")
    assert window.preview.overlay_text().endswith("  ·  4 of 9 steps")


def test_the_settings_map_to_the_engines_controls() -> None:
    assert controls_for(Pose(), Quality()).min_nfe is None
    allowed = controls_for(Pose(), Quality(steps=9, fewer_steps=True))
    assert (allowed.nfe, allowed.min_nfe) == (10, DEFAULT_MIN_NFE)
    # The engine's time-grid points as the app's Euler steps (one fewer), only when lowered.
    assert lowered_steps(7, 10) == (6, 9)
    assert lowered_steps(10, 10) is None and lowered_steps(0, 10) is None
    # The checkbox's tooltip names the engine's own minimum, in Euler steps.
    from desktop_app.controls_panel import ControlsPanel

    assert f"down to {DEFAULT_MIN_NFE - 1})" in ControlsPanel.FEWER_STEPS_TIP
