"""ONNX Runtime sessions for the graphs named in `runtime.contract` (any thread; one run at a time
per session is the caller's responsibility).

Provider choice is CUDA -> CPU (TensorRT only when asked for). ONNX Runtime silently falls
back to the CPU when a GPU provider fails to initialise; the providers a session actually
uses are read back with `get_providers()` and reported, so that fallback is visible.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from runtime.contract import GRAPHS, GraphSpec

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]

PREFERENCE = ("CUDAExecutionProvider", "CPUExecutionProvider")


@dataclass(frozen=True)
class SessionOptions:
    """How sessions are built. Threads: 0 lets ONNX Runtime pick (one per physical core)."""

    intra_op_threads: int = 0
    inter_op_threads: int = 1
    providers: tuple[str, ...] | None = None  # None: PREFERENCE filtered by what is compiled in
    use_tensorrt: bool = False


def requested_providers(options: SessionOptions) -> list[str]:
    available = set(ort.get_available_providers())
    wanted = list(options.providers) if options.providers is not None else list(PREFERENCE)
    if options.use_tensorrt and options.providers is None:
        wanted.insert(0, "TensorrtExecutionProvider")
    chosen = [p for p in wanted if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class GraphSession:
    """One graph: inputs and outputs by name, checked against the contract."""

    def __init__(self, spec: GraphSpec, path: Path, *, options: SessionOptions) -> None:
        self.spec = spec
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.intra_op_threads
        so.inter_op_num_threads = options.inter_op_threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.requested = requested_providers(options)
        self._session = ort.InferenceSession(str(path), sess_options=so, providers=self.requested)
        self.providers: tuple[str, ...] = tuple(self._session.get_providers())
        if self.providers[0] != self.requested[0]:
            logger.warning(
                "%s: asked for %s but ONNX Runtime is using %s",
                spec.name,
                self.requested[0],
                ", ".join(self.providers),
            )
        self._check_contract()

    def _check_contract(self) -> None:
        got_in = tuple(i.name for i in self._session.get_inputs())
        got_out = tuple(o.name for o in self._session.get_outputs())
        if set(got_in) != set(self.spec.input_names) or set(got_out) != set(self.spec.output_names):
            raise ValueError(
                f"graph {self.spec.name!r} does not match the contract: inputs {got_in}, "
                f"outputs {got_out}; expected {self.spec.input_names} -> {self.spec.output_names}"
            )

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
        outs = self._session.run(list(self.spec.output_names), feeds, run_options)
        return {name: np.asarray(o) for name, o in zip(self.spec.output_names, outs, strict=True)}


@dataclass(frozen=True)
class ModelSet:
    """The six graphs of one compiled model."""

    sessions: Mapping[str, GraphSession]

    def __getitem__(self, name: str) -> GraphSession:
        return self.sessions[name]

    @property
    def providers(self) -> tuple[str, ...]:
        """Providers actually in use, primary first (the renderer's, which dominates cost)."""
        return self.sessions["renderer"].providers


def open_model_set(
    graph_dir: Path,
    *,
    options: SessionOptions,
    names: Sequence[str] | None = None,
) -> ModelSet:
    wanted = [g for g in GRAPHS if names is None or g.name in names]
    sessions = {g.name: GraphSession(g, graph_dir / g.filename, options=options) for g in wanted}
    return ModelSet(sessions=sessions)
