"""Mixed precision for OpenVINO on the CPU: one graph cut into stages, each compiled with its
own inference precision, run as a chain of infer requests that share their boundary tensors
(built on any thread; one run at a time, as `OpenVinoSession`).

Why stages: OpenVINO's CPU plugin applies ``INFERENCE_PRECISION_HINT`` to a whole compiled
model. Per-node markers (the ``disable_fp16_compression`` runtime info) did not change its bf16
results in 2026.4 (measured on the renderer: mean |d| 4.2e-3 marked or not), while compiling
parts separately does what it says. The cut follows the node names the exporter gives (module
paths such as ``/frame_decoder/resblocks.2/...``): a stage is a list of name prefixes; an op
whose name matches none belongs to the first stage, and every op is raised to the latest stage
among its inputs, so each stage only depends on itself and earlier ones.

Which stages stay fp32 is data (`runtime.model.execution.precision_plans`), chosen by measured
sensitivity (tests/bench/bench_mixed_precision.py); bench then checks the whole graph against
ONNX Runtime fp32 like any other candidate before ``--backend auto`` may take it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import openvino as ov
from openvino import opset13 as ops
from openvino.passes import ConstantFolding, Manager

__all__ = ["StagePlan", "StagedCompiled", "StagedRequest", "assign_stages", "split_model"]

logger = logging.getLogger(__name__)

_UNNAMED = ("Parameter", "Constant", "Result")
"""Ops that belong to no stage of their own: inputs and weights go with their consumers."""


@dataclass(frozen=True, kw_only=True)
class StagePlan:
    """Stages in graph order and the precision of each. `stages`: (name, op-name prefixes);
    ops before the first named op belong to the first stage. `fp32`: the stages that keep f32;
    every other stage runs at `reduced` (an OpenVINO hint, "bf16")."""

    stages: tuple[tuple[str, tuple[str, ...]], ...]
    fp32: frozenset[str]
    reduced: str = "bf16"

    def precision(self, stage: str) -> str:
        return "f32" if stage in self.fp32 else self.reduced

    def merged(self) -> StagePlan:
        """The same plan with each run of neighbouring stages of one precision joined into one
        stage (named ``a+b+...``). Every compiled model holds its own scratch memory and every
        cut costs a layout change, so the fewest stages that honour the precisions are best:
        the v2 renderer's twelve stages took 281 MB more at the first frame, its four 189 MB,
        and ran 3% faster."""
        runs: list[tuple[list[str], list[str], str]] = []
        for name, prefixes in self.stages:
            precision = self.precision(name)
            if runs and runs[-1][2] == precision:
                runs[-1][0].append(name)
                runs[-1][1].extend(prefixes)
            else:
                runs.append(([name], list(prefixes), precision))
        return StagePlan(
            stages=tuple(("+".join(names), tuple(prefixes)) for names, prefixes, _ in runs),
            fp32=frozenset("+".join(names) for names, _, p in runs if p == "f32"),
            reduced=self.reduced,
        )


def assign_stages(model: ov.Model, plan: StagePlan) -> dict[str, int]:
    """Stage index per op (keyed by its unique `get_name()`) for every op that is not a
    parameter, weight or result: the stage whose prefix its name starts with, else the first
    stage, raised to the latest stage among its inputs (so no stage reads a later one). Raises
    ValueError when a stage of `plan` names no op (a graph exported without module paths, or
    another architecture)."""
    found: set[int] = set()
    out: dict[str, int] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() in _UNNAMED:
            continue
        name = op.get_friendly_name()
        stage = 0
        for index, (_, prefixes) in enumerate(plan.stages):
            if index and name.startswith(prefixes):
                stage = index
                found.add(index)
                break
        for value in op.input_values():
            stage = max(stage, out.get(value.get_node().get_name(), 0))
        out[op.get_name()] = stage
    missing = [plan.stages[i][0] for i in range(1, len(plan.stages)) if i not in found]
    if missing:
        raise ValueError(f"no ops named for stages {missing}: not a graph this plan was made for")
    return out


def split_model(model: ov.Model, plan: StagePlan) -> list[ov.Model]:
    """Cut `model` (static shapes) into one model per stage, in place: every tensor that crosses
    from stage s to a later one becomes a result of s and a parameter of each later stage that
    reads it. Inputs and outputs keep their names; a cut is named ``stage_cut_<n>``."""
    fold = Manager()
    fold.register_pass(ConstantFolding())
    # With static shapes the shape arithmetic folds to constants; a cut through it would make
    # the later stage's reshapes dynamic in rank, which the CPU plugin refuses.
    fold.run_passes(model)
    stage_of = assign_stages(model, plan)
    count = len(plan.stages)
    results: list[list[Any]] = [[] for _ in range(count)]
    params: list[list[Any]] = [[] for _ in range(count)]
    for result in model.get_results():
        source = result.input_value(0).get_node()
        results[_stage(source, stage_of, count)].append(result)
    cuts = 0
    for op in model.get_ordered_ops():
        if op.get_name() not in stage_of:
            continue
        here = stage_of[op.get_name()]
        for output in op.outputs():
            later: dict[int, list[Any]] = {}
            for target in output.get_target_inputs():
                node = target.get_node()
                there = stage_of.get(node.get_name())
                if there is not None and there > here:
                    later.setdefault(there, []).append(target)
            if not later:
                continue
            name = f"stage_cut_{cuts}"
            cuts += 1
            kept = ops.result(output)
            kept.set_friendly_name(name)
            kept.output(0).get_tensor().set_names({name})
            results[here].append(kept)
            for there, targets in later.items():
                param = ops.parameter(output.get_partial_shape(), output.get_element_type(), name)
                param.output(0).get_tensor().set_names({name})
                for target in targets:
                    target.replace_source_output(param.output(0))
                params[there].append(param)
    for parameter in model.get_parameters():
        targets = [t.get_node().get_name() for t in parameter.output(0).get_target_inputs()]
        readers = {stage_of[name] for name in targets if name in stage_of} or {0}
        for there in sorted(readers):
            if there == min(readers):
                params[there].insert(0, parameter)
                continue
            # A graph input read by several stages: each later stage gets its own parameter of
            # the same name, fed the same tensor by `StagedRequest.set_tensor`.
            twin = ops.parameter(parameter.get_partial_shape(), parameter.get_element_type())
            twin.set_friendly_name(parameter.get_friendly_name())
            twin.output(0).get_tensor().set_names(set(parameter.output(0).get_names()))
            for target in parameter.output(0).get_target_inputs():
                if stage_of.get(target.get_node().get_name()) == there:
                    target.replace_source_output(twin.output(0))
            params[there].insert(0, twin)
    return [
        ov.Model(results[i], params[i], f"{model.get_friendly_name()}.{plan.stages[i][0]}")
        for i in range(count)
    ]


def _stage(node: Any, stage_of: Mapping[str, int], count: int) -> int:
    """The stage a result's source belongs to (a graph output read straight from an input or
    a weight goes with the last stage)."""
    return stage_of.get(node.get_name(), count - 1)


class StagedCompiled:
    """The stages of one graph, each compiled with its own precision; quacks like the part of
    `ov.CompiledModel` the sessions use (`create_infer_request`)."""

    def __init__(
        self,
        model: ov.Model,
        plan: StagePlan,
        compile_stage: Callable[[ov.Model, str], ov.CompiledModel],
        *,
        merge: bool = True,
    ) -> None:
        """`merge`: compile each run of neighbouring stages of one precision as one model
        (`StagePlan.merged`); False keeps every stage apart (the sensitivity bench times them
        one by one)."""
        started = time.perf_counter()
        self.plan = plan = plan.merged() if merge else plan
        self.stages = [
            compile_stage(part, plan.precision(name))
            for part, (name, _) in zip(split_model(model, plan), plan.stages, strict=True)
        ]
        logger.debug(
            "%d stages compiled in %.1f s (f32: %s)",
            len(self.stages),
            time.perf_counter() - started,
            ", ".join(sorted(plan.fp32)) or "none",
        )

    def create_infer_request(self) -> StagedRequest:
        return StagedRequest([stage.create_infer_request() for stage in self.stages])


class StagedRequest:
    """One infer request per stage, chained: each cut tensor is the producing request's output
    tensor, set once as the consuming requests' input (no copies). Graph inputs and outputs are
    set and read by name, as on an `ov.InferRequest`; `start_async`/`wait_for` walk the chain
    (each `wait_for` call starts the next stage as soon as one ends), `cancel` stops the stage
    in flight."""

    def __init__(self, requests: Sequence[ov.InferRequest]) -> None:
        self._requests = list(requests)
        self._inputs: dict[str, list[tuple[ov.InferRequest, Any]]] = {}
        self._outputs: dict[str, tuple[ov.InferRequest, Any]] = {}
        produced: dict[str, tuple[ov.InferRequest, Any]] = {}
        for request in self._requests:
            compiled = request.get_compiled_model()
            for port in compiled.inputs:
                # A tensor may carry several names (OpenVINO merges them when it removes ops).
                names = port.get_names()
                cut = next((n for n in names if n in produced), None)
                if cut is not None:
                    source, out = produced[cut]
                    request.set_tensor(port, source.get_tensor(out))
                    continue
                for name in names:
                    self._inputs.setdefault(name, []).append((request, port))
            for port in compiled.outputs:
                for name in port.get_names():
                    if name.startswith("stage_cut_"):
                        produced[name] = (request, port)
                    else:
                        self._outputs[name] = (request, port)
        self._next = len(self._requests)

    def set_tensor(self, name: str, tensor: ov.Tensor) -> None:
        if name in self._outputs:
            request, port = self._outputs[name]
            request.set_tensor(port, tensor)
            return
        for request, port in self._inputs[name]:
            request.set_tensor(port, tensor)

    def get_tensor(self, name: str) -> ov.Tensor:
        request, port = self._outputs[name]
        return request.get_tensor(port)

    def start_async(self) -> None:
        self._next = 0
        self._requests[0].start_async()

    def wait_for(self, timeout_ms: int) -> bool:
        """True once the last stage has finished; False if the stage in flight is still running
        after `timeout_ms`."""
        deadline = time.perf_counter() + timeout_ms / 1000
        while self._next < len(self._requests):
            left_ms = max(0, int((deadline - time.perf_counter()) * 1000))
            if not self._requests[self._next].wait_for(left_ms):
                return False
            self._next += 1
            if self._next < len(self._requests):
                self._requests[self._next].start_async()
        return True

    def cancel(self) -> None:
        if self._next < len(self._requests):
            self._requests[self._next].cancel()

    def infer(self, inputs: Mapping[str, npt.NDArray[np.generic]]) -> dict[str, npt.NDArray[Any]]:
        """Run once with these inputs (copied); the outputs by name (copies)."""
        for name, array in inputs.items():
            self.set_tensor(name, ov.Tensor(np.ascontiguousarray(array)))
        self.start_async()
        while not self.wait_for(1000):
            pass
        return {name: self.get_tensor(name).data.copy() for name in self._outputs}
