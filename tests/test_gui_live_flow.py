"""The main flow through the real window, runtime engine and sinks, offscreen.

Hardware is faked (a microphone playing fixture speech, a virtual-camera backend, a webcam)
and the model is the stub graphs, so everything else is the code the user runs: pick a
photo -> crop dialog -> accept -> Go Live -> preview frames -> yaw slider -> the engine's
next hop uses the new pose -> switch avatar live with a number key -> Stop -> close.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from desktop_app.app import build_window
from desktop_app.engine_bridge import LiveState
from desktop_app.images import qimage_to_rgb
from desktop_app.main_window import MainWindow
from desktop_app.runtime_backend import runtime_backend
from runtime.audio_file import load_audio
from tests.fakes import virtual_camera as fakecam
from tests.fakes.camera import FakeCv2
from tests.fakes.sound_device import FakeSoundDevice
from tests.stub_graphs import write_stub_graphs
from tests.support.gui import unnamed

ENGINE_THREADS = ("live-worker", "pacer", "audio-watchdog", "fake-mic", "recorder", "webcam")


@dataclass
class Hops:
    """Every hop the engine made, with when it was recorded (engine thread -> test)."""

    records: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, record: Any) -> None:
        with self.lock:
            self.records.append(record)

    def since(self, t: float) -> list[Any]:
        with self.lock:
            return [h for h in self.records if h.started > t]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_stub_graphs(tmp_path_factory.mktemp("graphs"))


@pytest.fixture
def app_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CONFIG", "DATA", "CACHE"):
        monkeypatch.setenv(f"IMTALKER_{name}_DIR", str(tmp_path / name.lower()))
    return tmp_path


@pytest.fixture
def hops() -> Hops:
    return Hops()


@pytest.fixture
def window(
    qtbot: QtBot, app_dirs: Path, graphs: Path, fixtures_dir: Path, hops: Hops
) -> Iterator[MainWindow]:
    fakecam.register()
    speech = load_audio(fixtures_dir / "audio_1.wav")
    backend = runtime_backend(
        graphs_dir=graphs,
        sound_device=FakeSoundDevice(speech, 16_000, name="Fake USB Mic", loop=True),
        camera_module=FakeCv2(),
        webcam_lister=lambda: ["0: Fake Camera"],
        vcam_backend="fake",
        on_hop=hops,
    )
    win = build_window(backend)
    qtbot.addWidget(win)
    win.show()
    win.activateWindow()  # shortcuts (number keys) only reach the active window
    qtbot.waitActive(win)
    yield win
    win.close()
    for t in threading.enumerate():
        assert t.name not in ENGINE_THREADS, f"engine thread {t.name} outlived the window"


def _pixel(window: MainWindow) -> np.ndarray:
    frame = window.preview.current_frame
    assert frame is not None
    rgb = qimage_to_rgb(frame)
    return rgb[rgb.shape[0] // 2, rgb.shape[1] // 2].astype(int)


def test_photo_to_live_to_quit(
    qtbot: QtBot, window: MainWindow, hops: Hops, fixtures_dir: Path, output_dir: Path
) -> None:
    # The first run put the built-in sample in the gallery.
    assert [e.name for e in window.avatars.entries] == ["Sample"]
    sample_id = window.avatars.entries[0].id

    # Pick a photo: the crop dialog opens on the detected face; accept it.
    dialog = window.add_photo(fixtures_dir / "source_2.png")
    assert dialog is not None and dialog.isVisible()
    dialog.name_edit.setText("Portrait")
    qtbot.mouseClick(dialog.accept_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.avatars.entries) == 2)
    photo_id = window.avatars.selected_id()
    assert photo_id != sample_id
    assert window.gallery.get(photo_id or "").name == "Portrait"  # type: ignore[union-attr]

    # Go Live: the engine starts on the bridge's worker; frames reach the preview.
    qtbot.mouseClick(window.live_button, Qt.MouseButton.LeftButton)
    assert window.bridge.state in (LiveState.STARTING, LiveState.LIVE)
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.LIVE, timeout=20_000)
    qtbot.waitUntil(lambda: window.preview.frames_shown >= 15, timeout=20_000)
    assert window.live_button.text() == "Stop"
    assert "FakeCam" in window.vcam_status.text() and "sending" in window.vcam_status.text()
    camera = fakecam.RecordingBackend.instances[-1]
    assert len(camera.times) > 0  # the virtual camera receives frames too
    qtbot.waitUntil(lambda: window.preview.overlay_text() != "", timeout=5_000)
    assert "CPU" in window.preview.overlay_text()
    assert {h.avatar for h in hops.since(0)} == {photo_id}
    window.grab().save(str(output_dir / "gui_flow_live.png"))

    # Steer the head: switch "natural" off, move the yaw slider.
    window.tabs.setCurrentIndex(1)
    window.controls.natural.setChecked(False)
    yaw = window.controls.pose_sliders["yaw"]
    yaw.setFocus()
    changed = time.perf_counter()
    for _ in range(2):
        qtbot.keyClick(yaw, Qt.Key.Key_PageUp)  # a page is 6 degrees
    assert yaw.value() == 12
    # Within one hop: the first hop that starts after the change carries the new pose.
    qtbot.waitUntil(lambda: len(hops.since(changed)) >= 2, timeout=10_000)
    after = hops.since(changed)
    pitch_yaw_roll = after[0].raw.pose[0]
    assert math.isclose(float(pitch_yaw_roll[1]), math.radians(12), rel_tol=1e-5)
    hop_s = after[0].emitted / 25
    assert after[0].started - changed < 2 * hop_s + 0.5
    assert window.settings.pose.yaw == 12 and not window.settings.pose.natural

    # Switch avatar live with its number key; the engine moves to it on a following hop.
    before_switch = _pixel(window)
    # Offscreen, activation does not come back by itself after the dialog closes.
    window.windowHandle().requestActivate()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_1)
    assert window.avatars.selected_id() == sample_id
    qtbot.waitUntil(lambda: any(h.avatar == sample_id for h in hops.since(0)), timeout=10_000)
    qtbot.waitUntil(lambda: not np.array_equal(_pixel(window), before_switch), timeout=5_000)
    assert window.bridge.state == LiveState.LIVE

    # Stop: the engine's threads end and the button is Go Live again.
    qtbot.mouseClick(window.live_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)
    assert window.live_button.text() == "Go Live"
    time.sleep(0.1)
    alive = [t.name for t in threading.enumerate() if t.name in ENGINE_THREADS]
    assert alive == []
    assert camera.closed

    # Settings were saved (atomically) with the choices made.
    qtbot.waitUntil(lambda: window.settings_store.path.exists(), timeout=3_000)


def test_closing_while_live_stops_the_engine(qtbot: QtBot, window: MainWindow, hops: Hops) -> None:
    window.go_live()
    qtbot.waitUntil(lambda: window.preview.frames_shown >= 5, timeout=20_000)
    window.close()  # mid-inference
    assert window.bridge.state == LiveState.IDLE
    alive = [t.name for t in threading.enumerate() if t.name in ENGINE_THREADS]
    assert alive == []
    # The geometry was saved with the settings.
    saved, notice = window.settings_store.load()
    assert notice is None and saved.window_geometry


def test_recording_and_snapshot(qtbot: QtBot, window: MainWindow, app_dirs: Path) -> None:
    window.settings = window.settings.__class__(recordings_dir=str(app_dirs / "rec"))
    window.go_live()
    qtbot.waitUntil(lambda: window.preview.frames_shown >= 5, timeout=20_000)
    shot = window.snapshot()
    assert shot is not None and shot.exists()
    window.record_button.click()
    qtbot.waitUntil(lambda: window.bridge.recording is not None, timeout=5_000)
    qtbot.waitUntil(lambda: "Recording to" in window.statusBar().currentMessage(), timeout=5_000)
    time.sleep(1.5)
    with qtbot.waitSignal(window.bridge.recording_changed, timeout=15_000) as stopped:
        window.record_button.click()
    recording, path = stopped.args
    assert not recording and path.endswith(".mp4")
    import av

    with av.open(path) as container:
        kinds = {s.type for s in container.streams}
        frames = container.streams.video[0].frames
    assert kinds == {"video", "audio"}
    assert frames >= 20


def test_every_control_of_the_main_window_has_an_accessible_name(window: MainWindow) -> None:
    assert unnamed(window) == []
