"""System-wide push-to-talk and mute keys (issue 24, item 12): where the platform allows they
work while another app has the focus; where it does not (Wayland, no pynput) the window says
why and its own keys still work. The system keyboard is a fake pynput module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop_app.call_audio_panel import CallAudioPanel
from desktop_app.global_hotkeys import HotkeySupport, support
from desktop_app.settings import CallAudio
from tests.support.fakes import keyboard as fake_keyboard


def _no_pynput(name: str) -> object:
    raise ImportError(f"No module named {name!r}")


def test_support_says_where_system_wide_keys_cannot_work() -> None:
    wayland = support(platform="linux", environ={"WAYLAND_DISPLAY": "wayland-0"})
    assert not wayland.available and "Wayland" in (wayland.reason or "")
    headless = support(platform="linux", environ={})
    assert not headless.available
    missing = support(platform="win32", environ={}, importer=_no_pynput)
    assert not missing.available and "pip install" in (missing.reason or "")
    x11 = support(platform="linux", environ={"DISPLAY": ":0"}, importer=lambda name: object())
    assert x11 == HotkeySupport(True, None)


@pytest.fixture
def panel(qtbot: QtBot) -> Iterator[CallAudioPanel]:
    fake_keyboard.Listener.instances.clear()
    made = CallAudioPanel(
        CallAudio(push_to_talk=True, ptt_key="F8", mute_key="F9", global_keys=True),
        hotkeys=HotkeySupport(True, None),
        keyboard=fake_keyboard,
    )
    qtbot.addWidget(made)
    made.show()
    yield made
    made.stop_global_keys()


def test_push_to_talk_works_while_another_app_has_the_focus(
    qtbot: QtBot, panel: CallAudioPanel
) -> None:
    listener = fake_keyboard.running()
    assert listener is not None and panel.global_ptt
    assert "in any app" in panel.talk_state.text()
    with qtbot.waitSignal(panel.talking_changed) as held:
        listener.press(fake_keyboard.Key.f8)
    assert held.args == [True]
    # The call app has the focus: that no longer counts as letting go.
    QApplication.sendEvent(QApplication.instance(), QEvent(QEvent.Type.ApplicationDeactivate))
    assert panel.talking
    listener.press(fake_keyboard.Key.f8)  # a held key repeats its press: no change
    with qtbot.waitSignal(panel.talking_changed) as let_go:
        listener.release(fake_keyboard.Key.f8)
    assert let_go.args == [False]
    with qtbot.waitSignal(panel.muted_changed) as muted:
        listener.press(fake_keyboard.Key.f9)
    assert muted.args == [True] and panel.muted
    listener.release(fake_keyboard.Key.f9)
    listener.press(fake_keyboard.KeyCode.from_char("x"))  # other keys are not reported
    qtbot.wait(20)
    assert panel.muted and not panel.talking


def test_turning_it_off_stops_the_listener_and_the_window_keys_stay(
    qtbot: QtBot, panel: CallAudioPanel
) -> None:
    panel.global_keys.setChecked(False)
    assert fake_keyboard.running() is None and not panel.global_ptt
    assert panel.value.global_keys is False
    qtbot.keyClick(panel, Qt.Key.Key_F9)  # the in-window mute key
    assert panel.muted


def test_without_support_the_option_is_off_and_says_why(qtbot: QtBot) -> None:
    reason = "Wayland does not let apps see keys pressed in other apps."
    panel = CallAudioPanel(
        CallAudio(push_to_talk=True, global_keys=True), hotkeys=HotkeySupport(False, reason)
    )
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.global_keys.isEnabled() and not panel.global_keys.isChecked()
    assert panel.keys_note.isVisible() and panel.keys_note.text() == reason
    assert not panel.global_ptt and "in any app" not in panel.talk_state.text()
    qtbot.keyPress(panel, Qt.Key.Key_F8)
    assert panel.talking
    qtbot.keyRelease(panel, Qt.Key.Key_F8)
    assert not panel.talking
