"""A stand-in for `python -m models.export` (the conversion child process) in GUI tests.

    python -m tests.support.fake_exporter --weights STORE --out DIR [--delay SECONDS]

Writes the stub graphs (tests/stub_graphs.py) and a config JSON per graph into DIR, printing
the exporter's JSON progress lines, one graph at a time with a pause so progress is visible.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from runtime.model.contract import GRAPHS
from tests.stub_graphs import write_stub_graphs


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args()
    write_stub_graphs(args.out)
    for done, spec in enumerate(GRAPHS, start=1):
        (args.out / spec.config_filename).write_text(json.dumps({"graph": spec.name}))
        time.sleep(args.delay)
        line = {"graph": spec.name, "done": done, "total": len(GRAPHS)}
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
