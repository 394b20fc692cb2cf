"""The model set-up dialog over the real store, download, import and conversion code.

The hub is the local stand-in (tests/support/hub_server.py, 127.0.0.1 only) and the exporter child
process is tests/support/fake_exporter.py (it writes the stub graphs), so the dialog, its
worker thread, progress, cancel and the offline help run for real.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from huggingface_hub import close_session
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from desktop_app import theme
from desktop_app.model_setup import ModelSetupDialog, describe, summarise_missing
from desktop_app.runtime_services.models import RuntimeModels
from desktop_app.services import Progress
from runtime.model.download.model_download import DownloadOptions
from tests.support.gui import unnamed
from tests.support.hub_server import FakeHub, closed_port, standin_files, write_tree

EXPORTER = [sys.executable, "-m", "tests.support.fake_exporter"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("IMTALKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    real = socket.getaddrinfo

    def loopback_only(host: object, *args: object, **kwargs: object) -> object:
        if host not in ("127.0.0.1", "localhost", "::1", b"127.0.0.1"):
            raise OSError(f"test tried to reach {host}")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    close_session()
    yield
    close_session()


def _models(endpoint: str, *, bench_clock: Callable[[], float] | None = None) -> RuntimeModels:
    options = DownloadOptions(endpoint=endpoint, retry_wait=0.01, progress_interval=0.0)
    if bench_clock is None:
        return RuntimeModels(download_options=options, convert_command=EXPORTER)
    return RuntimeModels(
        download_options=options, convert_command=EXPORTER, bench_clock=bench_clock
    )


class SlowMachineClock:
    """The timing run's clock on a machine far from real time: every stage it times takes a
    second (each reading of it is a second after the one before)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _dialog(qtbot: QtBot, models: RuntimeModels) -> tuple[ModelSetupDialog, list[Progress]]:
    theme.apply(QApplication.instance())  # type: ignore[arg-type]
    dialog = ModelSetupDialog(models)
    qtbot.addWidget(dialog)
    seen: list[Progress] = []
    dialog._relay.progress.connect(seen.append)
    dialog.show()
    return dialog, seen


def test_texts() -> None:
    missing = (
        "renderer.ckpt",
        "wav2vec2-base-960h/config.json",
        "wav2vec2-base-960h/pytorch_model.bin",
    )
    # Counted as the manual download steps count ("download these 6 files"): every file.
    assert summarise_missing(missing) == "3 files (renderer.ckpt, 2 in wav2vec2-base-960h/)"
    assert summarise_missing(("renderer.ckpt",)) == "renderer.ckpt"
    line = describe(Progress("download", "Downloading x", 0.5, speed=2_000_000, eta=125))
    assert line == "Downloading x  ·  50%  ·  2.0 MB/s  ·  2m05s left"


def test_download_then_convert_with_progress(qtbot: QtBot, output_dir: Path) -> None:
    files = standin_files()
    with FakeHub(files) as hub:
        models = _models(hub.url)
        dialog, seen = _dialog(qtbot, models)
        assert not dialog.refresh().ready
        assert dialog.download_button.isVisible() and dialog.import_button.isVisible()
        assert "1.4 GB" in dialog.download_button.text()  # the size, before downloading
        assert not dialog.done_button.isVisible()
        assert unnamed(dialog) == []
        dialog.grab().save(str(output_dir / "model_setup_dialog.png"))
        with qtbot.waitSignal(dialog.ready, timeout=240_000) as ready:
            dialog.download_button.click()
            assert dialog.working and dialog.cancel_button.isVisible()
    graphs = ready.args[0]
    assert (graphs / "renderer.onnx").is_file()
    downloads = [p for p in seen if p.phase == "download"]
    conversions = [p for p in seen if p.phase == "convert"]
    assert downloads and conversions
    fractions = [p.fraction for p in downloads if p.fraction is not None]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert all(p.label.startswith(("Downloading", "Checking")) for p in downloads)
    assert [p.label for p in conversions][-1] == "Converting motion_encoder (6/6)"
    assert "Still needed" not in dialog.summary.text()
    assert not dialog.working
    assert dialog.done_button.isVisible() and not dialog.download_button.isVisible()
    assert "ready to go live" in dialog.summary.text()
    assert models.model_state().ready
    # The stand-in files are v1 checkpoints (checked by the real inspector): the dialog says so.
    assert models.model_state().model_version == "v1"
    assert "The model (IMTalker v1) is installed" in dialog.summary.text()
    # Timed once after the conversion (imtalker-cam bench on the converted graphs), verdict
    # shown and kept in the cache folder for the live engine.
    assert next(p.label for p in seen if p.phase == "measure") == "Timing the avatar encoding"
    assert dialog.verdict is not None
    # What it ran on is said and kept: the app quotes it only for that backend.
    assert dialog.verdict.startswith("Real time at hop 5 with lookahead 2 on onnxruntime/")
    assert dialog.detail.text() == dialog.verdict
    from runtime.core import paths
    from runtime.engine.bench import read_result

    kept = read_result(paths.cache_dir())
    assert kept is not None and kept.choice.backend == "onnxruntime"


def test_cancel_keeps_what_was_downloaded(qtbot: QtBot) -> None:
    with FakeHub(standin_files()) as hub:
        models = _models(hub.url)
        dialog, seen = _dialog(qtbot, models)

        def cancel_on_first(progress: Progress) -> None:
            if progress.phase == "download":
                dialog.cancel()

        dialog._relay.progress.connect(cancel_on_first)
        dialog.download_button.click()
        qtbot.waitUntil(lambda: not dialog.working, timeout=30_000)
    assert "Download cancelled" in dialog.detail.text()
    assert dialog.download_button.isVisible()  # it can be started again
    assert not models.model_state().ready
    cancelled_at = [p for p in seen if p.phase == "download"][-1]
    assert cancelled_at.fraction is not None and cancelled_at.fraction < 1.0


def test_offline_says_what_to_do(qtbot: QtBot, output_dir: Path) -> None:
    models = _models(f"http://127.0.0.1:{closed_port()}")
    dialog, _ = _dialog(qtbot, models)
    dialog.download_button.click()
    qtbot.waitUntil(lambda: not dialog.working, timeout=30_000)
    assert dialog.detail.text() == "No internet connection (the hub could not be reached)."
    assert "Cannot reach" in dialog.detail.toolTip()  # the technical reason stays at hand
    assert dialog.help.isVisible()
    steps = dialog.help.toPlainText()
    assert "renderer.ckpt" in steps and "/resolve/" in steps
    assert "Import files…" in steps  # the GUI's next step, not a terminal command
    assert "imtalker-cam models import" not in steps
    # Fully visible at the dialog's own size, above the buttons; links clickable and copyable.
    qtbot.wait(50)
    assert dialog.help.verticalScrollBar().maximum() == 0
    assert dialog.help.horizontalScrollBar().maximum() == 0
    help_bottom = dialog.help.mapTo(dialog, dialog.help.rect().bottomLeft()).y()
    assert (
        help_bottom < dialog.import_button.mapTo(dialog, dialog.import_button.rect().topLeft()).y()
    )
    copy_top = dialog.copy_links_button.mapTo(dialog, dialog.copy_links_button.rect().topLeft())
    assert help_bottom < copy_top.y()
    assert dialog.help.openExternalLinks() and "<a href=" in dialog.help.toHtml()
    links = dialog.copy_links()  # the repository page and the six files
    assert len(links) == 7 and QApplication.clipboard().text().splitlines() == links
    dialog.grab().save(str(output_dir / "model_setup_offline.png"))


def test_import_then_convert_on_a_slow_machine(qtbot: QtBot, tmp_path: Path) -> None:
    """Imported and converted on a machine the timing run finds far from real time: the set-up
    does not end "ready to go live" but says what live gives here and what to do instead."""
    source = write_tree(tmp_path / "from-usb", standin_files())
    models = _models(f"http://127.0.0.1:{closed_port()}", bench_clock=SlowMachineClock())
    dialog, seen = _dialog(qtbot, models)
    with qtbot.waitSignal(dialog.ready, timeout=240_000):
        dialog.start_import([source])
    assert any(p.phase == "copy" for p in seen)
    assert any(p.phase == "convert" for p in seen)
    assert models.model_state().ready
    assert (source / "renderer.ckpt").is_file()  # the user's files are copied, never moved
    qtbot.waitUntil(lambda: not dialog.working, timeout=60_000)
    assert dialog.verdict is not None and ": no, " in dialog.verdict
    assert dialog.detail.text() == dialog.verdict
    summary = dialog.summary.text()
    assert "ready to go live" not in summary
    assert "too slow for live video" in summary
    assert "Not real time on this CPU: about 1 new picture every 3 s." in summary
    assert "GPU" in summary and "Controls › Compute › Remote server" in summary
    assert "imtalker-cam render" in summary


def test_closing_mid_conversion_stops_the_worker(qtbot: QtBot, tmp_path: Path) -> None:
    write_tree(tmp_path / "data" / "models", standin_files())
    models = _models(f"http://127.0.0.1:{closed_port()}")
    models.store.import_files([tmp_path / "data" / "models"])  # adopt them in place
    slow = RuntimeModels(
        download_options=models.download_options,
        convert_command=[*EXPORTER, "--delay", "2"],
    )
    dialog, seen = _dialog(qtbot, slow)
    assert dialog.convert_button.isVisible()
    dialog.convert_button.click()
    qtbot.waitUntil(lambda: any(p.phase == "convert" for p in seen), timeout=30_000)
    dialog.reject()  # cancels and joins the worker
    assert not dialog._tasks.runner._thread.is_alive()
    assert not slow.model_state().ready


def test_conversion_says_time_spent_and_left_and_not_still_needed(
    qtbot: QtBot, tmp_path: Path
) -> None:
    models = _models(f"http://127.0.0.1:{closed_port()}")
    dialog, _ = _dialog(qtbot, models)
    assert "Still needed" in dialog.summary.text()
    now = [100.0]
    dialog.time_source = lambda: now[0]
    dialog._working = True  # as during a download that goes on into the conversion
    dialog._show_progress(Progress("download", "Downloading renderer.ckpt", 0.5))
    assert "1.4 GB" in dialog.summary.text()
    dialog._show_progress(Progress("convert", "Converting renderer (1/6)", 0.0))
    assert "Still needed" not in dialog.summary.text()
    assert "Converting the model" in dialog.summary.text()
    now[0] += 30
    dialog._show_progress(Progress("convert", "Converting renderer (2/6)", 2 / 6))
    # No earlier conversion: the estimate comes from the graphs done so far.
    assert "30s so far" in dialog.detail.text() and "about 1m00s left" in dialog.detail.text()
    now[0] += 60
    dialog._finished(None)  # the conversion's duration is kept for the next estimate
    dialog._working = True
    dialog._clock = None
    dialog._show_progress(Progress("convert", "Converting renderer (1/6)", 0.0))
    now[0] += 20
    dialog._show_progress(Progress("convert", "Converting velocity (2/6)", 2 / 6))
    assert "about 1m10s left" in dialog.detail.text()  # 90 s last time, 20 s spent


def test_cancelling_an_import_says_what_is_kept(qtbot: QtBot, tmp_path: Path) -> None:
    source = write_tree(tmp_path / "from-usb", standin_files())
    models = _models(f"http://127.0.0.1:{closed_port()}")
    dialog, _ = _dialog(qtbot, models)

    def cancel_on_copy(progress: Progress) -> None:
        if progress.phase == "copy":
            dialog.cancel()

    dialog._relay.progress.connect(cancel_on_copy)
    dialog.start_import([source])
    qtbot.waitUntil(lambda: not dialog.working, timeout=30_000)
    assert dialog.detail.text().startswith("Import cancelled")
    assert "downloaded" not in dialog.detail.text()
