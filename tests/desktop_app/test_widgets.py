"""Widgets on their own: controls panel values, preview overlay, the task runner, vcam help."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from desktop_app.controls_panel import ControlsPanel
from desktop_app.images import qimage_to_rgb, rgb_to_qimage
from desktop_app.preview import PreviewStats, PreviewWidget
from desktop_app.settings import Output, Pose, Quality
from desktop_app.tasks import CancellableRunner, TaskRunner
from desktop_app.vcam_help import VirtualCameraHelp, instructions
from tests.support.gui import unnamed, user_controls


def test_rgb_qimage_round_trip() -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (37, 51, 3), dtype=np.uint8)
    assert np.array_equal(qimage_to_rgb(rgb_to_qimage(rgb)), rgb)
    with pytest.raises(ValueError):
        rgb_to_qimage(np.zeros((4, 4), np.uint8))


def test_controls_emit_whole_values(qtbot: QtBot) -> None:
    panel = ControlsPanel(pose=Pose(), quality=Quality(), output=Output())
    qtbot.addWidget(panel)
    poses: list[Pose] = []
    panel.pose_changed.connect(poses.append)
    panel.natural.setChecked(False)
    panel.pose_sliders["yaw"].setValue(15)
    panel.pose_sliders["gaze_y"].setValue(-40)
    assert poses[-1] == Pose(yaw=15.0, gaze_y=-0.4, natural=False)
    panel.reset()  # the default pose: Natural on, sliders centred
    assert poses[-1] == Pose(natural=True)
    assert all(s.value() == 0 for s in panel.pose_sliders.values())

    qualities: list[Quality] = []
    panel.quality_changed.connect(qualities.append)
    # Until the user moves it, expressiveness is the installed model's own (None) and the
    # slider shows that model's default: 2.0 for IMTalker v2, 3.0 for v1.
    assert panel.cfg.value() == 20
    panel.set_model_default_cfg(3.0)
    assert panel.cfg.value() == 30 and qualities == []
    panel.steps.setCurrentIndex(panel.steps.findData(4))
    assert qualities[-1] == Quality(cfg_scale=None, steps=4)
    panel.cfg.setValue(35)
    panel.steps.setCurrentIndex(panel.steps.findData(4))
    panel.hop.setCurrentIndex(panel.hop.findData(10))
    assert qualities[-1] == Quality(cfg_scale=3.5, steps=4, hop=10)
    panel.fewer_steps.setChecked(True)
    assert qualities[-1] == Quality(cfg_scale=3.5, steps=4, hop=10, fewer_steps=True)

    outputs: list[Output] = []
    panel.output_changed.connect(outputs.append)
    assert not panel.colour.isEnabled()
    panel.background.setCurrentIndex(panel.background.findData("colour"))
    assert panel.colour.isEnabled()
    panel.set_background_colour("#00ff00")
    panel.mirror.setChecked(True)
    panel.resolution.setCurrentIndex(panel.resolution.findData("640x480"))
    assert outputs[-1] == Output(
        width=640, height=480, mirror=True, background="colour", background_colour="#00ff00"
    )

    # Loading values shows them without echoing change signals.
    count = len(poses)
    panel.set_values(pose=Pose(roll=-7.0, natural=False), quality=Quality(), output=Output())
    assert panel.pose_sliders["roll"].value() == -7 and len(poses) == count
    assert not panel.fewer_steps.isChecked() and qualities[-1].fewer_steps


def test_every_control_has_an_accessible_name(qtbot: QtBot) -> None:
    panel = ControlsPanel(pose=Pose(), quality=Quality(), output=Output())
    qtbot.addWidget(panel)
    assert len(user_controls(panel)) >= 14
    assert unnamed(panel) == []


def test_preview_overlay_text_and_cpu_warning(qtbot: QtBot) -> None:
    preview = PreviewWidget()
    qtbot.addWidget(preview)
    preview.resize(640, 480)
    preview.show()
    assert preview.overlay_text() == ""
    preview.show_frame(rgb_to_qimage(np.zeros((512, 512, 3), np.uint8)))
    preview.set_stats(PreviewStats(fps=25.0, latency_ms=180.4, provider="CUDA", realtime=True))
    assert preview.overlay_text() == "25.0 fps  ·  delay 180 ms  ·  CUDA"
    preview.set_stats(PreviewStats(fps=3.2, latency_ms=None, provider="CPU", realtime=False))
    assert preview.overlay_text() == "3.2 fps  ·  CPU - not real time"
    # Both rates side by side: the output holds 25 fps, one picture in three is new.
    preview.set_stats(
        PreviewStats(fps=25.0, latency_ms=900, provider="CPU", realtime=False, unique_fps=8.3)
    )
    assert (
        preview.overlay_text() == "25.0 fps  ·  8.3 new/s  ·  delay 900 ms  ·  CPU - not real time"
    )
    # A delay of seconds is labelled and said in seconds, not "5019 ms" alone.
    preview.set_stats(PreviewStats(fps=25.0, latency_ms=5019, provider="CPU", realtime=True))
    assert preview.overlay_text() == "25.0 fps  ·  delay 5.0 s  ·  CPU"
    preview.grab()  # paints without error, overlay on
    preview.set_overlay_visible(False)
    preview.grab()


def test_task_runner_runs_in_order_off_the_gui_thread(qtbot: QtBot) -> None:
    runner = TaskRunner("test")
    gui = threading.get_ident()
    seen: list[tuple[str, object]] = []
    threads: list[int] = []
    queued = threading.Event()  # every task waits in the queue while the first one runs

    def work(n: int) -> int:
        threads.append(threading.get_ident())
        queued.wait(5)
        return n * n

    def boom() -> None:
        raise ValueError("no")

    for n in range(3):
        runner.submit(lambda n=n: work(n), on_done=lambda r: seen.append(("done", r)))
    runner.submit(boom, on_error=lambda e: seen.append(("error", str(e))))
    queued.set()
    qtbot.waitUntil(lambda: len(seen) == 4, timeout=5000)
    assert seen == [("done", 0), ("done", 1), ("done", 4), ("error", "no")]
    assert gui not in threads
    assert not runner.busy
    assert runner.shutdown(timeout=5)
    with pytest.raises(RuntimeError):
        runner.submit(lambda: None)


def test_shutdown_waits_for_the_running_task(qtbot: QtBot) -> None:
    runner = TaskRunner("slow")
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.3)  # real: a task still running at shutdown; load only makes it longer
        finished.set()

    runner.submit(slow)
    assert runner.shutdown(timeout=5)
    assert finished.is_set()


def test_closing_a_cancellable_runner_cancels_its_task_and_joins(qtbot: QtBot) -> None:
    parent = QObject()
    tasks = CancellableRunner("dialog", parent, close_timeout=5)
    first = tasks.begin()
    tasks.cancel()
    assert first.is_set() and tasks.cancelled
    flag = tasks.begin()  # the next task's flag starts clear; the old one stays set
    assert not flag.is_set() and not tasks.cancelled and first.is_set()
    started, outcome = threading.Event(), []

    def work() -> None:
        started.set()
        outcome.append(flag.wait(5))  # a task that runs until it is cancelled

    tasks.submit(work)
    assert started.wait(5)
    assert tasks.close()  # done() and closeEvent() both call it
    assert outcome == [True] and tasks.cancelled
    assert not tasks.runner._thread.is_alive()
    assert tasks.close()  # a second close is harmless
    with pytest.raises(RuntimeError):
        tasks.submit(lambda: None)


def test_vcam_help_puts_this_system_first(qtbot: QtBot) -> None:
    assert instructions("linux").index("v4l2loopback") < instructions("linux").index("OBS")
    assert instructions("win32").index("OBS Virtual Camera") < instructions("win32").index("v4l2")
    assert instructions("darwin").startswith("\n<p><b>macOS")
    assert "exclusive_caps=1" in instructions("linux")
    help_panel = VirtualCameraHelp()
    qtbot.addWidget(help_panel)
    help_panel.show()
    help_panel.set_reason("no loopback device <found>")
    assert help_panel.headline.toolTip() == "no loopback device <found>"
    assert "no loopback device <found>" in help_panel.details.toPlainText()
    assert not help_panel.details.isVisible()
    help_panel.toggle.click()
    assert help_panel.details.isVisible()
    with qtbot.waitSignal(help_panel.recheck_requested, timeout=1000):
        help_panel.recheck.click()


def test_installed_pyside_keeps_references_to_none_and_true() -> None:
    """PySide6 6.12.0 on Python 3.11 loses a reference to None per void call and to True per
    emit, and the interpreter aborts after a minute of live preview; pyproject.toml keeps it
    out. Whatever PySide6 is installed must not lose references."""

    class Source(QObject):
        fired = Signal(int)

    source = Source()
    got: list[int] = []
    source.fired.connect(got.append)
    label = QLabel()
    rounds = 2_000
    before = (sys.getrefcount(None), sys.getrefcount(True))
    for n in range(rounds):
        source.fired.emit(n)
        label.setText("x")
    after = (sys.getrefcount(None), sys.getrefcount(True))
    assert len(got) == rounds
    assert before[0] - after[0] < rounds // 2, "PySide6 loses references to None"
    assert before[1] - after[1] < rounds // 2, "PySide6 loses references to True"
