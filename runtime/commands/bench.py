"""`imtalker-cam bench`: per-stage timings of the live pipeline on this machine and whether it
runs in real time (main thread). The result is also kept in the cache dir (`bench.json`) for
the live engine's Auto mode and the GUI (`runtime.engine.bench`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from runtime.commands.device_args import add_device_arguments, session_options

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
    lines += [f"  note: {n}" for n in result.notices]
    lines.append(result.verdict.capitalize())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from runtime.core import paths
    from runtime.engine.bench import BenchSettings, run_bench, write_result
    from runtime.model.compile.weights import resolve_graphs
    from runtime.model.execution.sessions import open_model_set

    try:
        settings = BenchSettings(
            hop=args.hop, lookahead=args.lookahead, nfe=args.nfe, repeats=args.repeats
        )
        options = session_options(args)
    except ValueError as exc:
        logger.error("bench: %s", exc)
        return 2
    try:
        graphs = args.graphs if args.graphs is not None else resolve_graphs(args.weights)
        models = open_model_set(Path(graphs), options=options)
    except Exception as exc:  # no model yet, a damaged graph: one clear line
        logger.error("bench: cannot open the model: %s", exc)
        return 1

    def progress(stage: str) -> None:
        if not args.json:
            sys.stderr.write(f"timing {stage}...\n")

    result = run_bench(
        models,
        settings=settings,
        precision=options.precision,
        progress=progress,
        graphs=Path(graphs),
    )
    if not args.no_save:
        saved = write_result(result, paths.cache_dir())
        logger.debug("bench result kept in %s", saved)
    if args.json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(format_result(result) + "\n")
    return 0
