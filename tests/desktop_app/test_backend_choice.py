"""The compute backend chosen in the app (issue "Fast without NVIDIA", item 1): the Controls
panel's Backend choice is saved, the next Go Live opens the model on it, Auto without a timing
run stays on ONNX Runtime, and a saved value the app does not know loads as Auto. The real
window, engine and OpenVINO over the stub graphs; hardware is faked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from desktop_app.live_bridge import LiveState
from desktop_app.main_window import MainWindow
from desktop_app.runtime_services.live import RuntimeEngine
from desktop_app.settings import BACKEND_CHOICES, Quality, Settings, SettingsStore
from runtime.engine import backend_options
from runtime.model.execution import backends
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)


@pytest.fixture(autouse=True)
def _no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without NVIDIA (the probe would find none on CI either; this makes it so
    everywhere, since auto prefers CUDA)."""
    monkeypatch.setattr(backend_options, "cuda_usable", lambda: False)


def _go_live_and_stop(qtbot: QtBot, window: MainWindow) -> tuple[RuntimeEngine, str]:
    """Go Live until the status bar says where it runs, then stop: the engine and that line."""
    engine = window.backend.engine
    assert isinstance(engine, RuntimeEngine)
    assert window.live.go_live()
    status = window.provider_status
    qtbot.waitUntil(lambda: "Running on" in status.text(), timeout=60_000)
    shown = status.text()
    window.bridge.stop()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=20_000)
    return engine, shown


def test_the_runtimes_choices_are_the_apps() -> None:
    assert BACKEND_CHOICES == backends.BACKEND_CHOICES


def test_openvino_chosen_in_the_panel_is_saved_and_opens_the_model_on_it(
    qtbot: QtBot, window: MainWindow
) -> None:
    combo = window.controls.backend
    assert combo.currentData() == "auto"
    combo.setCurrentIndex(combo.findData("openvino"))
    qtbot.waitUntil(lambda: window.settings.quality.backend == "openvino", timeout=3_000)
    qtbot.waitUntil(
        lambda: window.prefs.store.load()[0].quality.backend == "openvino", timeout=3_000
    )
    engine, shown = _go_live_and_stop(qtbot, window)
    assert engine._model_set is not None and engine._model_set.backend == "openvino"
    assert engine._model_set.providers[0].startswith("OpenVINO/")
    assert "Running on OpenVINO" in shown

    combo.setCurrentIndex(combo.findData("onnxruntime"))  # changed: the next Go Live reopens
    qtbot.waitUntil(lambda: window.settings.quality.backend == "onnxruntime", timeout=3_000)
    engine, shown = _go_live_and_stop(qtbot, window)
    assert engine._model_set is not None and engine._model_set.backend == "onnxruntime"
    assert "Running on CPU" in shown


def test_auto_without_a_timing_run_stays_on_onnx_runtime(qtbot: QtBot, window: MainWindow) -> None:
    engine, _ = _go_live_and_stop(qtbot, window)
    assert engine._model_set is not None
    assert engine._model_set.backend == "onnxruntime"
    assert engine._model_set.providers[0] == "CPUExecutionProvider"


def test_openvino_is_greyed_out_with_the_reason_when_not_installed(
    monkeypatch: pytest.MonkeyPatch,
    make_window: WindowFactory,  # noqa: F405
) -> None:
    from desktop_app.runtime_services import live

    monkeypatch.setattr(live, "openvino_installed", lambda: False)
    window = make_window()
    combo = window.controls.backend
    item = combo.model().item(combo.findData("openvino"))  # type: ignore[attr-defined]
    assert not item.isEnabled() and "not installed" in item.toolTip()
    assert combo.model().item(combo.findData("auto")).isEnabled()  # type: ignore[attr-defined]


def test_an_unknown_saved_backend_loads_as_auto_with_a_notice(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    raw = {"version": 1, "settings": {"quality": {"backend": "tensorflow", "steps": 4}}}
    store.path.write_text(json.dumps(raw))
    settings, notice = store.load()
    assert settings == Settings(quality=Quality(steps=4))
    assert settings.quality.backend == "auto"
    assert notice is not None and "quality.backend" in notice


def test_bf16_is_offered_with_openvino_only(qtbot: QtBot, window: MainWindow) -> None:
    backend, precision = window.controls.backend, window.controls.precision
    bf16 = precision.model().item(precision.findData("bf16"))  # type: ignore[attr-defined]
    assert not bf16.isEnabled() and "OpenVINO" in bf16.toolTip()
    backend.setCurrentIndex(backend.findData("openvino"))
    assert bf16.isEnabled()
    precision.setCurrentIndex(precision.findData("bf16"))
    assert window.controls.quality.precision == "bf16"
    backend.setCurrentIndex(backend.findData("auto"))  # bf16 goes with OpenVINO
    assert not bf16.isEnabled()
    assert window.controls.quality == Quality(precision="fp32", backend="auto")
    qtbot.waitUntil(lambda: window.settings.quality.precision == "fp32", timeout=3_000)
