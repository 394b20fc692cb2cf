"""`imtalker-cam bench`: per-stage timings of the live pipeline on this machine and whether it
runs in real time (main thread). The result is also kept in the cache dir (`bench.json`) for
the live engine's Auto mode and the GUI (`runtime.engine.bench`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from runtime.commands.device_args import add_device_arguments, backend_choice, session_options
from runtime.engine.bench import BenchSettings
from runtime.model.execution.backends import BackendChoice

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "bench",
        help="time every live stage here and say whether it keeps up in real time",
        description=(
            "Times avatar encoding, the renderer per frame at batch 1..hop, the audio encoder "
            "and the sampler per hop, through the code the live engine runs, and prints the "
            "verdict. Under a minute on a GPU; several minutes on a CPU."
        ),
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--hop", type=int, default=5, help="frames per hop (default 5)")
    p.add_argument("--lookahead", type=int, default=2, help="lookahead frames (default 2)")
    p.add_argument("--nfe", type=int, default=10, help="sampler time-grid points (default 10)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per stage (default 3)")
    p.add_argument("--no-save", action="store_true", help="do not keep the result in the cache")
    models = p.add_argument_group("model")
    models.add_argument("--graphs", type=Path, metavar="DIR", help="compiled graphs in DIR")
    models.add_argument("--weights", type=Path, metavar="DIR", help="checkpoints folder")
    models.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: auto)")
    add_device_arguments(models)
    p.set_defaults(func=run)


def format_result(result: Any) -> str:
    s = result.settings
    lines = [
        f"Provider: {result.provider}; precision {result.precision}",
        f"  avatar encoding            {result.avatar_encoding_ms:9.1f} ms (once per photo)",
    ]
    for batch, ms in sorted(result.renderer_ms_per_frame.items()):
        lines.append(f"  renderer at batch {batch:<2}       {ms:9.1f} ms per frame")
    lines += [
        f"  audio encoder              {result.audio_encoder_ms_per_hop:9.1f} ms per hop",
        f"  sampler (nfe {s.nfe:<2})           {result.sampler_ms_per_hop:9.1f} ms per hop",
        f"  one hop of {s.hop} frames        {result.hop_compute_ms:9.1f} ms "
        f"(budget {result.hop_budget_ms:.0f} ms, renderer at batch {result.render_batch})",
        f"  achieved                   {result.fps:9.1f} fps",
    ]
    if result.renderer_working_mb_per_frame is not None:
        lines.append(
            f"  renderer working memory    {result.renderer_working_mb_per_frame:9.0f} MB per frame"
        )
    if result.peak_rss_mb is not None:
        lines.append(f"  peak resident memory       {result.peak_rss_mb:9.0f} MB")
    if result.trials is not None:
        lines.append(
            "  backends tried (renderer per frame; sampler per hop; vs ONNX Runtime fp32):"
        )
        for r, s in zip(result.trials.renderer, result.trials.sampler, strict=True):
            name = f"{r.backend}/{r.device}/{r.precision}"
            if r.error:
                lines.append(f"    {name:<28} failed: {r.error}")
                continue
            psnr = "exact" if r.psnr_db is None else f"PSNR {r.psnr_db:.1f} dB"
            ok = "within tolerance" if r.within_tolerance and s.within_tolerance else "OUTSIDE"
            lines.append(
                f"    {name:<28} {r.ms_per_frame:8.1f} ms {s.ms_per_hop:8.1f} ms  "
                f"frames mean {r.mean_abs_diff:.1e} p99 {r.p99_abs_diff:.1e} {psnr}, "
                f"motion {s.rel_diff:.1e}: {ok}"
            )
        lines.append(f"  auto's choice: {result.trials.chosen}")
    lines += [f"  note: {n}" for n in result.notices]
    lines.append(result.verdict.capitalize())
    return "\n".join(lines)


def trial_choices(args: argparse.Namespace, chosen: BackendChoice) -> list[BackendChoice]:
    """What bench tries before timing the stages: with ``--backend auto`` on a machine
    without usable CUDA every candidate here; with an explicit backend that one (against the
    fp32 reference); none on CUDA."""
    from runtime.model.execution.backends import REFERENCE, candidates, openvino_installed

    if chosen.device == "CUDA":
        return []
    if args.backend != "auto" or args.precision != "fp32":
        return [] if chosen == REFERENCE else [chosen]
    from runtime.model.execution.providers import COREML, DIRECTML, usable_providers

    ort_usable = usable_providers((DIRECTML, COREML))
    if not openvino_installed():
        return list(candidates(openvino=False, ort_usable=ort_usable))
    from runtime.model.compile.quantize import unavailable_reason
    from runtime.model.execution.openvino_sessions import available_devices, bf16_supported

    return list(
        candidates(
            openvino=True,
            openvino_devices=available_devices(),
            bf16=bf16_supported(),
            int8=unavailable_reason() is None,
            ort_usable=ort_usable,
        )
    )


def int8_absent(choices: list[BackendChoice]) -> str | None:
    """Why bench tries no int8 where it tries OpenVINO's CPU, in one sentence; else None."""
    from runtime.model.compile.quantize import unavailable_reason

    tried_cpu = any(c.backend == "openvino" and c.device == "CPU" for c in choices)
    if not choices or any(c.precision == "int8" for c in choices):
        return None
    reason = unavailable_reason()
    if reason is None or not (tried_cpu or "OpenVINO" in reason):
        return None
    return f"int8 not tried: {reason}"


def prepare_int8(graphs: Path, choices: list[BackendChoice], *, threads: int) -> None:
    """Make the int8 renderer when an int8 candidate is tried and it is missing or damaged
    (minutes at full size, said in the log); a failure is logged and the candidate then fails
    its trial with the reason."""
    if not any(c.precision == "int8" for c in choices):
        return
    from runtime.engine.calibration import ensure_int8
    from runtime.model.compile.quantize import Int8Error

    try:
        ensure_int8(graphs, threads=threads)
    except Int8Error as exc:
        logger.warning("bench: %s", exc)


def run(args: argparse.Namespace) -> int:
    from runtime.core import paths
    from runtime.engine.backend_trials import options_for, run_trials
    from runtime.engine.bench import avatar_tensors, run_bench, write_result
    from runtime.model.compile.weights import resolve_graphs
    from runtime.model.execution.backends import REFERENCE
    from runtime.model.execution.model_set import open_model_set

    try:
        settings = BenchSettings(
            hop=args.hop, lookahead=args.lookahead, nfe=args.nfe, repeats=args.repeats
        )
        graphs = Path(args.graphs if args.graphs is not None else resolve_graphs(args.weights))
        # Not `measured`: bench is what measures, so auto starts from the reference here.
        choice = backend_choice(args)
        options = session_options(args)
    except ValueError as exc:
        logger.error("bench: %s", exc)
        return 2
    except Exception as exc:  # no model yet: one clear line
        logger.error("bench: cannot find the model: %s", exc)
        return 1

    def progress(stage: str) -> None:
        if not args.json:
            sys.stderr.write(f"timing {stage}...\n")

    trials = None
    choices = trial_choices(args, choice)
    absent = int8_absent(choices)
    try:
        prepare_int8(graphs, choices, threads=args.threads)
        if choices:
            reference = open_model_set(graphs, options=options_for(options, REFERENCE),
                                       names=["avatar_encoder"])  # fmt: skip
            trials = run_trials(
                graphs, choices, base=options, avatar=avatar_tensors(reference),
                hop=settings.hop, nfe=settings.nfe, cfg_scale=settings.cfg_scale,
                repeats=settings.repeats, progress=progress,
            )  # fmt: skip
            if args.backend == "auto":
                choice = BackendChoice.from_label(trials.chosen)
                options = options_for(options, choice)
        models = open_model_set(graphs, options=options)
    except Exception as exc:  # a damaged graph: one clear line
        logger.error("bench: cannot open the model: %s", exc)
        return 1

    result = run_bench(
        models,
        settings=settings,
        precision=options.precision,
        progress=progress,
        graphs=graphs,
        trials=trials,
    )
    if absent is not None:
        result = replace(result, notices=(*result.notices, absent))
    if not args.no_save:
        saved = write_result(result, paths.cache_dir())
        logger.debug("bench result kept in %s", saved)
    if args.json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(format_result(result) + "\n")
    return 0
