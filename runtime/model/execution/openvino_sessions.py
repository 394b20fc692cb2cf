"""OpenVINO sessions for the graphs named in `runtime.model.contract`: the same interface as
ONNX Runtime's `GraphSession` (built on any thread; one run at a time per session, which in the
app means the inference thread).

OpenVINO reads the exported .onnx files directly (`Core.read_model`), so both backends run the
same graphs and the same contract check. What differs:

- Precision is a compile-time hint: "bf16" runs the fp32 graph with bf16 inference precision
  where the device has it (`OPTIMIZATION_CAPABILITIES` lists BF16: AVX-512 BF16 or AMX CPUs)
  and f32 elsewhere, with a notice. Measured on the golden inputs, bf16 is outside the fp16
  tolerance (README, "Backends"), so only an explicit choice selects it. "int8" runs the
  renderer's int8 IR (NNCF's post-training quantization, made by `imtalker-cam bench`:
  `runtime.model.compile.quantize`) instead of its ONNX file, and every graph with f32 inference
  precision: the layers the quantization kept in f32 are those whose int8 error was largest, so
  bf16 there would spend the margin they were kept for (there is no int8+bf16). An IR that is
  missing or does not match its record is refused with what to run; it is never made here
  (minutes of work that a live start should not hide).
- Devices: "auto" takes a GPU when OpenVINO lists one (Intel iGPU/Arc), else the CPU; the NPU
  only when asked for. A device that cannot compile a graph falls back to the CPU with a notice
  (`GraphSession.notices`), as a failed TensorRT build falls back to CUDA.
- Fixed shapes per call site: the renderer and the velocity graph are compiled per input-shape
  signature on first use (the renderer at the hop's batch, the velocity per step: static
  shapes let the CPU plugin plan memory, 2.4x less for the renderer), the last `MAX_COMPILED`
  kept; the other graphs (audio of any length) compile once with their dynamic axes. Each
  signature of a `DeviceGraph` gets its own infer request with preallocated host inputs and
  outputs (`OpenVinoSlot`, used by `runtime.model.execution.device_graphs`). A device that cannot
  compile falls back at that first compile.
- Cancellation: runs are started asynchronously and waited for in short slices, so
  `run_options.terminate = True` from another thread cancels a run in flight, as with ONNX
  Runtime.

Threads: one inference stream with one thread per usable physical core (`usable_cores`), the
latency hint, as the ONNX Runtime CPU sessions.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import openvino as ov

from runtime.model.compile.graph_version import GraphVersionError, graphs_version
from runtime.model.compile.quantize import find_int8
from runtime.model.contract import RENDERER, GraphSpec
from runtime.model.execution.openvino_stages import StagedCompiled, StagedRequest, StagePlan
from runtime.model.execution.precision_plans import renderer_fp32, renderer_stages
from runtime.model.execution.sessions import (
    CUDA_GRAPH_GRAPHS,
    OPENVINO,
    ContractError,
    GraphSession,
    SessionOptions,
    usable_cores,
)

__all__ = [
    "HINTS",
    "OpenVinoSession",
    "OpenVinoSlot",
    "available_devices",
    "bf16_supported",
    "core",
    "device_report",
    "pick_device",
]

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]

HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32", "bf16-mixed": "bf16"}
"""`SessionOptions.precision` -> OpenVINO's INFERENCE_PRECISION_HINT."""
CAPABILITY = {"f16": "FP16", "bf16": "BF16"}
"""The OPTIMIZATION_CAPABILITIES entry a reduced hint needs on a device."""
WAIT_SLICE_MS = 50
"""How often a run in flight looks at its cancel flag."""
MAX_COMPILED = 2
"""Input-shape signatures kept compiled per graph (each holds its own copy of the weights)."""

Signature = tuple[tuple[int, ...], ...]
Compiled: TypeAlias = ov.CompiledModel | StagedCompiled
Request: TypeAlias = ov.InferRequest | StagedRequest

_lock = threading.Lock()
_core: ov.Core | None = None


def core() -> ov.Core:
    """The process's OpenVINO core (device plugins load once)."""
    global _core
    with _lock:
        if _core is None:
            _core = ov.Core()
        return _core


def available_devices() -> tuple[str, ...]:
    """OpenVINO's devices here (``CPU``, ``GPU.0``, ``NPU``...); what `doctor` lists."""
    return tuple(core().available_devices)


def device_report() -> list[dict[str, Any]]:
    """Each OpenVINO device with its full name and optimisation capabilities (`doctor`)."""
    out: list[dict[str, Any]] = []
    for device in available_devices():
        try:
            name = str(core().get_property(device, "FULL_DEVICE_NAME"))
        except RuntimeError as exc:
            name = f"? ({exc})"
        out.append(
            {"device": device, "name": name, "capabilities": list(device_capabilities(device))}
        )
    return out


def device_capabilities(device: str) -> tuple[str, ...]:
    try:
        return tuple(core().get_property(device, "OPTIMIZATION_CAPABILITIES"))
    except RuntimeError:
        return ()


def bf16_supported(device: str = "CPU") -> bool:
    """Whether `device` runs bf16 natively (on the CPU: AVX-512 BF16 or AMX)."""
    return "BF16" in device_capabilities(device)


def pick_device(wanted: str, devices: Sequence[str]) -> str:
    """The device family to compile for: `wanted` when listed, "auto" -> the first GPU, else the
    CPU (NPUs are only used when asked for: they compile slowly and need static shapes)."""
    families = {d.split(".")[0] for d in devices}
    if wanted == "auto":
        return "GPU" if "GPU" in families else "CPU"
    return wanted if wanted in families else "CPU"


def _type_name(element: ov.Type) -> str:
    return {ov.Type.f32: "float32", ov.Type.i64: "int64"}.get(element, str(element))


def contract_problems(spec: GraphSpec, model: ov.Model) -> list[str]:
    """Every difference between a read model's I/O and the contract (empty when it fits):
    names and dtypes of inputs and outputs, input shapes axis by axis, output ranks."""
    problems: list[str] = []
    for kind, specs, ports in (
        ("input", spec.inputs, model.inputs),
        ("output", spec.outputs, model.outputs),
    ):
        got = {p.get_any_name(): p for p in ports}
        want = {t.name: t for t in specs}
        problems += [f"missing {kind} {n!r}" for n in want if n not in got]
        problems += [f"unexpected {kind} {n!r}" for n in got if n not in want]
        for name, t in want.items():
            port = got.get(name)
            if port is None:
                continue
            dtype = _type_name(port.get_element_type())
            if dtype != t.dtype:
                problems.append(f"{kind} {name!r} is {dtype}, expected {t.dtype}")
            shape = port.get_partial_shape()
            if shape.rank.get_length() != len(t.shape):
                problems.append(f"{kind} {name!r} has rank {shape.rank}, expected {len(t.shape)}")
                continue
            if kind == "input":
                for axis, (w, g) in enumerate(zip(t.shape, shape, strict=True)):
                    fixed = g.is_static
                    if (isinstance(w, int) and (not fixed or g.get_length() != w)) or (
                        isinstance(w, str) and fixed
                    ):
                        problems.append(f"input {name!r} axis {axis} is {g}, expected {w}")
    return problems


class OpenVinoSession(GraphSession):
    """One graph compiled by OpenVINO (see the module docstring).

    `providers`: ``("OpenVINO/CPU",)`` and the like, the device the graph was compiled for;
    `precision`: the inference precision in effect ("f32", "bf16"); `quantized`: the graph is
    the int8 IR; `notices`: a device or precision asked for and not in use.
    """

    backend = OPENVINO
    max_shapes = MAX_COMPILED

    def __init__(self, spec: GraphSpec, path: Path, *, options: SessionOptions) -> None:
        self.spec = spec
        self.path = path
        self.options = options
        self.notices: list[str] = []
        self.unusable = ()
        self.memory_pattern = False
        self.intra_op_threads = options.intra_op_threads or usable_cores()
        self.quantized = options.precision == "int8" and spec.name == RENDERER.name
        if self.quantized:
            self.path = path = find_int8(path.parent)
        problems = contract_problems(spec, core().read_model(str(path)))
        if problems:
            raise ContractError(
                f"graph {spec.name!r} at {path} does not match the contract: " + "; ".join(problems)
            )
        self.device_name = pick_device(options.openvino_device, available_devices())
        if options.openvino_device not in ("auto", self.device_name):
            self._notice(f"OpenVINO has no {options.openvino_device} here; using the CPU")
        # bf16-mixed: the renderer in stages (`openvino_stages`), every other graph in f32 (the
        # sampler's motion is outside tolerance in bf16).
        self.mixed = options.precision == "bf16-mixed" and spec.name == RENDERER.name
        self._fp32_stages = self._mixed_fp32_stages() if self.mixed else frozenset[str]()
        self.precision = self._precision(self.device_name)
        self._set_device(self.device_name)
        self._compiled: OrderedDict[Signature, Compiled] = OrderedDict()
        self._requests: dict[Signature, Request] = {}
        logger.debug(
            "%s: OpenVINO %s, %s, %d threads",
            spec.name,
            self.device_name,
            self.precision,
            self.intra_op_threads,
        )

    def _set_device(self, device: str) -> None:
        self.device_name = device
        self.requested = [f"OpenVINO/{device}"]
        self.providers = (f"OpenVINO/{device}",)

    def signature(self, shapes: Mapping[str, tuple[int, ...]]) -> Signature:
        """The compiled model's key: the input shapes of the fixed-shape graphs (renderer,
        velocity); () for the others (audio of any length: one compile with dynamic axes)."""
        if self.spec.name not in CUDA_GRAPH_GRAPHS:
            return ()
        return tuple(tuple(shapes[name]) for name in self.spec.input_names)

    def compiled_for(self, shapes: Mapping[str, tuple[int, ...]]) -> Compiled:
        """The graph compiled for these input shapes, on first use; the `MAX_COMPILED` most
        recent are kept. The renderer and the velocity (called with a few fixed shapes) are
        compiled with those shapes static: the renderer at batch 1 measured 0.54 GB working
        memory that way against 1.29 GB with dynamic axes. The other graphs compile once."""
        static = self.spec.name in CUDA_GRAPH_GRAPHS
        key = self.signature(shapes)
        compiled = self._compiled.get(key)
        if compiled is not None:
            self._compiled.move_to_end(key)
            return compiled
        model = core().read_model(str(self.path))
        if static:
            shaped = {name: ov.PartialShape(list(shapes[name])) for name in self.spec.input_names}
            model.reshape(shaped)
        try:
            compiled = self._compile(model, self.device_name, self.precision)
        except RuntimeError as exc:
            if self.device_name == "CPU":
                raise
            self._notice(
                f"OpenVINO {self.device_name} could not compile this graph "
                f"({type(exc).__name__}: {exc}); using the CPU"
            )
            self._set_device("CPU")
            self.precision = self._precision("CPU")
            self._compiled.clear()
            self._requests.clear()
            compiled = self._compile(model, "CPU", self.precision)
        self._compiled[key] = compiled
        while len(self._compiled) > MAX_COMPILED:
            old, _ = self._compiled.popitem(last=False)
            self._requests.pop(old, None)
        return compiled

    def _notice(self, text: str) -> None:
        logger.warning("%s: %s", self.spec.name, text)
        self.notices.append(text)

    def _precision(self, device: str) -> str:
        if self.options.precision == "bf16-mixed" and not self.mixed:
            return "f32"
        hint = HINTS[self.options.precision]
        needed = CAPABILITY.get(hint)
        if needed is None or device != "CPU" or needed in device_capabilities(device):
            return hint
        self._notice(f"this CPU has no native {self.options.precision}; running fp32")
        return "f32"

    def _compile(self, model: ov.Model, device: str, precision: str) -> Compiled:
        if self.mixed and device == "CPU" and precision == "bf16":
            plan = StagePlan(stages=renderer_stages(), fp32=self._fp32_stages)
            try:
                return StagedCompiled(
                    model, plan, lambda part, hint: self._compile_whole(part, device, hint)
                )
            except ValueError as exc:  # a renderer exported without module names
                self._notice(f"no stages for bf16-mixed in this graph ({exc}); running f32")
                self.mixed = False
                self.precision = precision = "f32"  # nothing was cut: the check comes first
        return self._compile_whole(model, device, precision)

    def _mixed_fp32_stages(self) -> frozenset[str]:
        """The renderer stages bf16-mixed keeps in fp32 for this graph's model version (read
        once, from the config files beside the graph)."""
        try:
            version: str | None = graphs_version(self.path.parent).name
        except (GraphVersionError, OSError, ValueError):
            version = None
        return renderer_fp32(version)

    def _compile_whole(self, model: ov.Model, device: str, precision: str) -> ov.CompiledModel:
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
        }
        if device == "CPU":
            config["INFERENCE_NUM_THREADS"] = self.intra_op_threads
            config["NUM_STREAMS"] = 1
        if self.options.openvino_cache_dir is not None:
            config["CACHE_DIR"] = str(self.options.openvino_cache_dir)
        return core().compile_model(model, device, config)

    @property
    def cuda_graph(self) -> bool:
        return False

    @property
    def on_gpu(self) -> bool:
        return self.device_name != "CPU"

    @property
    def device(self) -> tuple[str, int]:
        """Inputs and outputs live in host memory (OpenVINO copies to its device itself)."""
        return ("cpu", 0)

    def summary(self) -> str:
        """One line: ``OpenVINO CPU bf16, 2 threads``."""
        threads = self.intra_op_threads
        count = "automatic threads" if threads == 0 else f"{threads} thread" + "s" * (threads > 1)
        precision = "int8+f32" if self.quantized else self.precision
        if self.mixed and precision == "bf16":
            precision = "bf16-mixed (" + ", ".join(sorted(self._fp32_stages)) + " in f32)"
        text = f"OpenVINO {self.device_name} {precision}, {count}"
        return text + (f" ({'; '.join(self.notices)})" if self.notices else "")

    def new_request(self, shapes: Mapping[str, tuple[int, ...]]) -> Request:
        """An infer request of its own for these input shapes (`OpenVinoSlot`)."""
        return self.compiled_for(shapes).create_infer_request()

    def run(
        self,
        inputs: Mapping[str, npt.NDArray[np.generic]],
        *,
        run_options: ort.RunOptions | None = None,
    ) -> dict[str, Array]:
        missing = set(self.spec.input_names) - set(inputs)
        if missing:
            raise KeyError(f"{self.spec.name}: missing inputs {sorted(missing)}")
        arrays = {
            name: np.ascontiguousarray(inputs[name], dtype=self.spec.input(name).dtype)
            for name in self.spec.input_names
        }
        shapes = {name: tuple(a.shape) for name, a in arrays.items()}
        compiled = self.compiled_for(shapes)
        key = self.signature(shapes)
        request = self._requests.get(key)
        if request is None:
            request = self._requests[key] = compiled.create_infer_request()
        for name, array in arrays.items():
            request.set_tensor(name, ov.Tensor(array))
        infer(request, self.spec.name, run_options)
        return {name: request.get_tensor(name).data.copy() for name in self.spec.output_names}

    def io_binding(self, shapes: Mapping[str, tuple[int, ...]] | None = None) -> ort.IOBinding:
        raise TypeError("OpenVINO sessions run through OpenVinoSlot, not ONNX Runtime IOBinding")


def infer(request: Request, name: str, run_options: ort.RunOptions | None) -> None:
    """Run `request`, cancelling it when `run_options.terminate` is set meanwhile."""
    if run_options is not None and run_options.terminate:
        raise RuntimeError(f"{name}: run cancelled")
    request.start_async()
    while not request.wait_for(WAIT_SLICE_MS):
        if run_options is not None and run_options.terminate:
            request.cancel()
            raise RuntimeError(f"{name}: run cancelled")


class OpenVinoSlot:
    """One input-shape signature of an OpenVINO graph: an infer request whose inputs and
    outputs are host arrays allocated once and shared with OpenVINO (no copies on the CPU).
    `static`: inputs bound once (the renderer's avatar), as arrays updated in place."""

    def __init__(
        self,
        session: OpenVinoSession,
        shapes: Mapping[str, tuple[int, ...]],
        static: Mapping[str, npt.NDArray[np.generic]],
        outputs: Mapping[str, tuple[int, ...]],
    ) -> None:
        spec = session.spec
        self._name = spec.name
        every = {**{name: tuple(a.shape) for name, a in static.items()}, **shapes}
        self._request = session.new_request(every)
        self.inputs: dict[str, npt.NDArray[np.generic]] = {}
        for name, shape in shapes.items():
            array = np.empty(shape, np.dtype(spec.input(name).dtype))
            self._request.set_tensor(name, ov.Tensor(array, shared_memory=True))
            self.inputs[name] = array
        for name, array in static.items():
            self.rebind(name, array)
        self.host: dict[str, Array] = {}
        for name, shape in outputs.items():
            out: Array = np.empty(shape, np.float32)
            self._request.set_tensor(name, ov.Tensor(out, shared_memory=True))
            self.host[name] = out

    def rebind(self, name: str, array: npt.NDArray[np.generic]) -> None:
        self._request.set_tensor(name, ov.Tensor(array, shared_memory=True))

    def run(
        self, inputs: Mapping[str, npt.NDArray[np.generic]], run_options: ort.RunOptions | None
    ) -> dict[str, Array]:
        for name, array in self.inputs.items():
            np.copyto(array, inputs[name], casting="same_kind")
        infer(self._request, self._name, run_options)
        return dict(self.host)
