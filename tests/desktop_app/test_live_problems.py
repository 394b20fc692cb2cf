"""Live problems are shown in the window, and the level meter follows the microphone.

The real window, runtime engine and sinks with hardware fakes (a webcam that is not there, a
microphone that is unplugged while live) and stub graphs. Real-time waits only bound the
tests: each assertion is about what the window says or counts, never about how long it took.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pytestqt.qtbot import QtBot

from desktop_app.live_bridge import LiveState
from runtime.media.audio_file import load_audio
from tests.support.fakes.camera import FakeCv2
from tests.support.fakes.sound_device import FakeSoundDevice
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)
from tests.support.gui_window import Hops, WindowFactory
from tests.support.stub_graphs import write_stub_graphs


def test_go_live_refuses_a_webcam_that_cannot_open_and_offers_the_microphone(
    qtbot: QtBot, make_window: WindowFactory
) -> None:
    camera = FakeCv2()
    camera.present = False  # "Webcam" chosen, none there
    window = make_window(camera=camera)
    window.source.cam_radio.click()
    window.live.go_live()
    qtbot.waitUntil(lambda: window.alerts.isVisible(), timeout=10_000)
    assert window.bridge.state == LiveState.IDLE  # refused: nothing runs
    text = window.alerts.text()
    assert "webcam" in text and "cannot be opened" in text
    assert "Live as" not in window.live_info.text()
    assert window.provider_status.text() == ""
    assert window.live_button.text() == "Go Live"
    assert window.alerts.action_button.isVisible()
    assert window.alerts.action_button.text() == "Use the microphone"

    # The offer switches the source to the microphone and goes live.
    window.alerts.action_button.click()
    assert window.source.kind == "microphone" and window.settings.source == "microphone"
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.LIVE, timeout=20_000)
    assert not window.alerts.isVisible()
    window.bridge.stop()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)


def test_a_microphone_that_vanishes_while_live_is_shown_with_the_retries(
    qtbot: QtBot, make_window: WindowFactory, fixtures_dir: Path
) -> None:
    sound = FakeSoundDevice(load_audio(fixtures_dir / "audio_1.wav"), 16_000, loop=True)
    window = make_window(sound=sound)
    window.live.go_live()
    qtbot.waitUntil(lambda: window.preview.frames_shown >= 5, timeout=20_000)
    assert not window.alerts.isVisible()

    sound.remove_device()  # unplugged: the callbacks stop, reopening fails
    qtbot.waitUntil(lambda: "Retrying" in window.alerts.text(), timeout=15_000)
    assert "microphone was lost" in window.alerts.text()
    assert "Retrying" in window.live_info.text()
    qtbot.waitUntil(lambda: "attempt 2" in window.alerts.text(), timeout=15_000)
    assert window.bridge.state == LiveState.LIVE  # the engine keeps the avatar idling

    sound.present = True
    sound.replug()
    qtbot.waitUntil(lambda: not window.alerts.isVisible(), timeout=20_000)
    assert "back" in window.statusBar().currentMessage()
    assert window.live_info.text().startswith("Live as")


def test_a_model_that_fails_to_load_is_shown_with_the_set_up(
    qtbot: QtBot, make_window: WindowFactory, tmp_path: Path
) -> None:
    broken = write_stub_graphs(tmp_path / "broken")
    renderer = next(broken.glob("renderer*.onnx"))
    renderer.write_bytes(b"not an onnx graph")
    window = make_window(graphs_dir=broken)
    window.live.go_live()
    qtbot.waitUntil(lambda: window.alerts.isVisible(), timeout=20_000)
    assert window.bridge.state == LiveState.IDLE
    assert "model could not be loaded" in window.alerts.text()
    assert window.alerts.action_button.text() == "Model set-up…"


def test_the_level_meter_follows_the_microphone_whatever_the_engine_does(
    qtbot: QtBot, make_window: WindowFactory, hops: Hops
) -> None:
    """The engine is held inside its first hop; the meter still moves 30 times a second."""
    gate = threading.Event()

    def stuck(record: Any) -> None:
        hops(record)
        gate.wait(30)  # the engine makes no further hop until released

    window = make_window(on_hop=stuck)
    meter = window.source.level
    try:
        window.live.go_live()
        qtbot.waitUntil(lambda: len(hops.records) >= 1, timeout=20_000)
        qtbot.waitUntil(lambda: window.bridge.state == LiveState.LIVE, timeout=10_000)
        start = meter.updates
        seen: set[float] = set()
        meter.level_changed.connect(seen.add)
        qtbot.waitUntil(lambda: meter.updates - start >= 30, timeout=10_000)
        assert len(hops.records) == 1  # no hop meanwhile: the levels came from the capture
        assert len(seen) >= 10  # they follow the speech, not a held value
        assert -60 < max(seen) <= 0  # in dBFS
        assert meter.text().endswith("dB") or "peak" in meter.text()
    finally:
        gate.set()
    window.bridge.stop()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)
    assert meter.rms_db == -60  # emptied when the engine lets go of the microphone
