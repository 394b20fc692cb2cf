"""The dependency-free ONNX reader against the `onnx` package, on the stub graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from runtime.model.onnx_nodes import OnnxReadError, graph_from_bytes, read_graph
from tests.support.stub_graphs import write_stub_graphs


def test_reads_what_onnx_reads(tmp_path: Path) -> None:
    folder = write_stub_graphs(tmp_path / "graphs")
    paths = sorted(folder.glob("*.onnx"))
    assert len(paths) == 8  # six graphs and two fp16 variants
    for path in paths:
        model = onnx.load(str(path))
        graph = read_graph(path)
        want = [(n.op_type, n.domain, tuple(n.input), tuple(n.output)) for n in model.graph.node]
        got = [(n.op_type, n.domain, n.inputs, n.outputs) for n in graph.nodes]
        assert got == want, path.name
        initializers = {t.name for t in model.graph.initializer}
        fed = tuple(i.name for i in model.graph.input if i.name not in initializers)
        assert graph.inputs == fed
        assert graph.inputs  # every stub takes at least one input


def test_initializers_listed_as_inputs_are_not_fed() -> None:
    weight = onnx.numpy_helper.from_array(np.ones((2,), "float32"), "w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [
            onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2]),
            onnx.helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [2]),
        ],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
        initializer=[weight],
    )
    parsed = graph_from_bytes(onnx.helper.make_model(graph).SerializeToString())
    assert parsed.inputs == ("x",)
    assert [n.qualified for n in parsed.nodes] == ["Add"]


@pytest.mark.parametrize("data", [b"", b"\x3a\x05ab", b"\x0a\x02hi"])
def test_rejects_what_is_not_a_model(data: bytes) -> None:
    with pytest.raises(OnnxReadError):
        graph_from_bytes(data)
