"""Plain words and numbers with labels (issue 24, items 9 and 10): the Hop list says the delay
each choice gives, Steps names the CLI's --nfe, and the apply note never moves the controls."""

from __future__ import annotations

from pytestqt.qtbot import QtBot

from desktop_app.controls_panel import ControlsPanel, hop_label
from desktop_app.main_window import MainWindow
from desktop_app.services import LiveStats
from desktop_app.settings import HOP_CHOICES, STEPS_CHOICES, Output, Pose, Quality
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)


def _panel(qtbot: QtBot, quality: Quality | None = None) -> ControlsPanel:
    panel = ControlsPanel(pose=Pose(), quality=quality or Quality(), output=Output())
    qtbot.addWidget(panel)
    panel.resize(360, 900)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def test_hop_items_say_the_delay_and_take_the_measured_one(qtbot: QtBot) -> None:
    panel = _panel(qtbot, Quality(hop=1))
    texts = [panel.hop.itemText(i) for i in range(panel.hop.count())]
    assert texts[0] == "Auto · shortest"
    assert texts[1] == "1 frame · ≥ 0.2 s"  # the least delay, never a promise
    assert all(t.endswith((" s", "shortest")) for t in texts)
    changed: list[object] = []
    panel.quality_changed.connect(changed.append)
    panel.show_live_delay(5019.0)  # what the live stats said for hop 1 on this computer
    assert panel.hop.itemText(1) == "1 frame · ~5.0 s here"
    assert panel.hop.itemText(2) == hop_label(2, None)  # the others keep their least
    assert panel.hop.currentIndex() == 1 and changed == []  # a label, not a change
    panel.show_live_delay(None)
    assert panel.hop.itemText(1) == "1 frame · ~5.0 s here"


def test_steps_name_the_cli_nfe(qtbot: QtBot) -> None:
    panel = _panel(qtbot)
    for index, steps in enumerate(STEPS_CHOICES):
        assert f"--nfe {steps + 1}" in panel.steps.itemText(index)
    assert "--nfe 10" in panel.steps.toolTip() and "Steps 9" in panel.steps.toolTip()
    assert len(HOP_CHOICES) == panel.hop.count()


def test_the_apply_note_does_not_move_the_controls(qtbot: QtBot) -> None:
    panel = _panel(qtbot)
    before = panel.natural.mapTo(panel, panel.natural.rect().topLeft())
    panel.show_apply_note(5)
    qtbot.waitUntil(panel.apply_note.isVisible)
    panel.layout().activate()
    assert panel.natural.mapTo(panel, panel.natural.rect().topLeft()) == before
    assert "about 5 s" in panel.apply_note.text()
    panel.apply_note.hide()
    panel.layout().activate()
    assert panel.natural.mapTo(panel, panel.natural.rect().topLeft()) == before


def test_the_window_passes_the_live_delay_to_the_hop_list(window: MainWindow) -> None:
    stats = LiveStats(fps=25.0, latency_ms=5019.0, provider="CPU", realtime=True, audio_level=None)
    window.bridge.stats_updated.emit(stats)
    hop = window.controls.hop
    assert hop.itemText(hop.currentIndex()) == "Auto · ~5.0 s here"
