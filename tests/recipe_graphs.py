"""Full-size ONNX graphs with the golden "recipe" weights, for parity tests of the runtime.

They come from the exporter (`models.export`). Until it exists, or when it does not yet offer
`export_recipe_graphs(out_dir, names=...)`, the tests that need them skip with that reason.
`IMTALKER_RECIPE_GRAPHS=DIR` points at graphs exported elsewhere instead.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from runtime.contract import EXPORTER_VERSION, graph

CACHE = Path(__file__).resolve().parent / "output" / f"recipe_graphs_v{EXPORTER_VERSION}"


def _complete(folder: Path, names: Sequence[str]) -> bool:
    return all((folder / graph(n).filename).is_file() for n in names)


def recipe_graph_dir(names: Sequence[str]) -> Path:
    env = os.environ.get("IMTALKER_RECIPE_GRAPHS")
    if env:
        folder = Path(env)
        if not _complete(folder, names):
            pytest.fail(f"IMTALKER_RECIPE_GRAPHS={env} lacks some of {list(names)}")
        return folder
    if _complete(CACHE, names):
        return CACHE
    try:
        export = importlib.import_module("models.export")
    except ImportError as exc:
        pytest.skip(f"full-size graphs need the ONNX exporter (models.export): {exc}")
    make = getattr(export, "export_recipe_graphs", None)
    if make is None:
        pytest.skip("models.export offers no export_recipe_graphs(out_dir, names=...) yet")
    CACHE.mkdir(parents=True, exist_ok=True)
    make(CACHE, names=tuple(names))
    if not _complete(CACHE, names):
        pytest.fail(f"export_recipe_graphs did not write {list(names)} into {CACHE}")
    return CACHE
