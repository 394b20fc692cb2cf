"""A stand-in for `python -m models.export` (the conversion child process) in GUI tests.

    python -m tests.support.fake_exporter --weights STORE --out DIR [--delay SECONDS]

Writes the stub graphs (tests/support/stub_graphs.py) and a config JSON per graph into DIR, printing
the exporter's JSON progress lines, one graph at a time with a pause so progress is visible,
and, as the real exporter does, the digests of the files the loader would read
(`sources.json`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from runtime.model import loader_files
from runtime.model.contract import GRAPHS
from tests.support.stub_graphs import write_stub_graphs


def report_sources(weights: Path, out: Path) -> None:
    """Write `sources.json` for the files the real loader would read from `weights`."""
    sources = {
        rel: hashlib.sha256(loader_files.local_path(weights, rel).read_bytes()).hexdigest()
        for rel in loader_files.chosen(weights).values()
    }
    (out / loader_files.SOURCES_FILE).write_text(json.dumps(sources))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args()
    write_stub_graphs(args.out)
    report_sources(args.weights, args.out)
    for done, spec in enumerate(GRAPHS, start=1):
        (args.out / spec.config_filename).write_text(json.dumps({"graph": spec.name}))
        time.sleep(args.delay)  # real: a child process paced for the progress display
        line = {"graph": spec.name, "done": done, "total": len(GRAPHS)}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
