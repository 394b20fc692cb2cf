"""Go Live on a machine whose set-up timing run found it far from real time: the very first Go
Live already says what the user will get and the way out (a GPU, a render server, offline
render), and only once the source has opened; never with a render server. The real window and
runtime engine with hardware fakes and stub graphs; the timing run's result is written as the
set-up leaves it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from desktop_app.live_bridge import LiveState
from desktop_app.main_window import MainWindow
from desktop_app.runtime_services import live as live_services
from runtime.engine import backend_options
from tests.support.bench_results import SLOW_INTERVAL_TEXT, write_slow_bench
from tests.support.fakes.camera import FakeCv2
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)
from tests.support.gui_window import Hops, WindowFactory


@pytest.fixture(autouse=True)
def _no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """The slow timing run is the CPU's (ONNX Runtime, as a result from before the backend was
    kept counts): it is quoted only where Go Live runs there too, so CUDA is absent here even
    on a machine that has it."""
    monkeypatch.setattr(backend_options, "cuda_usable", lambda: False)


class Questions(list[str]):
    """Every "not real time" question asked; answered No unless `yes` is set."""

    yes = False


@pytest.fixture
def questions(monkeypatch: pytest.MonkeyPatch) -> Questions:
    from PySide6.QtWidgets import QMessageBox

    asked = Questions()

    def question(parent: object, title: str, text: str, *args: object) -> Any:
        asked.append(text)
        return QMessageBox.StandardButton.Yes if asked.yes else QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", question)
    return asked


def graphs_of(window: MainWindow) -> Any:
    graphs = window.backend.models.model_state().graphs_dir
    assert graphs is not None
    return graphs


def test_the_first_go_live_after_a_slow_timing_run_asks_with_the_way_out(
    qtbot: QtBot, window: MainWindow, questions: Questions, hops: Hops
) -> None:
    write_slow_bench(graphs_of(window))
    assert window.live.go_live()
    qtbot.waitUntil(lambda: len(questions) == 1, timeout=10_000)
    text = questions[0]
    assert text.startswith(f"Not real time on this CPU: {SLOW_INTERVAL_TEXT}.")
    assert "GPU" in text and "Controls › Compute › Remote server" in text
    assert "imtalker-cam render" in text
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)
    assert hops.records == []  # No: nothing ran
    assert window.live_button.text() == "Go Live"

    questions.yes = True  # Yes: the session starts
    assert window.live.go_live()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.LIVE, timeout=20_000)
    assert len(questions) == 2
    window.live.toggle()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)


def test_a_webcam_that_cannot_open_is_said_before_the_question(
    qtbot: QtBot, make_window: WindowFactory, questions: Questions
) -> None:
    camera = FakeCv2()
    camera.present = False
    window = make_window(camera=camera)
    write_slow_bench(graphs_of(window))
    window.source.cam_radio.click()
    window.live.go_live()
    qtbot.waitUntil(lambda: "cannot be opened" in window.alerts.text(), timeout=10_000)
    assert window.bridge.state == LiveState.IDLE
    assert questions == []  # the source first: no question for a session that cannot start

    camera.present = True
    window.live.go_live()
    qtbot.waitUntil(lambda: len(questions) == 1, timeout=10_000)
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)


def test_a_file_source_is_decoded_once_per_go_live_with_the_question(
    qtbot: QtBot,
    window: MainWindow,
    questions: Questions,
    fixtures_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check before the question decodes the file; Yes starts on those samples."""
    decoded: list[Path] = []
    real = live_services.load_audio

    def counting(path: Any, **options: Any) -> Any:
        decoded.append(Path(path))
        return real(path, **options)

    monkeypatch.setattr(live_services, "load_audio", counting)
    speech = tmp_path / "speech.wav"
    shutil.copyfile(fixtures_dir / "audio_1.wav", speech)
    window.source.set_audio_file(speech)
    write_slow_bench(graphs_of(window))
    questions.yes = True
    assert window.live.go_live()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.LIVE, timeout=20_000)
    assert len(questions) == 1 and decoded == [speech]
    window.live.toggle()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)
