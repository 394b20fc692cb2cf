"""`imtalker-cam doctor`: environment report (main thread). Exits 0 even when things are missing."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from runtime.commands import doctor_graphs
from runtime.commands import doctor_report as doctor


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "doctor",
        help="report Python, packages, ONNX Runtime providers, GPU, audio, virtual camera, models",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--graphs",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="instead: the ops CoreML, DirectML and OpenVINO GPU cannot run, per graph of DIR "
        "(default: the installed compiled graphs), and the partitions that result",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.graphs is not None:
        return run_graphs(args.graphs, as_json=args.json)
    report = doctor.collect()
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(doctor.format_report(report) + "\n")
    return 0


def run_graphs(folder: str, *, as_json: bool) -> int:
    """The portability report; 1 when there is no folder to report on."""
    path = Path(folder) if folder else doctor_graphs.installed_graphs_dir()
    if path is None or not path.is_dir():
        where = folder or "the installed model (not converted yet: `imtalker-cam models fetch`)"
        sys.stderr.write(f"no graph folder: {where}\n")
        return 1
    doc = doctor_graphs.collect(path)
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(doctor_graphs.format_report(doc) + "\n")
    return 0
