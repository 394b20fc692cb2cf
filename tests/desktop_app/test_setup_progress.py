"""Conversion and timing progress never freeze (issue 24, item 8): between progress reports
the spent and left times move on once a second, a previous run's duration moves the bar, and
the timing run after a conversion has its own estimate. Time is a virtual clock."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from desktop_app.model_setup import Measured, ModelSetupDialog
from desktop_app.runtime_services.models import RuntimeModels
from desktop_app.services import Progress
from runtime.model.download.model_download import DownloadOptions
from tests.support.hub_server import closed_port


@pytest.fixture
def dialog(qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelSetupDialog:
    monkeypatch.setenv("IMTALKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path / "cache"))
    options = DownloadOptions(endpoint=f"http://127.0.0.1:{closed_port()}", retry_wait=0.01)
    models = RuntimeModels(download_options=options, convert_command=[sys.executable])
    made = ModelSetupDialog(models)
    qtbot.addWidget(made)
    return made


def test_conversion_time_moves_between_reports(dialog: ModelSetupDialog) -> None:
    now = [100.0]
    dialog.time_source = lambda: now[0]
    dialog._working = True
    dialog._ticker.start()
    dialog._show_progress(Progress("convert", "Converting renderer (1/6)", 0.0))
    assert "estimating" in dialog.detail.text()
    now[0] += 20
    dialog._show_progress(Progress("convert", "Converting conditioner (2/6)", 2 / 6))
    first = dialog.detail.text()
    assert "20s so far, about 40s left" in first
    now[0] += 20  # a long stage: no report for 20 s
    dialog._tick()
    assert dialog.detail.text() != first
    assert "40s so far, about 1m20s left" in dialog.detail.text()
    assert dialog._ticker.isActive()
    dialog._finished(None)
    assert not dialog._ticker.isActive()


def test_timing_run_has_an_estimate_and_the_bar_moves(dialog: ModelSetupDialog) -> None:
    now = [0.0]
    dialog.time_source = lambda: now[0]
    dialog._working = True
    # The first timing run: the estimate comes from the stages done.
    dialog._show_progress(Progress("convert", "Converting sampler (6/6)", 5 / 6))
    now[0] += 30
    dialog._show_progress(Progress("measure", "Timing the avatar encoding", 0.0))
    assert "Timing the model" in dialog.summary.text()
    now[0] += 60
    dialog._show_progress(Progress("measure", "Timing the renderer at batch 2", 3 / 9))
    assert "1m00s so far, about 2m00s left" in dialog.detail.text()
    now[0] += 120
    dialog._finished(Measured("Real time at hop 5 with lookahead 2: no, 6.8x slower"))
    # The next timing run knows the last one took 3 minutes.
    dialog._working = True
    dialog._show_progress(Progress("measure", "Timing the avatar encoding", 0.0))
    now[0] += 90
    dialog._tick()
    assert "1m30s so far, about 1m30s left" in dialog.detail.text()
    assert dialog.progress.maximum() == 1000 and dialog.progress.value() == 500


def test_a_skipped_timing_run_is_not_kept_as_the_estimate(dialog: ModelSetupDialog) -> None:
    now = [0.0]
    dialog.time_source = lambda: now[0]
    dialog._working = True
    dialog._show_progress(Progress("measure", "Timing the avatar encoding", 0.0))
    now[0] += 2
    dialog._finished(Measured("Timing skipped; run `imtalker-cam bench` to measure later."))
    dialog._working = True
    dialog._show_progress(Progress("measure", "Timing the avatar encoding", 0.0))
    assert "estimating" in dialog.detail.text()
