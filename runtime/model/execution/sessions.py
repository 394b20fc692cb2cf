"""ONNX Runtime sessions for the graphs named in `runtime.model.contract` (built on any thread; one
run at a time per session and per `DeviceRenderer` is the caller's responsibility, which in the
app means one inference thread).

Providers: CUDA -> CPU by default, TensorRT first only when asked for. ONNX Runtime silently
falls back to the CPU when a GPU provider cannot initialise (and prints C++ errors while doing
so), so every GPU provider is probed once per process (`runtime.model.execution.providers`) and
only providers that work are requested; a compiled-in but broken one is logged once as a single
warning. What
a session actually runs on is read back with `get_providers()` and kept in
`GraphSession.providers` / `ModelSet.providers` / `ModelSet.summary()` for `doctor` and the GUI.

Threads are explicit: on the CPU one intra-op thread per usable physical core and one inter-op
thread (graphs run sequentially); on a GPU two intra-op threads without spin-waiting, so the CPU
stays free for audio capture, the GUI and the virtual camera.

Runs with tensors resident on the device (IOBinding, CUDA graphs) are in
`runtime.model.execution.device_graphs`, built on `GraphSession.io_binding` / `run_with_binding`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from runtime.model.compile.graph_version import graphs_version
from runtime.model.contract import (
    RENDERER,
    GraphSpec,
    TensorSpec,
)
from runtime.model.execution.providers import (
    COREML,
    CPU,
    CUDA,
    DIRECTML,
    SHORT_NAMES,
    TENSORRT,
    ProviderProbe,
    ProviderReport,
    probe_provider,
    provider_report,
    usable_providers,
)
from runtime.model.versions import V1, ModelVersion

__all__ = [
    "PREFERENCE",
    "ContractError",
    "GraphSession",
    "ModelSet",
    "ProviderReport",
    "SessionOptions",
    "graphs_version",
    "provider_report",
    "requested_providers",
    "usable_cores",
    "wanted_providers",
]

logger = logging.getLogger(__name__)

ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
BACKENDS = (ONNXRUNTIME, OPENVINO)
SESSION_PRECISIONS = ("fp32", "fp16", "bf16", "bf16-mixed", "int8")
OPENVINO_PRECISIONS = ("bf16", "bf16-mixed", "int8")
"""Precisions only OpenVINO runs."""
OPENVINO_DEVICES = ("auto", "CPU", "GPU", "NPU")

Array = npt.NDArray[np.float32]

PREFERENCE = (CUDA, CPU)
"""Best first, by default; a provider not compiled into this onnxruntime build is skipped.
CoreML (macOS builds) and DirectML (onnxruntime-directml) are asked for explicitly
(`providers`): `bench` tries them and ``--backend auto`` takes one only when it measured faster
within tolerance (`runtime.model.execution.backends`)."""
GPU_PROVIDERS = (TENSORRT, CUDA, DIRECTML, COREML)
RETRIED_WITHOUT = (TENSORRT, COREML, DIRECTML)
"""Providers that may fail on one graph while the next provider runs it (an engine build, an
unsupported partition): the session is created again without them, with a notice."""
GPU_INTRA_OP_THREADS = 2

LARGE_ACTIVATION_GRAPHS = frozenset({RENDERER.name})
"""Graphs whose activations are dominated by a few large tensors (the renderer's attention
maps, computed in chunks: see models.renderer.attention). ONNX Runtime's memory pattern plans
one block for a whole run, which the CPU arena then rounds up (measured 3.4 GB per frame with
it, 1.7 GB without, before chunking). They also run in the exported node order
(`ExecutionOrder.PRIORITY_BASED`): the default order defers each chunk's head-mean and top-k
to where the fine levels read them, keeping every chunk's softmax alive at once (measured
~630 MB per frame that way, ~260 MB in node order). Small graphs (velocity, audio encoder) are
faster with the memory pattern."""

CUDA_GRAPH_GRAPHS = frozenset({RENDERER.name, "velocity"})
"""Graphs called with a few fixed shapes (renderer at the hop's batch, velocity per step)."""

_OPTIMIZATION = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True, kw_only=True)
class SessionOptions:
    """How sessions are built.

    intra_op_threads: 0 = automatic (CPU: one per usable physical core; GPU: 2).
    inter_op_threads: only used by parallel execution, which these linear graphs do not gain
        from; 1 keeps the thread count predictable.
    providers: explicit provider list (each still probed); None = `PREFERENCE`.
    use_tensorrt: put TensorRT first (with `providers=None`).
    allow_spinning: intra-op threads spin-wait for work between operators; None = on for CPU
        sessions (faster operator hand-over), off for GPU ones (the CPU is mostly idle there).
    graph_optimization: "all" (default: layout transforms and fusions), "extended", "basic",
        "disabled". "all" measured ~10 % faster than "extended" on the renderer.
    memory_pattern: pre-plan each run's activation memory; None = on, except for
        `LARGE_ACTIVATION_GRAPHS`. The CPU memory arena stays on (without it the renderer
        measured 1.5x slower).
    tensorrt_cache_dir: where TensorRT keeps built engines (building one takes minutes);
        `runtime.core.paths` gives the app's (`tensorrt/` in the cache dir).
    tensorrt_fp16: let TensorRT build fp16 engines.
    coreml_cache_dir: where CoreML keeps compiled ML Programs (its ModelCacheDirectory).
    precision: "fp32", or "fp16" for the exporter's mixed-precision variants of
        `contract.FP16_GRAPHS` (same inputs and outputs; off by default until measured on a
        GPU: on the CPU provider fp16 is slower), or "bf16" (OpenVINO only: its CPU plugin runs
        the fp32 graph in bf16 where the CPU has AVX-512 BF16 or AMX, fp32 elsewhere), or
        "bf16-mixed" (OpenVINO only: the renderer in bf16 except the stages measured most
        sensitive, `runtime.model.execution.openvino_stages`; the other graphs in fp32), or
        "int8" (OpenVINO only: the renderer quantized by NNCF, `runtime.model.compile.quantize`;
        the other graphs in fp32).
    backend: "onnxruntime" or "openvino" (`runtime.model.execution.openvino_sessions`);
        "auto" is resolved before sessions are built (`runtime.model.execution.backends`).
    openvino_device: "auto" (a GPU when OpenVINO lists one, else the CPU), "CPU", "GPU" or
        "NPU"; a device that fails to compile a graph falls back to the CPU with a notice.
    openvino_cache_dir: where OpenVINO keeps compiled graphs (its CACHE_DIR), or None.
    enable_cuda_graph: capture the fixed-shape calls of `CUDA_GRAPH_GRAPHS` as CUDA graphs on
        the CUDA provider (run through `runtime.model.execution.device_graphs`, which falls back
        to plain runs when capture fails).
    """

    intra_op_threads: int = 0
    inter_op_threads: int = 1
    providers: tuple[str, ...] | None = None
    use_tensorrt: bool = False
    device_id: int = 0
    allow_spinning: bool | None = None
    graph_optimization: str = "all"
    memory_pattern: bool | None = None
    tensorrt_cache_dir: Path | None = None
    tensorrt_fp16: bool = False
    coreml_cache_dir: Path | None = None
    enable_cuda_graph: bool = False
    precision: str = "fp32"
    backend: str = "onnxruntime"
    openvino_device: str = "auto"
    openvino_cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.graph_optimization not in _OPTIMIZATION:
            raise ValueError(
                f"graph_optimization must be one of {sorted(_OPTIMIZATION)}, "
                f"got {self.graph_optimization!r}"
            )
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError("thread counts must be >= 0")
        if self.precision not in SESSION_PRECISIONS:
            raise ValueError(
                f"precision must be one of {SESSION_PRECISIONS}, got {self.precision!r}"
            )
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.precision in OPENVINO_PRECISIONS and self.backend != OPENVINO:
            raise ValueError(f"{self.precision} needs the OpenVINO backend (--backend openvino)")
        if self.openvino_device not in OPENVINO_DEVICES:
            raise ValueError(
                f"openvino_device must be one of {OPENVINO_DEVICES}, got {self.openvino_device!r}"
            )

    @property
    def graph_precision(self) -> str:
        """Which exported file to read (`contract.PRECISIONS`): bf16 is a runtime choice made
        on the fp32 graph (bf16-mixed too), and int8 is made from it."""
        return "fp16" if self.precision == "fp16" else "fp32"


def usable_cores() -> int:
    """Physical cores this process may run on, or 0 where that is unknown (ORT then picks).

    Counted from the affinity mask (a container's CPU limit counts) with SMT siblings folded
    together: a second hardware thread on a busy core adds little to these compute-bound
    kernels and takes time from the audio and GUI threads.
    """
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # macOS, Windows: ORT's own default is one thread per physical core
        return 0
    siblings = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            siblings.add(topology.read_text().strip())
        except OSError:
            return max(1, len(cpus))
    return max(1, len(siblings))


def wanted_providers(options: SessionOptions) -> tuple[str, ...]:
    """The providers `options` asks for, best first, before probing."""
    if options.providers is not None:
        return options.providers
    if options.use_tensorrt:
        return (TENSORRT, *PREFERENCE)
    return PREFERENCE


def requested_providers(options: SessionOptions) -> list[str]:
    """The providers a session built with `options` will request: those wanted that are
    compiled in and pass their probe, the CPU always last."""
    return list(usable_providers(wanted_providers(options)))


def _dropped(options: SessionOptions, chosen: Sequence[str]) -> tuple[ProviderProbe, ...]:
    """Wanted GPU providers that are compiled in but failed their probe (already cached)."""
    compiled = set(ort.get_available_providers())
    return tuple(
        probe_provider(name)
        for name in wanted_providers(options)
        if name in GPU_PROVIDERS and name in compiled and name not in chosen
    )


def _provider_options(name: str, options: SessionOptions, graph: str = "") -> dict[str, str]:
    if name == CUDA:
        # Shapes are fixed per call site, so a one-off algorithm search per shape pays back.
        cuda = {"device_id": str(options.device_id), "cudnn_conv_algo_search": "EXHAUSTIVE"}
        if options.enable_cuda_graph and graph in CUDA_GRAPH_GRAPHS:
            cuda["enable_cuda_graph"] = "1"
        return cuda
    if name == TENSORRT:
        trt = {
            "device_id": str(options.device_id),
            "trt_fp16_enable": "True" if options.tensorrt_fp16 else "False",
        }
        if options.tensorrt_cache_dir is not None:
            trt["trt_engine_cache_enable"] = "True"
            trt["trt_engine_cache_path"] = str(options.tensorrt_cache_dir)
        return trt
    if name == COREML:
        # ML Program (the format with fp32 compute and the newer ops), every compute unit.
        coreml = {"ModelFormat": "MLProgram", "MLComputeUnits": "ALL"}
        if options.coreml_cache_dir is not None:
            coreml["ModelCacheDirectory"] = str(options.coreml_cache_dir)
        return coreml
    if name == DIRECTML:
        return {"device_id": str(options.device_id)}
    return {}


def open_with_fallback(
    create: Callable[[Sequence[str]], ort.InferenceSession], requested: Sequence[str]
) -> tuple[ort.InferenceSession, list[str], str | None]:
    """Create a session on `requested`; when TensorRT, CoreML or DirectML is first and the
    session cannot be built with it (engine build failure, unsupported graph), create it
    again without it. Returns (session, providers requested in the end, the notice to show or
    None)."""
    try:
        return create(requested), list(requested), None
    except Exception as exc:
        if not requested or requested[0] not in RETRIED_WITHOUT:
            raise
        first = requested[0]
        rest = [n for n in requested if n != first]
        notice = (
            f"{SHORT_NAMES[first]} could not build this graph ({type(exc).__name__}: {exc}); "
            f"using {SHORT_NAMES.get(rest[0], rest[0])}"
        )
        return create(rest), rest, notice


class ContractError(ValueError):
    """A graph's inputs or outputs differ from `runtime.model.contract`."""


def _dims_match(want: tuple[int | str, ...], got: Sequence[object]) -> bool:
    if len(want) != len(got):
        return False
    for w, g in zip(want, got, strict=True):
        if isinstance(w, int) and isinstance(g, int) and w != g:
            return False
        if isinstance(w, str) and isinstance(g, int):
            return False  # a dynamic axis exported as fixed would break other sizes
    return True


def _type_name(spec: TensorSpec) -> str:
    return {"float32": "tensor(float)", "int64": "tensor(int64)"}[spec.dtype]


def contract_problems(spec: GraphSpec, session: ort.InferenceSession) -> list[str]:
    """Every difference between a loaded graph's I/O and the contract (empty when it fits).
    Input shapes are checked axis by axis; outputs by name, dtype and rank (exporters give
    computed output axes their own symbolic names)."""
    problems: list[str] = []
    for kind, specs, args in (
        ("input", spec.inputs, session.get_inputs()),
        ("output", spec.outputs, session.get_outputs()),
    ):
        got = {a.name: a for a in args}
        want = {t.name: t for t in specs}
        problems += [f"missing {kind} {n!r}" for n in want if n not in got]
        problems += [f"unexpected {kind} {n!r}" for n in got if n not in want]
        for name, t in want.items():
            arg = got.get(name)
            if arg is None:
                continue
            if arg.type != _type_name(t):
                problems.append(f"{kind} {name!r} is {arg.type}, expected {_type_name(t)}")
            shape = list(arg.shape)
            ok = _dims_match(t.shape, shape) if kind == "input" else len(shape) == len(t.shape)
            if not ok:
                problems.append(f"{kind} {name!r} has shape {shape}, expected {list(t.shape)}")
    return problems


class GraphSession:
    """One graph: inputs and outputs by name, checked against the contract.

    `providers`: what ONNX Runtime actually uses, primary first (read back from the session);
    `requested`: what was asked for after probing; `unusable`: GPU providers that were wanted
    but do not initialise here (with the reason).
    """

    backend = ONNXRUNTIME
    max_shapes = 8
    """Input-shape signatures a `DeviceGraph` keeps bound for this session."""

    def __init__(self, spec: GraphSpec, path: Path, *, options: SessionOptions) -> None:
        self.spec = spec
        self.path = path
        self.options = options
        self.requested: list[str] = requested_providers(options)
        self.unusable: tuple[ProviderProbe, ...] = _dropped(options, self.requested)
        on_gpu = self.requested[0] != CPU
        cores = usable_cores()
        # 0 where the core count is unknown: ONNX Runtime then picks (one per physical core).
        self.intra_op_threads = options.intra_op_threads or (
            min(GPU_INTRA_OP_THREADS, cores or GPU_INTRA_OP_THREADS) if on_gpu else cores
        )
        spinning = (not on_gpu) if options.allow_spinning is None else options.allow_spinning
        self.memory_pattern = (
            spec.name not in LARGE_ACTIVATION_GRAPHS
            if options.memory_pattern is None
            else options.memory_pattern
        ) and DIRECTML not in self.requested  # DirectML does not support memory patterns

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.intra_op_threads
        so.inter_op_num_threads = options.inter_op_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = _OPTIMIZATION[options.graph_optimization]
        so.enable_mem_pattern = self.memory_pattern
        if spec.name in LARGE_ACTIVATION_GRAPHS:
            so.execution_order = ort.ExecutionOrder.PRIORITY_BASED
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        so.log_severity_level = 3
        self.notices: list[str] = []
        """User-facing lines about something asked for that is not in use (a TensorRT build
        that failed); the GUI and `--stats` show them."""
        self.providers: tuple[str, ...] = tuple(self.requested)
        self._open(path, so)
        logger.debug(
            "%s: %s, %d intra-op threads%s",
            spec.name,
            self.providers[0],
            self.intra_op_threads,
            "" if spinning else " (no spinning)",
        )

    def _open(self, path: Path, so: ort.SessionOptions) -> None:
        """Open the graph (`runtime.model.execution.static_shapes` opens per input shape)."""
        self._session = self._create(path, so)
        self._opened(self._session)
        problems = contract_problems(self.spec, self._session)
        if problems:
            raise ContractError(
                f"graph {self.spec.name!r} at {path} does not match the contract: "
                + "; ".join(problems)
            )

    def _opened(self, session: ort.InferenceSession) -> None:
        """Read back what `session` runs on."""
        self.providers = tuple(session.get_providers())
        if self.providers[0] != self.requested[0]:
            # The probe passed but this graph still fell back (e.g. out of GPU memory).
            logger.warning(
                "%s: asked for %s but ONNX Runtime is using %s",
                self.spec.name,
                self.requested[0],
                ", ".join(self.providers),
            )

    def _create(self, path: Path, so: ort.SessionOptions) -> ort.InferenceSession:
        def create(names: Sequence[str]) -> ort.InferenceSession:
            providers = [(n, _provider_options(n, self.options, self.spec.name)) for n in names]
            return ort.InferenceSession(str(path), sess_options=so, providers=providers)

        session, self.requested, notice = open_with_fallback(create, self.requested)
        if notice:
            logger.warning("%s: %s", self.spec.name, notice)
            self.notices.append(notice)
        return session

    @property
    def cuda_graph(self) -> bool:
        """Whether this session captures CUDA graphs (asked for, and running on CUDA)."""
        return (
            self.options.enable_cuda_graph
            and self.spec.name in CUDA_GRAPH_GRAPHS
            and self.providers[0] == CUDA
        )

    @property
    def provider(self) -> str:
        """The primary provider in use."""
        return self.providers[0]

    @property
    def on_gpu(self) -> bool:
        return self.provider != CPU

    @property
    def device(self) -> tuple[str, int]:
        """Where OrtValues for this session's inputs should live: ("cuda", id) on CUDA or
        TensorRT, else ("cpu", 0) (CoreML and DirectML take host memory and copy it in)."""
        return ("cuda", self.options.device_id) if self.provider in (CUDA, TENSORRT) else ("cpu", 0)

    def summary(self) -> str:
        """One line: ``CPU, 2 threads (CUDA unusable: libcublasLt.so.13 missing)``."""
        threads = self.intra_op_threads
        count = "automatic threads" if threads == 0 else f"{threads} thread" + "s" * (threads > 1)
        text = f"{SHORT_NAMES.get(self.provider, self.provider)}, {count}"
        broken = [f"{SHORT_NAMES.get(p.name, p.name)} unusable: {p.reason}" for p in self.unusable]
        broken += self.notices  # e.g. a TensorRT build that failed: the GUI shows this line
        return text + (f" ({'; '.join(broken)})" if broken else "")

    def run(
        self,
        inputs: Mapping[str, npt.NDArray[np.generic]],
        *,
        run_options: ort.RunOptions | None = None,
    ) -> dict[str, Array]:
        """Run once. `run_options.terminate = True` from another thread cancels a run in
        flight (it then raises), which is how the live engine stops within a second."""
        missing = set(self.spec.input_names) - set(inputs)
        if missing:
            raise KeyError(f"{self.spec.name}: missing inputs {sorted(missing)}")
        feeds = {
            name: np.ascontiguousarray(inputs[name], dtype=self.spec.input(name).dtype)
            for name in self.spec.input_names
        }
        session = self._session_for({name: tuple(a.shape) for name, a in feeds.items()})
        outs = session.run(list(self.spec.output_names), feeds, run_options)
        return {name: np.asarray(o) for name, o in zip(self.spec.output_names, outs, strict=True)}

    def _session_for(self, shapes: Mapping[str, tuple[int, ...]]) -> ort.InferenceSession:
        """The session that runs inputs of these shapes (one for all, here)."""
        return self._session

    def io_binding(self, shapes: Mapping[str, tuple[int, ...]] | None = None) -> ort.IOBinding:
        """A binding for runs with inputs of `shapes` (the inputs bound per run; needed where
        each shape has its own session)."""
        return self._session.io_binding()

    def run_with_binding(
        self, binding: ort.IOBinding, *, run_options: ort.RunOptions | None = None
    ) -> None:
        self._session.run_with_iobinding(binding, run_options)


@dataclass(frozen=True)
class ModelSet:
    """The graphs of one compiled model, by contract name, and the model version they were
    exported from (everything that makes model inputs takes its sizes from `version`)."""

    sessions: Mapping[str, GraphSession]
    version: ModelVersion = V1

    @property
    def source_size(self) -> int:
        """Side of the square source (avatar) and driving images the encoders take."""
        return self.version.source_size

    def __getitem__(self, name: str) -> GraphSession:
        return self.sessions[name]

    @property
    def providers(self) -> tuple[str, ...]:
        """Providers actually in use, primary first (the renderer's, which dominates cost)."""
        return self._main.providers

    @property
    def on_gpu(self) -> bool:
        """Whether the renderer runs on an accelerator (any backend's GPU or NPU)."""
        return self._main.on_gpu

    @property
    def backend(self) -> str:
        return self._main.backend

    @property
    def precision(self) -> str:
        """The precision asked for ("fp32", "fp16", "bf16": `SessionOptions.precision`)."""
        return self._main.options.precision

    @property
    def _main(self) -> GraphSession:
        main = self.sessions.get(RENDERER.name)
        return main if main is not None else next(iter(self.sessions.values()))

    def summary(self) -> str:
        """What the GUI and `doctor` show: ``CPU, 2 threads (CUDA unusable: ...)``."""
        return self._main.summary()
