"""`imtalker-cam bench`: the verdict arithmetic, the cached result, and a run on stub graphs
through the live engine's device-resident code (timings from a fake clock)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from runtime.commands import cli
from runtime.engine.bench import (
    RESULT_FILE,
    BenchResult,
    BenchSettings,
    read_result,
    run_bench,
    write_result,
)
from runtime.model.compile import quantize
from runtime.model.execution.model_set import open_model_set
from runtime.model.execution.sessions import SessionOptions
from tests.support import stub_graphs


def result(*, renderer_ms: float, on_gpu: bool, hop: int = 5) -> BenchResult:
    return BenchResult(
        provider="CUDA, 2 threads" if on_gpu else "CPU, 2 threads",
        on_gpu=on_gpu,
        precision="fp32",
        settings=BenchSettings(hop=hop, lookahead=2),
        avatar_encoding_ms=50.0,
        renderer_ms_per_frame={b: renderer_ms / (1 + 0.1 * (b - 1)) for b in range(1, hop + 1)},
        audio_encoder_ms_per_hop=20.0,
        sampler_ms_per_hop=30.0,
        renderer_working_mb_per_frame=260.0,
        peak_rss_mb=1200.0,
    )


def test_verdict_real_time_with_headroom() -> None:
    r = result(renderer_ms=20.0, on_gpu=True)
    # GPU: the hop renders as one batch of 5 (20 / 1.4 ms per frame).
    assert r.render_batch == 5
    assert r.hop_compute_ms == pytest.approx(20 + 30 + 5 * 20 / 1.4)
    assert r.real_time and r.real_time_factor == pytest.approx(r.hop_compute_ms / 200)
    assert r.verdict == "real time at hop 5 with lookahead 2: yes, headroom 39%"


def test_verdict_not_real_time_names_the_factor() -> None:
    r = result(renderer_ms=1300.0, on_gpu=False)
    assert r.render_batch == 1  # the engine renders one frame at a time on a CPU
    assert not r.real_time
    assert r.real_time_factor == pytest.approx((20 + 30 + 5 * 1300) / 200)
    assert (
        r.verdict
        == "real time at hop 5 with lookahead 2: no, 32.8x slower than real time (0.8 fps of 25)"
    )


def test_result_round_trips_through_the_cache_dir(tmp_path: Path) -> None:
    r = result(renderer_ms=40.0, on_gpu=True)
    path = write_result(r, tmp_path)
    assert path == tmp_path / RESULT_FILE
    data = json.loads(path.read_text())
    assert data["derived"]["verdict"] == r.verdict
    assert read_result(tmp_path) == r
    assert read_result(tmp_path / "none") is None
    path.write_text("{not json")
    assert read_result(tmp_path) is None  # a cache: unreadable means measure again
    path.write_text(json.dumps({**data, "format": 99}))
    assert read_result(tmp_path) is None


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="hop"):
        BenchSettings(hop=0)
    with pytest.raises(ValueError, match="nfe"):
        BenchSettings(nfe=1)


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stub_graphs.write_stub_graphs(tmp_path_factory.mktemp("bench_stubs"))


def test_run_bench_on_stub_graphs_with_a_fake_clock(stubs: Path) -> None:
    ticks = iter(range(1_000_000))

    def clock() -> float:  # every reading 10 ms after the previous one
        return next(ticks) * 0.010

    models = open_model_set(stubs, options=SessionOptions(providers=("CPUExecutionProvider",)))
    stages: list[str] = []
    r = run_bench(
        models, settings=BenchSettings(hop=3, repeats=2), clock=clock, progress=stages.append
    )
    assert stages[0] == "avatar encoding" and stages[-1] == "sampler"
    assert sorted(r.renderer_ms_per_frame) == [1, 2, 3]
    # One clock step per timed call: 10 ms per call, divided by the batch for the renderer.
    assert r.avatar_encoding_ms == pytest.approx(10.0)
    assert r.renderer_ms_per_frame[2] == pytest.approx(5.0)
    assert r.sampler_ms_per_hop == pytest.approx(10.0)
    assert r.provider.startswith("CPU") and not r.on_gpu
    assert r.backend == "onnxruntime/CPU/fp32"  # what the models ran on: the key it is quoted by
    if Path("/proc/self/clear_refs").exists():
        assert r.renderer_working_mb_per_frame is not None and r.peak_rss_mb is not None


def test_bench_command_json(
    stubs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path))
    code = cli.main(["bench", "--json", "--graphs", str(stubs), "--repeats", "1", "--nfe", "3"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["hop"] == 5 and data["settings"]["nfe"] == 3
    assert set(data["renderer_ms_per_frame"]) == {"1", "2", "3", "4", "5"}
    # Auto on a machine without CUDA: every backend/precision was tried against ORT fp32 and
    # the stages were timed on the one chosen, which the verdict names.
    tried = [f"{t['backend']}/{t['device']}/{t['precision']}" for t in data["renderer_backends"]]
    assert tried[0] == "onnxruntime/CPU/fp32" and data["chosen_backend"] in tried
    if quantize.unavailable_reason() is None:
        # The int8 renderer was made first (it was missing), then measured like the others.
        int8 = next(t for t in data["renderer_backends"] if t["precision"] == "int8")
        assert not int8.get("error") and int8["mean_abs_diff"] is not None
    assert len(data["sampler_backends"]) == len(tried)
    assert data["derived"]["verdict"].startswith(
        f"real time at hop 5 with lookahead 2 on {data['chosen_backend']} (auto's choice): "
    )
    assert read_result(tmp_path) is not None  # kept for the engine's Auto mode and the GUI


def test_bench_command_human_and_bad_model(
    stubs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "nncf", None)  # as where the int8 extra is not installed
    args = ["bench", "--graphs", str(stubs), "--repeats", "1", "--nfe", "2", "--no-save"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "renderer at batch 5" in out and "Real time at hop 5 with lookahead 2" in out
    if importlib.util.find_spec("openvino") is not None:
        assert "note: int8 not tried: int8 needs NNCF" in out and "imtalker-cam[int8]" in out
        assert "/int8" not in out
    assert not (tmp_path / RESULT_FILE).exists()
    assert cli.main(["bench", "--graphs", str(tmp_path / "nothing")]) == 1
    assert cli.main(["bench", "--graphs", str(stubs), "--hop", "0"]) == 2
