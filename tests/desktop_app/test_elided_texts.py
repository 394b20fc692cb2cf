"""Long device names and choices are never cut off (issue 24, item 10): the closed combo
shows both ends with "…" between, the whole text is its tooltip, the open list is wide."""

from __future__ import annotations

import numpy as np
from pytestqt.qtbot import QtBot

from desktop_app.runtime_services.devices import RuntimeDevices
from desktop_app.source_panel import SourcePanel
from tests.support.fakes.sound_device import FakeSoundDevice

LONG = "Headset_Microphone (Jabra Evolve2 65 USB, analogue stereo input)"


def test_a_long_microphone_name_keeps_both_ends(qtbot: QtBot) -> None:
    sound = FakeSoundDevice(np.zeros(16_000, np.float32), 16_000, name=LONG, loop=True)
    devices = RuntimeDevices(sd=sound, webcam_lister=lambda: [], platform="linux")
    panel = SourcePanel(devices, kind="microphone", microphone=None, webcam=None)
    qtbot.addWidget(panel)
    panel.resize(290, 400)  # the settings panel at its narrowest
    panel.show()
    qtbot.waitExposed(panel)
    combo = panel.mic_combo
    combo.setItemText(0, f"System default ({LONG})")  # as refresh() names a known default
    for index in (0, 1):  # the system default and the device itself
        combo.setCurrentIndex(index)
        whole = combo.currentText()
        shown = combo.shown_text()
        assert "…" in shown and shown != whole
        head, tail = shown.split("…")
        assert whole.startswith(head) and whole.endswith(tail) and tail.endswith(")")
        combo.grab()  # paints the elided text, and the tooltip follows it
        assert combo.toolTip().startswith(whole)
    combo.showPopup()
    assert combo.view().width() >= combo.fontMetrics().horizontalAdvance(LONG)
    combo.hidePopup()
