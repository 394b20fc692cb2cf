"""ONNX Runtime sessions: the graph contract, runs by name, provider probing with the silent GPU
fallback made visible, TensorRT fallback, and thread settings (tiny stub graphs). The IOBinding
path is in test_device_graphs."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from runtime.model import contract as C
from runtime.model.execution import providers, sessions
from runtime.model.execution.model_set import open_model_set
from runtime.model.execution.providers import ProviderProbe, provider_report, short_reason
from runtime.model.execution.sessions import (
    ContractError,
    GraphSession,
    SessionOptions,
    requested_providers,
    usable_cores,
    wanted_providers,
)
from tests.support import stub_graphs

CPU_ONLY = SessionOptions(providers=("CPUExecutionProvider",))
GPU_NAMES = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stub_graphs.write_stub_graphs(tmp_path_factory.mktemp("stubs"), velocity_gain=0.5)


@pytest.fixture
def fresh_probes() -> object:
    """Each test that counts probe warnings starts from a process that has not probed."""
    providers.reset_probes()
    yield None
    providers.reset_probes()


def gpu_present() -> bool:
    return shutil.which("nvidia-smi") is not None


def avatar(value: float, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    out = {}
    for spec in C.AVATAR_TENSORS:
        shape = tuple(int(d) for d in spec.shape)
        base = np.full(shape, value, np.float32)
        if rng is not None:
            base += rng.standard_normal(shape, dtype=np.float32) * np.float32(0.01)
        out[spec.name] = base
    return out


# -- the contract -----------------------------------------------------------------------------


def _renamed_renderer(path: Path, old: str, new: str) -> Path:
    model = stub_graphs.renderer()
    for value in model.graph.input:
        if value.name == old:
            value.name = new
    for node in model.graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
    onnx.save(model, str(path))
    return path


def test_contract_check_names_the_wrong_input(tmp_path: Path) -> None:
    path = _renamed_renderer(tmp_path / "renderer.onnx", "motion", "motions")
    with pytest.raises(ContractError) as err:
        GraphSession(C.RENDERER, path, options=CPU_ONLY)
    assert "missing input 'motion'" in str(err.value)
    assert "unexpected input 'motions'" in str(err.value)


def test_contract_check_catches_a_graph_for_another_slot(stubs: Path) -> None:
    with pytest.raises(ContractError, match="missing input 'source'"):
        GraphSession(C.AVATAR_ENCODER, stubs / C.RENDERER.filename, options=CPU_ONLY)


def test_contract_check_catches_fixed_and_dynamic_axes(tmp_path: Path) -> None:
    model = stub_graphs.renderer()
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name == "id_latent":
            dims[1].dim_value = 256  # the contract says 512
        if value.name == "motion":
            dims[0].dim_value = 2  # a batch exported as fixed
    path = tmp_path / "renderer.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ContractError) as err:
        GraphSession(C.RENDERER, path, options=CPU_ONLY)
    assert "input 'id_latent' has shape [1, 256], expected [1, 512]" in str(err.value)
    assert "input 'motion' has shape [2, 32], expected ['batch', 32]" in str(err.value)


def test_every_stub_graph_fits_the_contract(stubs: Path) -> None:
    models = open_model_set(stubs, options=CPU_ONLY)
    assert set(models.sessions) == {g.name for g in C.GRAPHS}


# -- running by name --------------------------------------------------------------------------


def test_run_by_name_in_any_order_and_any_float_dtype(stubs: Path) -> None:
    s = GraphSession(C.VELOCITY, stubs / C.VELOCITY.filename, options=CPU_ONLY)
    rng = np.random.default_rng(1)
    feeds = {
        t.name: rng.standard_normal([2 if d == "batch" else int(d) for d in t.shape])
        for t in reversed(C.VELOCITY.inputs)  # float64 and reversed: cast and matched by name
    }
    feeds["t"] = np.array([0.2, 0.6])
    feeds["cfg_scale"] = np.array([3.0])
    got = s.run(feeds)
    assert set(got) == {"velocity"} and got["velocity"].dtype == np.float32

    f = {k: v.astype(np.float32) for k, v in feeds.items()}
    target = (
        f["ref_x"][:, None]
        + f["cfg_scale"] * f["audio_cond"]
        + f["gaze_cond"]
        + f["pose_cond"]
        + f["cam_cond"]
        + stub_graphs.PREV_GAIN * f["prev_x"].mean(axis=1, keepdims=True)
    )
    want = 0.5 * (target - f["x"]) / (1 - f["t"][:, None, None])
    np.testing.assert_allclose(got["velocity"], want, rtol=1e-5, atol=1e-5)


def test_run_reports_missing_inputs_by_name(stubs: Path) -> None:
    s = GraphSession(C.CONDITIONER, stubs / C.CONDITIONER.filename, options=CPU_ONLY)
    with pytest.raises(KeyError, match="'cam', 'pose'"):
        s.run({"audio_features": np.zeros((1, 3, 768)), "gaze": np.zeros((1, 3, 2))})


def test_run_options_terminate_cancels_the_run(stubs: Path) -> None:
    s = GraphSession(C.RENDERER, stubs / C.RENDERER.filename, options=CPU_ONLY)
    stop = ort.RunOptions()
    stop.terminate = True
    with pytest.raises(Exception, match=r"(?i)terminat"):
        s.run({**avatar(0.1), "motion": np.zeros((1, 32), np.float32)}, run_options=stop)


# -- providers --------------------------------------------------------------------------------


def test_provider_report_on_this_machine(fresh_probes: object) -> None:
    report = provider_report()
    assert report.compiled == tuple(ort.get_available_providers())
    cpu = report.probe("CPUExecutionProvider")
    assert cpu is not None and cpu.initialises and cpu.used[0] == "CPUExecutionProvider"
    assert "CPUExecutionProvider" in report.usable
    if gpu_present():
        pytest.skip("a GPU is present: GPU providers may legitimately initialise")
    for name in GPU_NAMES:
        probe = report.probe(name)
        if probe is None:
            continue
        assert not probe.initialises
        assert probe.used in ((), ("CPUExecutionProvider",))
        assert probe.reason and probe.reason != "ok"
        assert "\x1b" not in probe.detail  # ORT's colour codes are stripped
        assert f"{providers.SHORT_NAMES[name]} unusable: {probe.reason}" in report.summary()


def test_sessions_run_on_cpu_and_say_why_not_gpu(stubs: Path, fresh_probes: object) -> None:
    models = open_model_set(stubs, options=SessionOptions(), names=["renderer", "velocity"])
    assert models.providers[-1] == "CPUExecutionProvider"
    if gpu_present():
        pytest.skip("a GPU is present")
    assert models.providers == ("CPUExecutionProvider",)
    renderer = models["renderer"]
    assert renderer.requested == ["CPUExecutionProvider"]
    assert not renderer.on_gpu and renderer.device == ("cpu", 0)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert [p.name for p in renderer.unusable] == ["CUDAExecutionProvider"]
        assert models.summary().startswith("CPU, ")
        assert "CUDA unusable: " in models.summary()


def test_fallback_notice_logged_exactly_once_at_info(
    stubs: Path,
    fresh_probes: object,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime built without CUDA: nothing to fall back from")
    if gpu_present():
        pytest.skip("a GPU is present: CUDA may initialise")
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="runtime"):
        open_model_set(stubs, options=SessionOptions())  # six sessions
        open_model_set(stubs, options=SessionOptions(), names=["renderer"])
        assert requested_providers(SessionOptions()) == ["CPUExecutionProvider"]
    found = [r for r in caplog.records if "compiled in but unusable" in r.getMessage()]
    # Once, and at INFO: every command on a machine without a GPU would start with it (issue
    # 24); `doctor` is where it is said out loud.
    assert [r.levelno for r in found] == [logging.INFO], found
    warnings = [r.getMessage() for r in found]
    assert warnings[0].startswith("CUDA provider compiled in but unusable: ")
    assert warnings[0].endswith("; running on CPU")
    cuda = provider_report().probe("CUDAExecutionProvider")
    assert cuda is not None
    assert warnings[0] == f"CUDA provider compiled in but unusable: {cuda.reason}; running on CPU"
    if "cannot open shared object file" in cuda.detail:
        assert cuda.reason.endswith(".so") or " missing" in cuda.reason
    # ONNX Runtime's own C++ error spray went into the probe log, not the terminal.
    err = capfd.readouterr().err
    assert "Failed to load library" not in err and "Failed to create" not in err


def test_cpu_only_options_do_not_probe_gpus(fresh_probes: object) -> None:
    assert requested_providers(CPU_ONLY) == ["CPUExecutionProvider"]
    assert providers._probes == {}


def test_tensorrt_is_requested_only_when_asked() -> None:
    assert "TensorrtExecutionProvider" not in wanted_providers(SessionOptions())
    assert wanted_providers(SessionOptions(use_tensorrt=True))[0] == "TensorrtExecutionProvider"


@pytest.mark.parametrize(
    ("detail", "reason"),
    [
        (
            "falls back to CPUExecutionProvider: libcublasLt.so.13: cannot open shared object "
            "file: No such file or directory",
            "libcublasLt.so.13 missing",
        ),
        ("fails: RuntimeError: CUDA out of memory", "RuntimeError: CUDA out of memory"),
        ("falls back to CPUExecutionProvider", "falls back to CPUExecutionProvider"),
    ],
)
def test_short_reason(detail: str, reason: str) -> None:
    assert short_reason(detail) == reason


LINUX_LOG = (
    "\x1b[1;31m2026-11-22 00:14:28.42 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 "
    "operator()] ... [ONNXRuntimeError] : 1 : FAIL : Failed to load library "
    "/x/libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared "
    "object file: No such file or directory\n\x1b[m\n\x1b[0;93m2026-11-22 [W:onnxruntime:Default,"
    " onnxruntime_pybind_state.cc:1295 CreateExecutionProviderFactoryInstance] Failed to create "
    "CUDAExecutionProvider. Require cuDNN 9.* and CUDA 13.*.\x1b[m\n"
)
WINDOWS_LOG = (
    "2026-11-22 [E:onnxruntime:Default, provider_bridge_ort.cc:1862 "
    "onnxruntime::TryGetProviderInfo_CUDA] provider_bridge_ort.cc:1539 "
    "onnxruntime::ProviderLibrary::Get [ONNXRuntimeError] : 1 : FAIL : LoadLibrary failed with "
    'error 126 "" when trying to load "C:\\app\\onnxruntime_providers_cuda.dll"\n'
    "2026-11-22 [W:onnxruntime:Default, onnxruntime_pybind_state.cc:965 "
    "onnxruntime::python::CreateExecutionProviderInstance] Failed to create "
    "CUDAExecutionProvider. Require cuDNN 9.* and CUDA 12.*.\n"
)


@pytest.mark.parametrize(
    ("log", "reason"),
    [(LINUX_LOG, "libcublasLt.so.13 missing"), (WINDOWS_LOG, "a CUDA or cuDNN DLL is missing")],
)
def test_reason_from_onnx_runtime_native_log(log: str, reason: str) -> None:
    line = providers._first_error_line(log)
    assert line is not None and "\x1b" not in line and "[m" not in line
    probe = ProviderProbe("CUDAExecutionProvider", False, (), f"falls back to CPU: {line}")
    assert probe.reason == reason


# -- threads ----------------------------------------------------------------------------------


def test_thread_settings_reach_onnx_runtime(stubs: Path) -> None:
    s = GraphSession(C.RENDERER, stubs / C.RENDERER.filename, options=CPU_ONLY)
    assert s.intra_op_threads == usable_cores()
    got = s._session.get_session_options()
    assert got.intra_op_num_threads == usable_cores()
    assert got.inter_op_num_threads == 1
    assert got.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    one = SessionOptions(providers=("CPUExecutionProvider",), intra_op_threads=1)
    s1 = GraphSession(C.RENDERER, stubs / C.RENDERER.filename, options=one)
    assert s1._session.get_session_options().intra_op_num_threads == 1
    assert s1.summary() == "CPU, 1 thread"


def test_memory_pattern_is_off_only_for_the_renderer(stubs: Path) -> None:
    # The renderer's pre-planned activation block doubled its peak memory for no speed.
    r = GraphSession(C.RENDERER, stubs / C.RENDERER.filename, options=CPU_ONLY)
    v = GraphSession(C.VELOCITY, stubs / C.VELOCITY.filename, options=CPU_ONLY)
    assert r._session.get_session_options().enable_mem_pattern is False
    assert v._session.get_session_options().enable_mem_pattern is True
    assert r._session.get_session_options().enable_cpu_mem_arena is True
    forced = SessionOptions(providers=("CPUExecutionProvider",), memory_pattern=True)
    r2 = GraphSession(C.RENDERER, stubs / C.RENDERER.filename, options=forced)
    assert r2._session.get_session_options().enable_mem_pattern is True
    # Node order keeps one attention chunk alive at a time (about 260 MB instead of 630 MB).
    assert r._session.get_session_options().execution_order == ort.ExecutionOrder.PRIORITY_BASED
    assert v._session.get_session_options().execution_order == ort.ExecutionOrder.DEFAULT


def test_fp16_precision_opens_the_mixed_precision_variants(stubs: Path) -> None:
    fp16 = SessionOptions(providers=("CPUExecutionProvider",), precision="fp16")
    models = open_model_set(stubs, options=fp16)
    assert models["renderer"].path.name == "renderer.fp16.onnx"
    assert models["velocity"].path.name == "velocity.fp16.onnx"
    assert models["conditioner"].path.name == "conditioner.onnx"  # no fp16 variant
    with pytest.raises(ValueError, match="precision"):
        SessionOptions(precision="int4")  # int8 is OpenVINO's (test_quantize.py)


def test_cuda_graph_and_tensorrt_provider_options() -> None:
    cuda = sessions._provider_options(
        "CUDAExecutionProvider", SessionOptions(enable_cuda_graph=True), "renderer"
    )
    assert cuda["enable_cuda_graph"] == "1"
    audio = sessions._provider_options(
        "CUDAExecutionProvider", SessionOptions(enable_cuda_graph=True), "audio_encoder"
    )
    assert "enable_cuda_graph" not in audio  # variable-length input: not capturable
    trt = sessions._provider_options(
        "TensorrtExecutionProvider",
        SessionOptions(tensorrt_fp16=True, tensorrt_cache_dir=Path("/c/trt")),
        "renderer",
    )
    assert trt["trt_fp16_enable"] == "True" and trt["trt_engine_cache_path"] == "/c/trt"


def test_failed_tensorrt_build_falls_back_to_cuda_with_a_notice() -> None:
    asked: list[list[str]] = []

    def create(names: Sequence[str]) -> ort.InferenceSession:
        asked.append(list(names))
        if "TensorrtExecutionProvider" in names:
            raise RuntimeError("TensorRT EP failed to create engine from network")
        return cast(ort.InferenceSession, "session")

    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    session, used, notice = sessions.open_with_fallback(create, wanted)
    assert session == "session" and used == wanted[1:]
    assert asked == [wanted, wanted[1:]]
    assert notice is not None
    assert notice.startswith("TensorRT could not build this graph (RuntimeError: TensorRT EP")
    assert notice.endswith("using CUDA")

    def broken(names: Sequence[str]) -> ort.InferenceSession:
        raise RuntimeError("bad graph")

    with pytest.raises(RuntimeError, match="bad graph"):  # only TensorRT is retried without
        sessions.open_with_fallback(broken, ["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_session_options_are_validated() -> None:
    with pytest.raises(ValueError, match="graph_optimization"):
        SessionOptions(graph_optimization="max")
    with pytest.raises(ValueError, match="thread"):
        SessionOptions(intra_op_threads=-1)
