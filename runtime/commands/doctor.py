"""`imtalker-cam doctor`: environment report (main thread). Exits 0 even when things are missing."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from runtime.commands import doctor_report as doctor


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "doctor",
        help="report Python, packages, ONNX Runtime providers, GPU, audio, virtual camera, models",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = doctor.collect()
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(doctor.format_report(report) + "\n")
    return 0
