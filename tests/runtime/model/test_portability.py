"""The portability verdicts: op lists, constant folding and partition counts, on handmade
ONNX graphs (a TopK between two supported runs among them) and on the stub graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime.model import portability as P
from runtime.model.onnx_nodes import Graph, graph_from_bytes, read_graph
from tests.support.stub_graphs import write_stub_graphs


def _graph(nodes: list[onnx.NodeProto], *, initializers: tuple[str, ...] = ()) -> Graph:
    inits = [numpy_helper.from_array(np.array([1], dtype=np.int64), name) for name in initializers]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            initializer=inits,
        )
    )
    return graph_from_bytes(model.SerializeToString())


def _verdict(result: P.GraphPortability, backend: str) -> P.BackendVerdict:
    return next(v for v in result.backends if v.backend == backend)


def test_topk_between_two_runs_splits_coreml_in_two() -> None:
    graph = _graph(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("TopK", ["a", "k"], ["top", "index"], axis=-1),
            helper.make_node("Sigmoid", ["top"], ["y"]),
        ],
        initializers=("k",),
    )
    result = P.assess("tiny.onnx", graph)
    coreml = _verdict(result, P.COREML)
    assert coreml.unsupported == {"TopK": 1}
    assert coreml.partitions == 2
    for backend in (P.DIRECTML, P.OPENVINO_GPU):
        assert _verdict(result, backend).unsupported == {}
        assert _verdict(result, backend).partitions == 1
    assert result.op_counts == {"Relu": 1, "Sigmoid": 1, "TopK": 1}


def test_parallel_fallbacks_make_one_boundary() -> None:
    # Two independent CPU nodes between the same supported runs: one split, not two, as ONNX
    # Runtime's partitioner takes every ready supported node before closing a piece.
    graph = _graph(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Relu", ["x"], ["b"]),
            helper.make_node("Sin", ["a"], ["c"]),
            helper.make_node("Cos", ["b"], ["d"]),
            helper.make_node("Add", ["c", "d"], ["y"]),
        ]
    )
    coreml = _verdict(P.assess("g", graph), P.COREML)
    assert coreml.unsupported == {"Cos": 1, "Sin": 1}
    assert coreml.partitions == 2


def test_a_chain_of_fallbacks_counts_every_piece() -> None:
    graph = _graph(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Sin", ["a"], ["b"]),
            helper.make_node("Relu", ["b"], ["c"]),
            helper.make_node("Cos", ["c"], ["d"]),
            helper.make_node("Relu", ["d"], ["y"]),
        ]
    )
    assert _verdict(P.assess("g", graph), P.COREML).partitions == 3


def test_constant_subgraphs_are_folded_and_identity_is_free() -> None:
    # ConstantOfShape of an initializer is a weight once ONNX Runtime has folded it; the same op
    # on the shape of the input is not.
    graph = _graph(
        [
            helper.make_node("ConstantOfShape", ["shape"], ["zeros"]),
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("ConstantOfShape", ["s"], ["live"]),
            helper.make_node("Identity", ["live"], ["same"]),
            helper.make_node("Add", ["same", "zeros"], ["y"]),
        ],
        initializers=("shape",),
    )
    result = P.assess("g", graph)
    assert result.nodes == 5
    assert result.folded == 1
    coreml = _verdict(result, P.COREML)
    assert coreml.unsupported == {"ConstantOfShape": 1}
    assert coreml.partitions == 2


def test_other_domains_fall_back_unless_listed() -> None:
    graph = _graph(
        [
            helper.make_node("FusedMatMul", ["x", "x"], ["a"], domain="com.microsoft"),
            helper.make_node("Made", ["a"], ["y"], domain="com.example"),
        ]
    )
    result = P.assess("g", graph)
    assert _verdict(result, P.COREML).unsupported == {
        "com.example:Made": 1,
        "com.microsoft:FusedMatMul": 1,
    }
    assert _verdict(result, P.DIRECTML).unsupported == {"com.example:Made": 1}
    assert _verdict(result, P.OPENVINO_GPU).unsupported == {"com.example:Made": 1}


def test_control_flow_stays_on_the_host_everywhere() -> None:
    node = helper.make_node("Unique", ["x"], ["y"])
    result = P.assess("g", _graph([node]))
    for backend in P.BACKENDS:
        assert _verdict(result, backend).unsupported == {"Unique": 1}
        assert _verdict(result, backend).partitions == 0


def test_stub_graphs_run_whole_on_every_backend(tmp_path: Path) -> None:
    folder = write_stub_graphs(tmp_path / "graphs")
    for path in sorted(folder.glob("*.onnx")):
        result = P.assess(path.name, read_graph(path))
        assert result.nodes > result.folded, path.name
        for verdict in result.backends:
            if verdict.backend != P.COREML:
                assert verdict.unsupported == {}, (path.name, verdict)
            assert verdict.partitions >= 1, (path.name, verdict)
