"""Graphs run with their tensors resident on the session's device (IOBinding), the one path the
live engine and the offline render use on every provider (CPU included, so CI exercises it).

Runs on the caller's thread; one run at a time per object (the app's inference thread).

- `DeviceGraph`: per input-shape signature a `_Slot` with input and output OrtValues allocated
  once on the device and bound once; a run copies the inputs in place (`update_inplace`), runs,
  and returns host arrays that are *reused by the next run with the same shapes* (callers
  consume or copy them first). On the CPU the outputs are written straight into those host
  buffers; on a GPU ORT copies each output to host once per run.
- `DeviceRenderer`: the renderer graph with one avatar's tensors (~30 MB) in fixed device
  buffers; `use(tensors)` uploads a new avatar into them only when it changed, so frames cost
  one host-to-device copy of the motion latents and one device-to-host copy of the frames.
- CUDA graphs (`SessionOptions.enable_cuda_graph`): fixed addresses are what a captured graph
  needs, so each slot gets its own `gpu_graph_id`. When capture fails (an operator that cannot
  be captured, a CPU fallback node) the graph is reopened without it and a notice says so.

OpenVINO sessions (`runtime.model.execution.openvino_sessions`) take the same path with host
buffers instead of OrtValues: per shape signature an `OpenVinoSlot` (an infer request whose
inputs and outputs share memory with preallocated arrays) and the avatar in `HostBuffer`s.

Pinned host memory is not used: ONNX Runtime's Python API cannot allocate it ("cuda_pinned"
is not a device type there), so device-to-host copies go to pageable memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from runtime.model.contract import AVATAR_TENSORS, MOTION_DIM, RENDERER
from runtime.model.execution.sessions import OPENVINO, GraphSession

if TYPE_CHECKING:
    from runtime.model.execution.openvino_sessions import OpenVinoSlot

__all__ = ["DeviceGraph", "DeviceRenderer", "HostBuffer"]

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]
Reopen = Callable[[GraphSession], GraphSession]

MAX_SLOTS = 8
"""Shape signatures kept per graph (e.g. renderer batches 1..hop); the oldest is dropped."""


class Buffer(Protocol):
    """A fixed input buffer: an OrtValue, or a `HostBuffer` for OpenVINO."""

    def update_inplace(self, np_arr: npt.NDArray[np.generic], /) -> None: ...

    def numpy(self) -> npt.NDArray[np.generic]: ...


class HostBuffer:
    """A host array updated in place (OpenVINO shares its memory: no copy per run)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.array: Array = np.empty(shape, np.float32)

    def update_inplace(self, np_arr: npt.NDArray[np.generic], /) -> None:
        np.copyto(self.array, np_arr, casting="same_kind")

    def numpy(self) -> npt.NDArray[np.generic]:
        return self.array


class Slot(Protocol):
    def run(
        self, inputs: Mapping[str, npt.NDArray[np.generic]], run_options: ort.RunOptions | None
    ) -> dict[str, Array]: ...

    def rebind(self, name: str, value: Buffer) -> None: ...


def _new_slot(
    session: GraphSession,
    shapes: Mapping[str, tuple[int, ...]],
    static: Mapping[str, Buffer],
    graph_id: int,
) -> Slot:
    if session.backend != OPENVINO:
        return _Slot(session, shapes, static, graph_id)
    from runtime.model.execution.openvino_sessions import OpenVinoSession, OpenVinoSlot

    if not isinstance(session, OpenVinoSession):
        raise TypeError(f"{session.spec.name}: an OpenVINO graph that is no OpenVinoSession")
    arrays = {name: value.numpy() for name, value in static.items()}
    return _OpenVinoSlot(OpenVinoSlot(session, shapes, arrays, output_shapes(session, shapes)))


class _OpenVinoSlot:
    def __init__(self, slot: OpenVinoSlot) -> None:
        self._slot = slot

    def run(
        self, inputs: Mapping[str, npt.NDArray[np.generic]], run_options: ort.RunOptions | None
    ) -> dict[str, Array]:
        return self._slot.run(inputs, run_options)

    def rebind(self, name: str, value: Buffer) -> None:
        self._slot.rebind(name, value.numpy())


def _reopen_without_cuda_graph(session: GraphSession) -> GraphSession:
    return GraphSession(
        session.spec, session.path, options=replace(session.options, enable_cuda_graph=False)
    )


def output_shapes(
    session: GraphSession, shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, tuple[int, ...]]:
    """Each output's shape for these input shapes: symbolic axes take the size the same-named
    axis has in the inputs (the contract names them, e.g. "batch")."""
    sizes: dict[str, int] = {}
    for name, shape in shapes.items():
        for axis, size in zip(session.spec.input(name).shape, shape, strict=True):
            if isinstance(axis, str):
                sizes[axis] = size
    out: dict[str, tuple[int, ...]] = {}
    for spec in session.spec.outputs:
        dims: list[int] = []
        for axis in spec.shape:
            if isinstance(axis, str) and axis not in sizes:
                raise ValueError(f"{session.spec.name}: output axis {axis!r} is not an input axis")
            dims.append(sizes[axis] if isinstance(axis, str) else axis)
        out[spec.name] = tuple(dims)
    return out


class _Slot:
    """Input and output OrtValues for one set of input shapes, allocated and bound once (fixed
    addresses, as a captured CUDA graph needs)."""

    def __init__(
        self,
        session: GraphSession,
        shapes: Mapping[str, tuple[int, ...]],
        static: Mapping[str, Buffer],
        graph_id: int,
    ) -> None:
        device, device_id = session.device
        spec = session.spec
        self._session = session
        self.binding = session.io_binding(shapes)
        self.inputs: dict[str, ort.OrtValue] = {}
        for name, shape in shapes.items():
            dtype = np.dtype(spec.input(name).dtype)
            value = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, device, device_id)
            self.binding.bind_ortvalue_input(name, value)
            self.inputs[name] = value
        for name, value in static.items():
            self.rebind(name, value)
        self.run_options: ort.RunOptions | None = None
        if session.cuda_graph:
            self.run_options = ort.RunOptions()
            self.run_options.add_run_config_entry("gpu_graph_id", str(graph_id))
        # On the CPU the outputs are written straight into these host arrays (no copy).
        self.host: dict[str, Array] | None = {} if device == "cpu" else None
        self._outputs: dict[str, ort.OrtValue] = {}
        for name, shape in output_shapes(session, shapes).items():
            if self.host is not None:
                array: Array = np.empty(shape, np.float32)
                value = ort.OrtValue.ortvalue_from_numpy(array)
                self.host[name] = array
            else:
                value = ort.OrtValue.ortvalue_from_shape_and_type(
                    list(shape), np.float32, device, device_id
                )
            self.binding.bind_ortvalue_output(name, value)
            self._outputs[name] = value

    def rebind(self, name: str, value: Buffer) -> None:
        if not isinstance(value, ort.OrtValue):
            raise TypeError(f"{name}: ONNX Runtime binds OrtValues")
        self.binding.bind_ortvalue_input(name, value)

    def run(
        self, inputs: Mapping[str, npt.NDArray[np.generic]], run_options: ort.RunOptions | None
    ) -> dict[str, Array]:
        spec = self._session.spec
        for name, value in self.inputs.items():
            value.update_inplace(np.ascontiguousarray(inputs[name], dtype=spec.input(name).dtype))
        if self.run_options is not None:
            # A captured graph replays in milliseconds: cancellation is checked before it.
            if run_options is not None and run_options.terminate:
                raise RuntimeError(f"{spec.name}: run cancelled")
            run_options = self.run_options
        self.binding.synchronize_inputs()
        self._session.run_with_binding(self.binding, run_options=run_options)
        self.binding.synchronize_outputs()
        if self.host is not None:
            return dict(self.host)
        return {name: value.numpy() for name, value in self._outputs.items()}


class DeviceGraph:
    """A graph run through preallocated, device-resident bindings (see the module docstring).

    `static` inputs are bound by `DeviceRenderer` (per-avatar tensors) and not passed per run.
    The arrays `run` returns stay valid until the next run with the same input shapes.
    `notices`: user-facing lines about a capability that was asked for and is not in use
    (CUDA graphs that could not be captured).
    """

    def __init__(
        self,
        session: GraphSession,
        *,
        static: Mapping[str, Buffer] | None = None,
        reopen: Reopen = _reopen_without_cuda_graph,
    ) -> None:
        self.session = session
        self.notices: list[str] = []
        self._static: dict[str, Buffer] = dict(static or {})
        self._reopen = reopen
        self._slots: dict[tuple[tuple[int, ...], ...], Slot] = {}
        self._next_graph_id = 0

    @property
    def name(self) -> str:
        return self.session.spec.name

    def _dynamic_names(self) -> list[str]:
        return [n for n in self.session.spec.input_names if n not in self._static]

    def rebind_static(self, name: str, value: Buffer) -> None:
        self._static[name] = value
        for slot in self._slots.values():
            slot.rebind(name, value)

    def _slot(self, inputs: Mapping[str, npt.NDArray[np.generic]]) -> Slot:
        names = self._dynamic_names()
        missing = [n for n in names if n not in inputs]
        if missing:
            raise KeyError(f"{self.name}: missing inputs {missing}")
        shapes = {n: tuple(np.shape(inputs[n])) for n in names}
        key = tuple(shapes[n] for n in names)
        slot = self._slots.get(key)
        if slot is None:
            if len(self._slots) >= min(MAX_SLOTS, self.session.max_shapes):
                self._slots.pop(next(iter(self._slots)))
            slot = _new_slot(self.session, shapes, self._static, self._next_graph_id)
            self._next_graph_id += 1
            self._slots[key] = slot
        return slot

    def run(
        self,
        inputs: Mapping[str, npt.NDArray[np.generic]],
        *,
        run_options: ort.RunOptions | None = None,
    ) -> dict[str, Array]:
        slot = self._slot(inputs)
        try:
            return slot.run(inputs, run_options)
        except Exception as exc:
            if not self.session.cuda_graph or (run_options is not None and run_options.terminate):
                raise
            self._fall_back(exc)
            return self._slot(inputs).run(inputs, run_options)

    def _fall_back(self, exc: Exception) -> None:
        notice = (
            f"{self.name}: CUDA graphs unavailable ({type(exc).__name__}: {exc}); running without"
        )
        logger.warning("%s", notice)
        self.notices.append(notice)
        self.session = self._reopen(self.session)
        self._slots.clear()


class DeviceRenderer:
    """The renderer with one avatar resident on the device (see the module docstring).

    `use(tensors)` makes `tensors` (contract `AVATAR_TENSORS`, batch 1) the current avatar; the
    upload happens only when they are not the ones already resident (same Mapping object).
    `render(motion)` -> (B, 3, 512, 512) frames in [0, 1], valid until the next render at the
    same batch size.
    """

    def __init__(self, session: GraphSession, *, reopen: Reopen = _reopen_without_cuda_graph):
        if session.spec.name != RENDERER.name:
            raise ValueError(f"DeviceRenderer needs the renderer graph, got {session.spec.name!r}")
        device, device_id = session.device
        self._avatar_values: dict[str, Buffer] = {
            spec.name: HostBuffer(tuple(int(d) for d in spec.shape))
            if session.backend == OPENVINO
            else ort.OrtValue.ortvalue_from_shape_and_type(
                list(spec.shape), np.float32, device, device_id
            )
            for spec in AVATAR_TENSORS
        }
        self.graph = DeviceGraph(session, static=self._avatar_values, reopen=self._reopened(reopen))
        self._current: Mapping[str, npt.NDArray[np.generic]] | None = None

    def _reopened(self, reopen: Reopen) -> Reopen:
        def again(session: GraphSession) -> GraphSession:
            fresh = reopen(session)
            if fresh.device != session.device:
                device, device_id = fresh.device
                for spec in AVATAR_TENSORS:
                    host = self._avatar_values[spec.name].numpy()
                    value = ort.OrtValue.ortvalue_from_numpy(host, device, device_id)
                    self._avatar_values[spec.name] = value
                    self.graph.rebind_static(spec.name, value)
            return fresh

        return again

    @property
    def session(self) -> GraphSession:
        return self.graph.session

    @property
    def notices(self) -> list[str]:
        return self.graph.notices

    def use(self, tensors: Mapping[str, npt.NDArray[np.generic]]) -> None:
        if tensors is self._current:
            return
        missing = [t.name for t in AVATAR_TENSORS if t.name not in tensors]
        if missing:
            raise KeyError(f"avatar tensors missing: {missing}")
        for spec in AVATAR_TENSORS:
            array = np.ascontiguousarray(tensors[spec.name], dtype=np.float32)
            if array.shape != spec.shape:
                raise ValueError(f"{spec.name} has shape {array.shape}, expected {spec.shape}")
            self._avatar_values[spec.name].update_inplace(array)
        self._current = tensors

    def render(
        self, motion: npt.NDArray[np.generic], *, run_options: ort.RunOptions | None = None
    ) -> Array:
        if self._current is None:
            raise RuntimeError("DeviceRenderer.render before use(avatar)")
        motion = np.ascontiguousarray(motion, dtype=np.float32).reshape(-1, MOTION_DIM)
        return self.graph.run({"motion": motion}, run_options=run_options)["frames"]
