"""The portability report on the full-size recipe graphs of every model version: no TopK is
left (the renderer's top-1 exports as ReduceMax + ArgMax), and what CoreML leaves to the CPU
is only what `tests/bench/results/portability.md` records."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.model import portability as P
from runtime.model.onnx_nodes import read_graph
from runtime.model.versions import VERSIONS

pytestmark = pytest.mark.slow

FIXTURES = {"v1": "recipe_graphs", "v2": "recipe_graphs_v2"}

# Ops with a reason to be there: positional embeddings (Sin, Cos), shapes built from the
# dynamic batch (ConstantOfShape, Expand, Range).
EXPECTED_COREML_FALLBACKS = {"ConstantOfShape", "Cos", "Expand", "Range", "Sin"}


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_full_size_graphs_have_no_topk(request: pytest.FixtureRequest, version: str) -> None:
    graphs: Path = request.getfixturevalue(FIXTURES[version])
    paths = sorted(graphs.glob("*.onnx"))
    assert any(p.name == "renderer.onnx" for p in paths)
    for path in paths:
        result = P.assess(path.name, read_graph(path))
        assert "TopK" not in result.op_counts, path.name
        for verdict in result.backends:
            assert set(verdict.unsupported) <= EXPECTED_COREML_FALLBACKS, (path.name, verdict)
            if verdict.backend != P.COREML:
                assert verdict.partitions == 1, (path.name, verdict)
    renderer = P.assess("renderer.onnx", read_graph(graphs / "renderer.onnx"))
    assert renderer.op_counts.get("ArgMax", 0) >= 1
