"""The main flow through the real window, runtime engine and sinks, offscreen.

Hardware is faked (a microphone playing fixture speech, a virtual-camera backend, a webcam)
and the model is the stub graphs, so everything else is the code the user runs: pick a
photo -> crop dialog -> accept -> Go Live -> preview frames -> yaw slider -> the engine's
next hop uses the new pose -> switch avatar live with a number key -> Stop -> close.
"""

from __future__ import annotations

import math
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from desktop_app.crop_dialog import CropDialog
from desktop_app.images import qimage_to_rgb
from desktop_app.live_bridge import LiveState
from desktop_app.main_window import MainWindow
from desktop_app.settings import Output
from tests.support.fakes import virtual_camera as fakecam
from tests.support.gui import restored_size, unnamed
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)
from tests.support.gui_window import ENGINE_THREADS, Hops, WindowFactory, activate

HANG_MS = 300_000
"""A bound on waits that only a hang reaches (a loaded machine takes long, never this long)."""


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
    dialog = window.avatar_flow.add_photo(fixtures_dir / "source_2.png")
    assert dialog is not None and dialog.isVisible()
    dialog.name_edit.setText("Portrait")
    qtbot.mouseClick(dialog.accept_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.avatars.entries) == 2)
    photo_id = window.avatars.selected_id()
    assert photo_id != sample_id
    assert window.gallery.get(photo_id or "").name == "Portrait"  # type: ignore[union-attr]
    # Saved at the current model version's size; the stub graphs here are v1's (256 px).
    assert window.gallery.load_avatar(photo_id or "").shape == (512, 512, 3)

    # Go Live: the engine starts on the bridge's worker; frames reach the preview.
    refs = (sys.getrefcount(None), sys.getrefcount(True))  # see test_gui_widgets.py
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
    # Going live re-prepared the avatar for the installed model: cut again from its photo with
    # its own crop square, at 256 px, and saved so that it is done once.
    entry = window.gallery.get(photo_id or "")
    assert entry is not None
    again = window.backend.avatars.crop(window.gallery.load_photo(entry.id), entry.crop, 256)
    np.testing.assert_array_equal(window.gallery.load_avatar(entry.id), again)

    # Steer the head: switch "natural" off, move the yaw slider.
    window.tabs.setCurrentIndex(1)
    window.controls.natural.setChecked(False)
    yaw = window.controls.pose_sliders["yaw"]
    yaw.setFocus()
    for _ in range(2):
        qtbot.keyClick(yaw, Qt.Key.Key_PageUp)  # a page is 6 degrees
    assert yaw.value() == 12
    # After both pages: a hop that starts between them carries 6 degrees, rightly.
    changed = time.perf_counter()
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
    activate(qtbot, window)
    qtbot.keyClick(window, Qt.Key.Key_1)
    assert window.avatars.selected_id() == sample_id
    qtbot.waitUntil(lambda: any(h.avatar == sample_id for h in hops.since(0)), timeout=10_000)
    qtbot.waitUntil(lambda: not np.array_equal(_pixel(window), before_switch), timeout=5_000)
    assert window.bridge.state == LiveState.LIVE

    # Stop: the engine's threads end and the button is Go Live again.
    qtbot.mouseClick(window.live_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)
    assert window.live_button.text() == "Go Live"
    # A stopped thread may take a moment to leave `threading.enumerate()`; a leaked one never.
    qtbot.waitUntil(
        lambda: all(t.name not in ENGINE_THREADS for t in threading.enumerate()), timeout=2_000
    )
    assert camera.closed

    # Thousands of Qt calls later the interpreter still holds its references to None/True.
    assert sys.getrefcount(None) > refs[0] - 500 and sys.getrefcount(True) > refs[1] - 500

    # Settings were saved (atomically) with the choices made.
    qtbot.waitUntil(lambda: window.prefs.store.path.exists(), timeout=3_000)


def test_closing_while_live_stops_the_engine(qtbot: QtBot, window: MainWindow, hops: Hops) -> None:
    window.live.go_live()
    qtbot.waitUntil(lambda: window.preview.frames_shown >= 5, timeout=20_000)
    window.close()  # mid-inference
    assert window.bridge.state == LiveState.IDLE
    alive = [t.name for t in threading.enumerate() if t.name in ENGINE_THREADS]
    assert alive == []
    # The geometry was saved with the settings.
    saved, notice = window.prefs.store.load()
    assert notice is None and saved.window_geometry


def test_recording_and_snapshot(
    qtbot: QtBot, window: MainWindow, hops: Hops, app_dirs: Path
) -> None:
    """Judged on counts and on the recorder's own end, never on real time: the waits only fail
    on a hang. It fails if no snapshot is saved, if Record does not start a recording (no
    status, no recorder), if the file is not written or not playable, or if it lacks audio,
    frames or the output's size."""
    # The file holds every 40 ms the recording was on, each frame encoded: a small picture
    # without a backdrop keeps what a loaded machine has left to encode at the stop small.
    output = Output(width=640, height=480, background="none")
    window.prefs.update(
        window.settings.__class__(recordings_dir=str(app_dirs / "rec"), output=output)
    )
    window.live.go_live()
    qtbot.waitUntil(lambda: window.preview.frames_shown >= 5, timeout=HANG_MS)
    shot = window.recording.snapshot()
    assert shot is not None and shot.exists()
    window.record_button.click()
    qtbot.waitUntil(lambda: window.bridge.recording is not None, timeout=HANG_MS)
    # The elapsed time counts up from 0:00; a loaded machine may show the first status late.
    recording = re.compile(r"Recording \d+:\d\d to .*\.mp4$")
    qtbot.waitUntil(
        lambda: recording.search(window.statusBar().currentMessage()) is not None,
        timeout=HANG_MS,
    )
    # Record until the engine has made 20 frames of audio captured after the recording began
    # (that audio went to the recorder, and the file's video lasts as long as its audio: 20
    # frames or more) and the preview has shown a new frame since (one at most may be from
    # before): counts, however long a loaded machine takes, and no longer than they need (a
    # loaded machine encodes every 40 ms of the recording after the stop).
    began = time.perf_counter()  # the status is shown once the recorder has opened
    shown = window.preview.frames_shown

    def recorded_enough() -> bool:
        after = sum(int(np.count_nonzero(h.capture > began)) for h in hops.since(began))
        return after >= 20 and window.preview.frames_shown >= shown + 2

    qtbot.waitUntil(recorded_enough, timeout=HANG_MS)
    with qtbot.waitSignal(window.bridge.recording_changed, timeout=HANG_MS) as stopped:
        window.record_button.click()
    recording_now, path = stopped.args
    assert not recording_now and path.endswith(".mp4")
    # Stopping gives the writer RECORDING_CLOSE_S to finish; a loaded machine can take longer,
    # and the writer then goes on by itself. Its thread ends once the file is in place (or it
    # failed: then there is no file at `path` and the checks below fail).
    qtbot.waitUntil(
        lambda: not any(t.name == "recorder" for t in threading.enumerate()), timeout=HANG_MS
    )
    import av

    with av.open(path) as container:
        kinds = {s.type for s in container.streams}
        frames = container.streams.video[0].frames
        size = (container.streams.video[0].width, container.streams.video[0].height)
    assert kinds == {"video", "audio"}
    assert frames >= 20
    assert window.settings.output == output
    assert size == (640, 480)  # what the virtual camera sends, not the face


def test_every_control_of_the_main_window_has_an_accessible_name(window: MainWindow) -> None:
    assert unnamed(window) == []


def test_keyboard_only_main_flow(qtbot: QtBot, window: MainWindow, hops: Hops) -> None:
    """Tab order, list navigation and shortcuts are enough to pick, go live, steer, stop."""

    def focus() -> QWidget:
        widget = QApplication.focusWidget()
        assert widget is not None
        return widget

    assert focus() is window.avatars.list  # the gallery has the focus at start
    window.avatars.add_button.setFocus()
    order = []
    for _ in range(10):
        order.append(focus())
        qtbot.keyClick(focus(), Qt.Key.Key_Tab)
    source = window.source
    assert order == [
        window.avatars.add_button,
        window.avatars.list,
        window.avatars.rename_button,
        window.avatars.recrop_button,
        window.avatars.delete_button,
        window.live_button,  # Record is skipped: it is disabled until live
        window.snapshot_button,
        window.overlay_button,
        window.tabs.tabBar(),
        source.mic_radio,  # the checked radio of the group
    ]

    # Pick the avatar from the list with the keyboard, go live with F5.
    window.avatars.list.setFocus()
    qtbot.keyClick(window.avatars.list, Qt.Key.Key_End)
    assert window.avatars.selected_id() == window.avatars.entries[-1].id
    qtbot.keyClick(focus(), Qt.Key.Key_F5)
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.LIVE, timeout=20_000)

    # To the Controls tab, switch "natural" off and nudge the yaw, keys only.
    window.tabs.tabBar().setFocus()
    qtbot.keyClick(focus(), Qt.Key.Key_Right)
    assert window.tabs.currentIndex() == 1
    qtbot.keyClick(focus(), Qt.Key.Key_Tab)
    assert focus() is window.controls.natural
    qtbot.keyClick(focus(), Qt.Key.Key_Space)
    assert not window.controls.natural.isChecked()
    qtbot.keyClick(focus(), Qt.Key.Key_Tab)
    assert focus() is window.controls.pose_sliders["yaw"]
    changed = time.perf_counter()
    for _ in range(3):
        qtbot.keyClick(focus(), Qt.Key.Key_Right)
    assert window.settings.pose.yaw == 3
    qtbot.waitUntil(lambda: len(hops.since(changed)) >= 2, timeout=10_000)
    assert math.isclose(
        float(hops.since(changed)[-1].raw.pose[0][1]), math.radians(3), rel_tol=1e-5
    )

    # Ctrl+0 resets the pose; F5 stops.
    qtbot.keyClick(focus(), Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert window.settings.pose.yaw == 0
    qtbot.keyClick(focus(), Qt.Key.Key_F5)
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)


def test_output_changes_apply_live(qtbot: QtBot, window: MainWindow) -> None:
    """Mirror changes the camera's picture in place; a new resolution reopens the camera."""
    window.live.go_live()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.LIVE, timeout=20_000)
    qtbot.waitUntil(lambda: len(fakecam.RecordingBackend.instances[-1].probes) > 5)
    camera = fakecam.RecordingBackend.instances[-1]
    assert (camera.width, camera.height) == (1280, 720)

    def ramp(cam: Any) -> float:
        """Right minus left red level across the face (the stub renderer draws a ramp)."""
        with cam.lock:
            probe = cam.probes[-1]
        row = probe[probe.shape[0] // 2, :, 0].astype(float)
        face = row[len(row) // 2 - 40 : len(row) // 2 + 40]  # 1/8-scale probe, 720 px face
        return float(face[-4:].mean() - face[:4].mean())

    assert ramp(camera) > 10
    window.controls.mirror.setChecked(True)
    qtbot.waitUntil(lambda: ramp(camera) < -10, timeout=5_000)
    assert fakecam.RecordingBackend.instances[-1] is camera  # mirrored without reopening

    index = window.controls.resolution.findData("640x480")
    window.controls.resolution.setCurrentIndex(index)
    qtbot.waitUntil(lambda: fakecam.RecordingBackend.instances[-1] is not camera, timeout=5_000)
    reopened = fakecam.RecordingBackend.instances[-1]
    assert (reopened.width, reopened.height) == (640, 480)
    qtbot.waitUntil(lambda: len(reopened.probes) > 3, timeout=5_000)
    assert camera.closed
    qtbot.waitUntil(lambda: window.preview.current_frame.width() == 640, timeout=5_000)  # type: ignore[union-attr]


def test_without_a_virtual_camera_preview_and_recording_still_work(
    qtbot: QtBot, make_window: WindowFactory
) -> None:
    window = make_window(vcam_backend="fake-busy")
    qtbot.waitUntil(window.vcam_help.isVisible, timeout=5_000)
    assert "not available" in window.vcam_status.text()
    window.vcam_help.toggle.click()
    assert "in use by another application" in window.vcam_help.details.toPlainText()
    assert "exclusive_caps=1" in window.vcam_help.details.toPlainText()
    window.live.go_live()
    qtbot.waitUntil(lambda: window.preview.frames_shown >= 10, timeout=20_000)
    assert window.record_button.isEnabled()
    assert "not available" in window.vcam_status.text()
    # Dismissing the help is remembered.
    window.vcam_help.hide_button.click()
    assert not window.vcam_help.isVisible() and window.settings.vcam_help_dismissed


def test_microphone_test_shows_the_level_without_going_live(
    qtbot: QtBot, window: MainWindow
) -> None:
    source = window.source
    assert source.microphone is None  # system default
    assert source.mic_combo.findData("Fake USB Mic") >= 0
    levels: list[float] = []
    source.level.level_changed.connect(levels.append)
    source.test_button.click()
    assert source.test_button.text().replace("&", "") == "Stop"  # says what a click does
    qtbot.waitUntil(lambda: max(levels, default=-100) > -40, timeout=5_000)
    assert window.bridge.state == LiveState.IDLE
    source.test_button.click()
    qtbot.waitUntil(
        lambda: not any(t.name in ("mic-level", "fake-mic") for t in threading.enumerate()),
        timeout=3_000,
    )
    assert source.level.rms_db == -60 and source.test_button.text().replace("&", "") == "Test"


def test_webcam_source_previews_the_crop_and_drives_the_avatar(
    qtbot: QtBot, window: MainWindow
) -> None:
    source = window.source
    source.cam_radio.click()
    assert source.kind == "webcam" and source.webcam == "0: Fake Camera"
    assert window.settings.source == "webcam"
    assert source.cam_preview.isVisible()
    source.test_button.click()
    qtbot.waitUntil(lambda: not source.cam_preview.pixmap().isNull(), timeout=5_000)
    source.test_button.click()
    window.live.go_live()
    qtbot.waitUntil(lambda: window.preview.frames_shown >= 10, timeout=20_000)
    stats = window.bridge.session.stats()  # type: ignore[union-attr]
    assert stats.audio_level is None  # no microphone in this mode
    assert not source.test_button.isEnabled()  # the engine owns the camera while live


def test_settings_and_geometry_come_back(qtbot: QtBot, make_window: WindowFactory) -> None:
    first = make_window()
    first.resize(1100, 700)
    first.controls.natural.setChecked(False)
    first.controls.pose_sliders["yaw"].setValue(7)
    first.overlay_button.click()
    first.source.mic_combo.setCurrentIndex(first.source.mic_combo.findData("Fake USB Mic"))
    first.close()

    saved, _ = first.prefs.store.load()
    assert saved.window_geometry
    second = make_window()
    assert second.size() == restored_size(second, saved.window_geometry)
    assert second.height() == 700
    assert second.controls.pose_sliders["yaw"].value() == 7
    assert not second.controls.natural.isChecked()
    assert not second.overlay_button.isChecked() and not second.preview.overlay_visible
    assert second.source.microphone == "Fake USB Mic"
    assert not second.notice.isVisible()


def test_a_damaged_settings_file_is_reported(
    qtbot: QtBot, make_window: WindowFactory, app_dirs: Path
) -> None:
    config = app_dirs / "config"
    config.mkdir(parents=True)
    (config / "settings.json").write_text("{ not json")
    window = make_window()
    assert window.notice.isVisible()
    assert "damaged" in window.notice_label.text()
    assert list(config.glob("settings.corrupt-*.json"))


def test_gallery_drop_rename_delete(qtbot: QtBot, window: MainWindow, fixtures_dir: Path) -> None:
    panel = window.avatars
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(fixtures_dir / "source_3.jpg"))])
    drop = QDropEvent(
        QPointF(20, 20),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(panel.photo_requested) as requested:
        panel.dropEvent(drop)
    assert requested.args == [fixtures_dir / "source_3.jpg"]
    qtbot.waitUntil(lambda: isinstance(QApplication.activeModalWidget(), CropDialog))
    dialog = QApplication.activeModalWidget()
    assert isinstance(dialog, CropDialog)
    dialog.accept_button.click()
    qtbot.waitUntil(lambda: len(panel.entries) == 2)
    new_id = panel.selected_id()
    assert new_id is not None and window.settings.avatar_id == new_id

    panel.rename(new_id, "Renamed")
    assert panel.list.currentItem().text() == "2 · Renamed"
    panel.delete(new_id)
    assert [e.name for e in panel.entries] == ["Sample"]
    assert panel.selected_id() == panel.entries[0].id  # the neighbour is selected
    assert window.settings.avatar_id == panel.entries[0].id


def test_go_live_on_a_machine_measured_not_real_time_says_so_first(
    qtbot: QtBot, window: MainWindow, monkeypatch: Any
) -> None:
    """The engine measured this model not real time last session: Go Live shows what the user
    will get first, and "No" leaves the app idle."""
    from PySide6.QtWidgets import QMessageBox

    from desktop_app.runtime_services.live import RuntimeEngine
    from desktop_app.settings import Quality
    from runtime.engine.backend_options import session_choice

    engine = window.backend.engine
    assert isinstance(engine, RuntimeEngine)
    assert engine.expectation(Quality()) is None  # nothing measured yet: no question
    graphs = window.backend.models.model_state().graphs_dir
    assert graphs is not None
    # What a session's stats report on such a machine, on the backend Auto resolves to here.
    on = session_choice(backend="auto", precision="fp32", graphs=graphs).label
    engine._remember((graphs, on), False, 3.1)
    asked: list[str] = []

    def question(parent: object, title: str, text: str, *args: object) -> object:
        asked.append(text)
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", question)
    assert window.live.go_live()  # asked once the source has opened
    qtbot.waitUntil(lambda: len(asked) == 1, timeout=10_000)
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)
    assert "about 1 new picture every 3.1 s" in asked[0] and "imtalker-cam render" in asked[0]
    assert "Remote server" in asked[0]
