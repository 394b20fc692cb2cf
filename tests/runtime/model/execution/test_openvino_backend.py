"""The OpenVINO backend behind the graph-session interface (stub graphs with the real
contract): contract checks, the device-resident path, cancellation, precision and device
selection with their fallbacks (fake GPU/NPU devices, tests/fakes/openvino_devices.py), the
resolution of ``--backend auto`` and the backend trials `bench` lists."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from runtime.commands import device_args
from runtime.commands.bench import format_result
from runtime.engine.backend_trials import RendererTrial, SamplerTrial, choose, run_trials
from runtime.engine.bench import BenchResult, BenchSettings, chosen_backend, write_result
from runtime.model import contract as C
from runtime.model.execution.backends import (
    REFERENCE,
    BackendChoice,
    candidates,
    resolve,
)
from runtime.model.execution.device_graphs import DeviceGraph, DeviceRenderer
from runtime.model.execution.model_set import open_model_set
from runtime.model.execution.openvino_sessions import OpenVinoSession, pick_device
from runtime.model.execution.sessions import ContractError, GraphSession, SessionOptions
from tests.runtime.model.execution.test_sessions import avatar
from tests.support import stub_graphs
from tests.support.fakes.openvino_devices import FakeCore, install

OV = SessionOptions(backend="openvino", openvino_device="CPU")
ORT_CPU = SessionOptions(providers=("CPUExecutionProvider",))


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stub_graphs.write_stub_graphs(tmp_path_factory.mktemp("stubs"), velocity_gain=0.5)


def test_openvino_renderer_matches_onnxruntime_through_the_device_path(stubs: Path) -> None:
    rng = np.random.default_rng(3)
    tensors = avatar(0.4, rng)
    session = OpenVinoSession(C.RENDERER, stubs / C.RENDERER.filename, options=OV)
    reference = GraphSession(C.RENDERER, stubs / C.RENDERER.filename, options=ORT_CPU)
    device = DeviceRenderer(session)
    device.use(tensors)
    first = None
    for batch in (1, 3, 1):  # each batch size has its own request and output buffers
        motion = rng.standard_normal((batch, 32)).astype(np.float32)
        got = device.render(motion)
        want = reference.run({**tensors, "motion": motion})["frames"]
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(
            session.run({**tensors, "motion": motion})["frames"], want, atol=1e-5
        )
        if batch == 1:
            # Preallocated outputs: the same host buffer every run of that batch size.
            first = got if first is None else first
            assert got.ctypes.data == first.ctypes.data
    # A new avatar reaches the shared input buffers (no rebinding needed).
    other = avatar(0.9)
    device.use(other)
    motion = np.zeros((1, 32), np.float32)
    np.testing.assert_allclose(
        device.render(motion), reference.run({**other, "motion": motion})["frames"], atol=1e-5
    )


def test_openvino_model_set_runs_every_graph(stubs: Path) -> None:
    models = open_model_set(stubs, options=OV)
    assert set(models.sessions) == {s.name for s in C.graphs(models.version)}
    assert models.backend == "openvino" and not models.on_gpu
    assert models.providers == ("OpenVINO/CPU",)
    assert models.summary().startswith("OpenVINO CPU f32")
    velocity = DeviceGraph(models[C.VELOCITY.name])
    reference = GraphSession(C.VELOCITY, stubs / C.VELOCITY.filename, options=ORT_CPU)
    rng = np.random.default_rng(5)
    feeds = {
        t.name: rng.standard_normal([d if isinstance(d, int) else 2 for d in t.shape]).astype(
            t.dtype
        )
        for t in C.VELOCITY.inputs
    }
    want = reference.run(feeds)
    for name, value in velocity.run(feeds).items():
        np.testing.assert_allclose(value, want[name], rtol=1e-5, atol=1e-5)


def test_openvino_contract_check(stubs: Path, tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="missing input 'source'"):
        OpenVinoSession(C.AVATAR_ENCODER, stubs / C.RENDERER.filename, options=OV)
    model = stub_graphs.renderer()
    for value in model.graph.input:
        if value.name == "motion":
            value.type.tensor_type.shape.dim[0].dim_value = 2  # a batch exported as fixed
    onnx.save(model, str(tmp_path / "renderer.onnx"))
    with pytest.raises(ContractError, match="input 'motion' axis 0"):
        OpenVinoSession(C.RENDERER, tmp_path / "renderer.onnx", options=OV)


def test_a_run_cancelled_from_another_thread_raises(stubs: Path) -> None:
    session = OpenVinoSession(C.RENDERER, stubs / C.RENDERER.filename, options=OV)
    options = ort.RunOptions()
    options.terminate = True
    feeds = {**avatar(0.2), "motion": np.zeros((1, 32), np.float32)}
    with pytest.raises(RuntimeError, match="cancelled"):
        session.run(feeds, run_options=options)
    options.terminate = False  # the engine's flag is read per run, not latched
    assert session.run(feeds, run_options=options)["frames"].shape == (1, 3, 512, 512)


def test_bf16_where_the_cpu_has_it_else_fp32_with_a_notice(
    stubs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bf16 = SessionOptions(backend="openvino", precision="bf16", openvino_device="CPU")
    feeds = {**avatar(0.2), "motion": np.zeros((1, 32), np.float32)}
    core = install(monkeypatch, FakeCore(capabilities={"CPU": ("FP32", "BF16", "INT8")}))
    session = OpenVinoSession(C.RENDERER, stubs / C.RENDERER.filename, options=bf16)
    session.run(feeds)
    assert session.precision == "bf16" and not session.notices
    assert core.compiled[-1][1]["INFERENCE_PRECISION_HINT"] == "bf16"
    core = install(monkeypatch, FakeCore(capabilities={"CPU": ("FP32", "INT8")}))
    session = OpenVinoSession(C.RENDERER, stubs / C.RENDERER.filename, options=bf16)
    session.run(feeds)
    assert session.precision == "f32"
    assert core.compiled[-1][1]["INFERENCE_PRECISION_HINT"] == "f32"
    assert "no native bf16" in session.summary()


def test_bf16_only_with_openvino() -> None:
    with pytest.raises(ValueError, match="OpenVINO"):
        SessionOptions(precision="bf16")


def test_auto_device_takes_the_gpu_when_listed(
    stubs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = install(monkeypatch, FakeCore(devices=("CPU", "GPU.0", "NPU")))
    options = SessionOptions(backend="openvino")
    session = OpenVinoSession(C.RENDERER, stubs / C.RENDERER.filename, options=options)
    frames = session.run({**avatar(0.3), "motion": np.zeros((2, 32), np.float32)})["frames"]
    assert frames.shape == (2, 3, 512, 512)
    assert [d for d, _ in core.compiled] == ["GPU"]
    assert session.providers == ("OpenVINO/GPU",) and session.on_gpu and not session.notices
    assert "INFERENCE_NUM_THREADS" not in core.compiled[0][1]  # CPU threads are a CPU setting


def test_a_gpu_that_cannot_compile_falls_back_to_the_cpu_with_a_notice(
    stubs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = install(monkeypatch, FakeCore(devices=("CPU", "GPU.0"), broken=("GPU",)))
    session = OpenVinoSession(C.RENDERER, stubs / C.RENDERER.filename, options=SessionOptions(
        backend="openvino", openvino_device="GPU"))  # fmt: skip
    assert session.providers == ("OpenVINO/GPU",)  # compiled at the first run's shapes
    feeds = {**avatar(0.3), "motion": np.zeros((1, 32), np.float32)}
    assert session.run(feeds)["frames"].shape == (1, 3, 512, 512)
    session.run({**feeds, "motion": np.zeros((2, 32), np.float32)})
    assert [d for d, _ in core.compiled] == ["GPU", "CPU", "CPU"]  # the GPU is not retried
    assert session.providers == ("OpenVINO/CPU",) and not session.on_gpu
    assert "GPU could not compile" in session.summary() and "clCreateContext" in session.summary()


def test_an_npu_asked_for_and_absent_is_a_notice(
    stubs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, FakeCore(devices=("CPU",)))
    session = OpenVinoSession(C.RENDERER, stubs / C.RENDERER.filename, options=SessionOptions(
        backend="openvino", openvino_device="NPU"))  # fmt: skip
    assert session.providers == ("OpenVINO/CPU",)
    assert session.notices == ["OpenVINO has no NPU here; using the CPU"]


def test_pick_device() -> None:
    assert pick_device("auto", ("CPU",)) == "CPU"
    assert pick_device("auto", ("CPU", "GPU.0", "GPU.1")) == "GPU"
    assert pick_device("auto", ("CPU", "NPU")) == "CPU"  # the NPU only when asked for
    assert pick_device("NPU", ("CPU", "NPU")) == "NPU"
    assert pick_device("GPU", ("CPU",)) == "CPU"


# -- auto -------------------------------------------------------------------------------------


def test_auto_resolution() -> None:
    ov_cpu = BackendChoice(backend="openvino", device="CPU", precision="fp32")
    kw = {"precision": "fp32", "openvino": True}
    assert resolve("auto", cuda_usable=True, measured=ov_cpu, **kw).label == (
        "onnxruntime/CUDA/fp32"
    )
    assert resolve("auto", cuda_usable=False, measured=ov_cpu, **kw) == ov_cpu
    assert resolve("auto", cuda_usable=False, measured=None, **kw) == REFERENCE
    # A measured OpenVINO choice is not taken where OpenVINO is not installed.
    assert resolve("auto", cuda_usable=False, measured=ov_cpu, precision="fp32",
                   openvino=False) == REFERENCE  # fmt: skip
    assert resolve("auto", cuda_usable=False, measured=None, precision="bf16",
                   openvino=True).backend == "openvino"  # fmt: skip
    assert resolve("onnxruntime", cuda_usable=False, measured=ov_cpu, **kw) == REFERENCE
    assert resolve("openvino", cuda_usable=True, measured=None, **kw).backend == "openvino"
    with pytest.raises(ValueError):
        resolve("tensorflow", cuda_usable=False, measured=None, **kw)


def test_candidates() -> None:
    assert candidates(openvino=False) == (REFERENCE,)
    labels = [c.label for c in candidates(openvino=True, openvino_devices=("CPU",), bf16=False)]
    assert labels == ["onnxruntime/CPU/fp32", "openvino/CPU/fp32"]
    labels = [c.label for c in candidates(openvino=True, openvino_devices=("CPU", "GPU.0"),
                                          bf16=True)]  # fmt: skip
    assert labels[2:] == [
        "openvino/CPU/bf16",
        "openvino/CPU/bf16-mixed",
        "openvino/GPU/fp32",
        "openvino/GPU/fp16",
    ]


def _trial(label: str, ms: float, ok: bool) -> tuple[RendererTrial, SamplerTrial]:
    b, d, p = label.split("/")
    return (
        RendererTrial(backend=b, device=d, precision=p, ms_per_frame=ms, mean_abs_diff=0.0,
                      p99_abs_diff=0.0, psnr_db=None, within_tolerance=ok),
        SamplerTrial(backend=b, device=d, precision=p, ms_per_hop=10.0, rel_diff=0.0,
                     within_tolerance=True),
    )  # fmt: skip


def test_choose_takes_the_fastest_within_tolerance() -> None:
    rows = [
        _trial("onnxruntime/CPU/fp32", 1000.0, True),
        _trial("openvino/CPU/fp32", 900.0, True),
        _trial("openvino/CPU/bf16", 500.0, False),  # faster, but outside: never chosen
    ]
    renderer, sampler = zip(*rows, strict=True)
    assert choose(renderer, sampler, hop=5) == "openvino/CPU/fp32"
    assert choose(renderer[::2], sampler[::2], hop=5) == "onnxruntime/CPU/fp32"


def test_trials_on_stub_graphs_and_the_choice_kept_for_auto(
    stubs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ov_cpu = BackendChoice(backend="openvino", device="CPU", precision="fp32")
    trials = run_trials(stubs, [REFERENCE, ov_cpu], base=SessionOptions(), avatar=avatar(0.5),
                        hop=2, nfe=3, repeats=1)  # fmt: skip
    reference, openvino = trials.renderer
    assert reference.mean_abs_diff == 0.0 and reference.psnr_db is None
    assert openvino.within_tolerance and openvino.mean_abs_diff is not None
    assert openvino.mean_abs_diff < 1e-5 and trials.sampler[1].within_tolerance
    assert trials.chosen in (REFERENCE.label, ov_cpu.label)

    result = BenchResult(
        provider="CPU", on_gpu=False, precision="fp32", settings=BenchSettings(),
        avatar_encoding_ms=1.0, renderer_ms_per_frame={1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 1.0},
        audio_encoder_ms_per_hop=1.0, sampler_ms_per_hop=1.0, renderer_working_mb_per_frame=None,
        peak_rss_mb=None, graphs=str(stubs), backend=ov_cpu.label,
        trials=trials.__class__(renderer=trials.renderer, sampler=trials.sampler,
                                chosen=ov_cpu.label),
    )  # fmt: skip
    data = result.to_json()
    assert [r["backend"] for r in data["renderer_backends"]] == ["onnxruntime", "openvino"]
    assert set(data["renderer_backends"][1]) >= {
        "backend", "device", "precision", "ms_per_frame", "mean_abs_diff", "p99_abs_diff",
        "within_tolerance",
    }  # fmt: skip
    assert data["chosen_backend"] == ov_cpu.label and "openvino/CPU/fp32" in data["derived"][
        "verdict"]  # fmt: skip
    assert BenchResult.from_json(data) == result
    text = format_result(result)
    assert "auto's choice: openvino/CPU/fp32" in text and "within tolerance" in text

    write_result(result, tmp_path)
    assert chosen_backend(tmp_path, stubs) == ov_cpu
    assert chosen_backend(tmp_path, tmp_path) is None  # other graphs: not this bench's choice

    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(device_args, "cuda_usable", lambda: False)
    parser = argparse.ArgumentParser()
    device_args.add_device_arguments(parser)
    options = device_args.session_options(parser.parse_args([]), stubs)
    assert options.backend == "openvino" and options.openvino_device == "CPU"
    assert options.openvino_cache_dir == tmp_path / "openvino"
    options = device_args.session_options(parser.parse_args(["--backend", "onnxruntime"]), stubs)
    assert options.backend == "onnxruntime"
    options = device_args.session_options(parser.parse_args([]), None)  # nothing measured
    assert options.backend == "onnxruntime"


def test_doctor_lists_openvino_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.commands.doctor_report import format_openvino, probe_openvino

    install(monkeypatch, FakeCore(devices=("CPU", "GPU.0", "NPU")))
    report = probe_openvino()
    assert [d["device"] for d in report["devices"]] == ["CPU", "GPU.0", "NPU"]
    assert "FP16" in report["devices"][1]["capabilities"]
    text = "\n".join(format_openvino(report))
    assert "GPU.0" in text and "NPU" in text and "--openvino-device" in text


def test_each_shape_is_compiled_once_and_static(
    stubs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = install(monkeypatch, FakeCore())
    session = OpenVinoSession(C.RENDERER, stubs / C.RENDERER.filename, options=OV)
    device = DeviceRenderer(session)
    device.use(avatar(0.3))
    for batch in (1, 1, 2, 1, 2):
        assert device.render(np.zeros((batch, 32), np.float32)).shape[0] == batch
    assert len(core.compiled) == 2  # batch 1 and batch 2, each once
    compiled = session.compiled_for({**{t.name: t.shape for t in C.AVATAR_TENSORS},
                                     "motion": (2, 32)})  # fmt: skip
    assert all(p.get_partial_shape().is_static for p in compiled.inputs)


# -- ONNX Runtime's CoreML and DirectML (no such device here: configuration and fallback) ------


def test_coreml_and_directml_provider_options() -> None:
    from runtime.model.execution import sessions

    coreml = sessions._provider_options(
        "CoreMLExecutionProvider", SessionOptions(coreml_cache_dir=Path("/c/coreml")), "renderer"
    )
    assert coreml == {
        "ModelFormat": "MLProgram",
        "MLComputeUnits": "ALL",
        "ModelCacheDirectory": "/c/coreml",
    }
    dml = sessions._provider_options("DmlExecutionProvider", SessionOptions(device_id=1), "")
    assert dml == {"device_id": "1"}


@pytest.mark.parametrize(
    ("provider", "name"),
    [("CoreMLExecutionProvider", "CoreML"), ("DmlExecutionProvider", "DirectML")],
)
def test_a_native_gpu_provider_that_cannot_build_falls_back_with_a_notice(
    provider: str, name: str
) -> None:
    from runtime.model.execution import sessions

    asked: list[list[str]] = []

    def create(names: Sequence[str]) -> ort.InferenceSession:
        asked.append(list(names))
        if provider in names:
            raise RuntimeError("unsupported partition")
        return cast(ort.InferenceSession, "session")

    session, used, notice = sessions.open_with_fallback(create, [provider, "CPUExecutionProvider"])
    assert session == "session" and used == ["CPUExecutionProvider"]
    assert asked == [[provider, "CPUExecutionProvider"], ["CPUExecutionProvider"]]
    assert (
        notice
        == f"{name} could not build this graph (RuntimeError: unsupported partition); using CPU"
    )


def test_coreml_and_directml_are_bench_candidates_and_auto_opens_them(
    tmp_path: Path, stubs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.engine.backend_trials import BackendTrials, options_for

    labels = [c.label for c in candidates(openvino=False, ort_usable=("CoreMLExecutionProvider",))]
    assert labels == ["onnxruntime/CPU/fp32", "onnxruntime/CoreML/fp32"]
    coreml = BackendChoice.from_label("onnxruntime/CoreML/fp32")
    assert options_for(SessionOptions(), coreml).providers == (
        "CoreMLExecutionProvider",
        "CPUExecutionProvider",
    )
    assert options_for(SessionOptions(), REFERENCE).providers == ("CPUExecutionProvider",)
    # A bench that measured CoreML fastest within tolerance: auto asks for it.
    result = BenchResult(
        provider="CoreML", on_gpu=True, precision="fp32", settings=BenchSettings(),
        avatar_encoding_ms=1.0, renderer_ms_per_frame={b: 1.0 for b in range(1, 6)},
        audio_encoder_ms_per_hop=1.0, sampler_ms_per_hop=1.0, renderer_working_mb_per_frame=None,
        peak_rss_mb=None, graphs=str(stubs), backend=coreml.label,
        trials=BackendTrials(renderer=(), sampler=(), chosen=coreml.label),
    )  # fmt: skip
    write_result(result, tmp_path)
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(device_args, "cuda_usable", lambda: False)
    parser = argparse.ArgumentParser()
    device_args.add_device_arguments(parser)
    options = device_args.session_options(parser.parse_args([]), stubs)
    assert options.backend == "onnxruntime"
    assert options.providers == ("CoreMLExecutionProvider", "CPUExecutionProvider")
    assert options.coreml_cache_dir == tmp_path / "coreml"


def test_a_bench_seeds_live_only_on_the_backend_it_measured(stubs: Path, tmp_path: Path) -> None:
    from runtime.engine.bench import expected_hop

    models = open_model_set(stubs, options=ORT_CPU, names=["renderer"])
    for label, seeded in (
        ("openvino/CPU/fp32", False),
        ("onnxruntime/CUDA/fp32", False),
        ("onnxruntime/CPU/fp16", False),
        ("onnxruntime/CPU/fp32", True),
        ("", True),  # a result from before the label was kept: ONNX Runtime on the CPU
    ):
        result = BenchResult(
            provider="CPU", on_gpu=False, precision="fp32", settings=BenchSettings(),
            avatar_encoding_ms=1.0, renderer_ms_per_frame={b: 1.0 for b in range(1, 6)},
            audio_encoder_ms_per_hop=1.0, sampler_ms_per_hop=1.0,
            renderer_working_mb_per_frame=None, peak_rss_mb=None, graphs=str(stubs),
            backend=label,
        )  # fmt: skip
        write_result(result, tmp_path)
        hop = expected_hop(tmp_path, stubs, models)
        assert (hop is not None) is seeded, label


def test_audio_of_any_length_compiles_once(stubs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core = install(monkeypatch, FakeCore())
    session = OpenVinoSession(C.AUDIO_ENCODER, stubs / C.AUDIO_ENCODER.filename, options=OV)
    for frames in (3, 7, 3, 12):
        out = session.run({"audio": np.zeros((1, frames * 640), np.float32)})["features"]
        assert out.shape[:2] == (1, frames)
    assert len(core.compiled) == 1
