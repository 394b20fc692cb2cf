"""What Go Live will give on a machine that is not real time, known before it starts (the GUI
thread before Go Live, reading one small JSON file; the set-up's worker after its timing run).

Two sources, the newest first: what the last live session on this model measured, and else the
last timing run of the same compiled graphs (the set-up's, after a conversion, or
`imtalker-cam bench`; `runtime.engine.bench.result_for`). Both count only when they measured
what the next session will run on: the same backend, device and precision, as the Backend and
precision settings resolve for it (`runtime.engine.backend_options.session_choice`); figures
from ONNX Runtime on the CPU say nothing about OpenVINO or bf16. The bench's figures go through
the engine's own planner (`HopPlanner` seeded as a session seeds it), so the question before the
first Go Live says what that session will then announce.
"""

from __future__ import annotations

import logging
from pathlib import Path

from runtime.engine.bench import BenchResult, result_for
from runtime.engine.live.hop_choice import HopPlan, picture_rate
from runtime.engine.live.plan import HopPlanner
from runtime.engine.live.types import EngineConfig, EventDetail, EventKind, LiveControls
from runtime.model.execution.backends import BackendChoice
from runtime.model.execution.sessions import OPENVINO

logger = logging.getLogger(__name__)

REMOTE_WAY_OUT = "a render server with a GPU (Controls › Compute › Remote server)"


def short_provider(name: str) -> str:
    """'CUDAExecutionProvider' -> 'CUDA'."""
    return name.removesuffix("ExecutionProvider") or name


def expectation_text(interval_s: float, provider: str) -> str:
    """What a machine that is not real time gives, and what to do instead."""
    on = "on this CPU" if provider == "CPU" else f"on {provider}"
    return (
        f"Not real time {on}: {picture_rate(interval_s)}. For smooth video use a GPU, "
        f"{REMOTE_WAY_OUT}, or render offline (imtalker-cam render)."
    )


def measured_on(result: BenchResult) -> str:
    """What a timing run measured, short: "CPU", "CUDA", "CoreML" on ONNX Runtime,
    "OpenVINO CPU" and the like on OpenVINO."""
    choice = result.choice
    if choice.backend == OPENVINO:
        return f"OpenVINO {choice.device}"
    return choice.device


def _quiet(kind: EventKind, message: str, detail: EventDetail = None) -> None:
    """The planner's announcements are not wanted here: only its plan."""


def bench_plan(result: BenchResult, controls: LiveControls) -> HopPlan:
    """The first plan a session would make with these controls, from a timing run's figures."""
    engine = EngineConfig()
    planner = HopPlanner(
        fps=engine.fps,
        lookahead=engine.lookahead,
        quality=engine.quality,
        controls=controls,
        emit=_quiet,
        expected=result.hop_costs(),
    )
    return planner.plan


def result_expectation(result: BenchResult, controls: LiveControls) -> str | None:
    """What going live gives by a timing run, and what to do instead; None when it keeps up."""
    plan = bench_plan(result, controls)
    if not plan.measured or plan.real_time:
        return None
    return expectation_text(plan.picture_interval_s, measured_on(result))


def from_bench(
    cache_dir: Path, graphs: Path, controls: LiveControls, *, choice: BackendChoice
) -> str | None:
    """The expectation from the last timing run of these graphs on `choice` (backend, device
    and precision); None when it keeps up, or they were not timed on it (or the result cannot
    be read)."""
    try:
        result = result_for(cache_dir, graphs, choice=choice)
    except (OSError, ValueError):
        return None
    if result is None:
        return None
    expected = result_expectation(result, controls)
    if expected is not None:
        logger.info("not real time by the last timing run of %s on %s", graphs, choice.label)
    return expected
