"""What the app says Go Live will give, by backend (issue 22): a timing run or a live session
counts only for the backend, device and precision the next session resolves to from the
Backend and precision settings. The real engine, settings resolution and result files over the
stub graphs; no CUDA (faked absent, since Auto prefers it) and an OpenVINO with a fake GPU
where a test needs one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from desktop_app.runtime_services.devices import RuntimeDevices
from desktop_app.runtime_services.live import RuntimeEngine
from desktop_app.runtime_services.models import RuntimeModels
from desktop_app.settings import Quality
from runtime.engine import backend_options
from runtime.engine.bench import RESULT_FILE
from tests.support import stub_graphs
from tests.support.bench_results import SLOW_INTERVAL_TEXT, write_slow_bench
from tests.support.fakes.openvino_devices import FakeCore, install


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stub_graphs.write_stub_graphs(tmp_path_factory.mktemp("stubs"))


@pytest.fixture
def engine(stubs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RuntimeEngine:
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(backend_options, "cuda_usable", lambda: False)
    install(monkeypatch, FakeCore())  # OpenVINO with the CPU only
    return RuntimeEngine(models=RuntimeModels(graphs_dir=stubs), devices=RuntimeDevices())


ORT = Quality(backend="onnxruntime")
OPENVINO = Quality(backend="openvino")
AUTO = Quality()
BF16 = Quality(precision="bf16")  # auto: bf16 runs on OpenVINO only


def slow_on(text: str | None, where: str) -> bool:
    return text is not None and text.startswith(f"Not real time {where}: {SLOW_INTERVAL_TEXT}.")


def test_a_timing_run_on_onnx_runtime_is_not_quoted_for_openvino_or_bf16(
    engine: RuntimeEngine, stubs: Path
) -> None:
    write_slow_bench(stubs, backend="onnxruntime/CPU/fp32")
    assert slow_on(engine.expectation(ORT), "on this CPU")
    assert slow_on(engine.expectation(AUTO), "on this CPU")  # auto without trials: ORT CPU
    assert engine.expectation(OPENVINO) is None
    assert engine.expectation(BF16) is None
    assert engine.expectation(Quality(backend="openvino", precision="bf16")) is None


def test_a_timing_run_on_openvino_is_quoted_for_openvino_only(
    engine: RuntimeEngine, stubs: Path
) -> None:
    write_slow_bench(stubs, backend="openvino/CPU/fp32")
    assert slow_on(engine.expectation(OPENVINO), "on OpenVINO CPU")
    assert engine.expectation(ORT) is None
    assert engine.expectation(AUTO) is None
    assert engine.expectation(Quality(backend="openvino", precision="bf16")) is None


def test_openvino_on_a_gpu_is_not_quoted_from_its_cpu(
    engine: RuntimeEngine, stubs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_slow_bench(stubs, backend="openvino/CPU/fp32")
    install(monkeypatch, FakeCore(devices=("CPU", "GPU.0")))  # OpenVINO's auto takes the GPU
    assert engine.expectation(OPENVINO) is None
    write_slow_bench(stubs, backend="openvino/GPU/fp32")
    assert slow_on(engine.expectation(OPENVINO), "on OpenVINO GPU")


def test_a_result_from_before_the_backend_was_kept_counts_as_onnx_runtime(
    engine: RuntimeEngine, stubs: Path, tmp_path: Path
) -> None:
    write_slow_bench(stubs)
    path = tmp_path / RESULT_FILE
    data = json.loads(path.read_text())
    del data["backend"]  # as results were written before issue 22
    path.write_text(json.dumps(data))
    assert slow_on(engine.expectation(ORT), "on this CPU")
    assert engine.expectation(OPENVINO) is None


def test_the_last_live_session_is_quoted_only_for_its_backend(
    engine: RuntimeEngine, stubs: Path
) -> None:
    engine._remember((stubs, "openvino/CPU/fp32"), False, 3.1)
    assert engine.expectation(ORT) is None  # nothing measured on ONNX Runtime
    said = engine.expectation(OPENVINO)
    assert said is not None and "about 1 new picture every 3.1 s" in said
    write_slow_bench(stubs, backend="onnxruntime/CPU/fp32")  # the timing run is still quoted
    assert slow_on(engine.expectation(ORT), "on this CPU")
    engine._remember((stubs, "onnxruntime/CPU/fp32"), True, 0.04)  # a later session kept up
    assert engine.expectation(ORT) is None
    engine._remember(None, False, 9.0)  # a render server's session: not this computer
    assert engine.expectation(ORT) is None


def test_with_the_model_open_the_next_session_is_the_open_one(
    engine: RuntimeEngine, stubs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Go Live keeps an open model set whose settings did not change, so what it runs on is
    known without resolving (and probing providers) on the GUI thread; nothing measured on the
    graphs asks nothing either."""
    from desktop_app.runtime_services import live

    resolved: list[str] = []
    real = live.session_choice

    def counted(**kwargs: Any) -> Any:
        resolved.append(kwargs["backend"])
        return real(**kwargs)

    monkeypatch.setattr(live, "session_choice", counted)
    assert engine.expectation(OPENVINO) is None and resolved == []  # nothing measured
    engine._open_models(OPENVINO)
    resolved.clear()
    write_slow_bench(stubs, backend="openvino/CPU/fp32")
    assert slow_on(engine.expectation(OPENVINO), "on OpenVINO CPU")
    assert resolved == []
    assert engine.expectation(ORT) is None and resolved == ["onnxruntime"]
