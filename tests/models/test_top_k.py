"""`models.renderer.top_k.top_k_last` against `torch.topk`, in PyTorch and as exported ONNX run
by ONNX Runtime: identical values and indices, ties included, and no TopK node for k = 1; long
rows (the two-step index) the same, at any batch of the exported graph."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.jit._trace import TracerWarning

from models.renderer.top_k import BLOCK, MIN_BLOCKED, top_k_last


def _with_ties() -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(2, 6, 9)
    # Rows whose maximum appears twice, and a constant row: the tie must resolve the same way.
    x[0, 1, 7] = x[0, 1].max()
    x[1, 2, 0] = x[1, 2].max()
    x[1, 3] = 0.25
    return x


@pytest.mark.parametrize("k", [1, 3])
def test_matches_torch_topk(k: int) -> None:
    torch.manual_seed(k)
    x = torch.randn(2, 6, 9)  # no ties
    values, index = top_k_last(x, k)
    want_values, want_index = torch.topk(x, k=k, dim=-1)
    assert index.dtype == torch.int64
    assert torch.equal(values, want_values)
    assert torch.equal(index, want_index)


def test_ties_take_the_first_maximum() -> None:
    # torch.topk leaves the order of equal values open (on CPU it may pick any); ONNX TopK and
    # ArgMax both take the lowest index, which is what the exported graphs run.
    x = _with_ties()
    values, index = top_k_last(x, 1)
    first = (x == x.max(dim=-1, keepdim=True).values).int().argmax(dim=-1, keepdim=True)
    assert torch.equal(index, first)
    assert torch.equal(values, torch.topk(x, k=1, dim=-1).values)


class _Ours(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return top_k_last(x.mean(dim=1), 1)


class _TopK(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, index = torch.topk(x.mean(dim=1), k=1, dim=-1)
        return values, index


def _export(module: nn.Module, path: Path, columns: int = 9) -> onnx.ModelProto:
    from runtime.model import contract

    # As in models.export: the tracer warns that the row length decides a branch, which is
    # intended (rows have the graph's fixed length; only the batch is dynamic).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TracerWarning)
        torch.onnx.export(
            module,
            (torch.zeros(2, 4, 6, columns),),
            str(path),
            dynamo=False,
            opset_version=contract.OPSET,
            input_names=["x"],
            output_names=["values", "index"],
            dynamic_axes={"x": {0: "batch"}},
        )
    return onnx.load(str(path))


def test_exported_graph_has_no_topk_and_the_same_outputs(tmp_path: Path) -> None:
    ours = _export(_Ours(), tmp_path / "ours.onnx")
    reference = _export(_TopK(), tmp_path / "topk.onnx")
    assert "TopK" not in {n.op_type for n in ours.graph.node}
    assert "TopK" in {n.op_type for n in reference.graph.node}

    x = _with_ties().unsqueeze(1).expand(2, 4, 6, 9).numpy().copy()
    x[:, 2] += 1.0  # a head that differs, so the head mean is not one head's copy
    got = ort.InferenceSession(str(tmp_path / "ours.onnx")).run(None, {"x": x})
    want = ort.InferenceSession(str(tmp_path / "topk.onnx")).run(None, {"x": x})
    assert got[1].dtype == np.int64
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def _long_rows(batch: int, *, seed: int) -> np.ndarray:
    """(batch, 4, 6, 4 * MIN_BLOCKED) head maps whose head mean has ties: across blocks, inside
    one block, at a block's first and last column, and a constant row."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 4, 6, 4 * MIN_BLOCKED)).astype(np.float32)
    x[:, :, 0, 3 * BLOCK + 5] = 2.0  # a tie across blocks: block 3 must win over block 20
    x[:, :, 0, 20 * BLOCK] = 2.0
    x[:, :, 1, 7 * BLOCK + 9] = 2.0  # a tie inside one block: column 2 of block 7 wins
    x[:, :, 1, 7 * BLOCK + 2] = 2.0
    x[:, :, 2, BLOCK - 1] = 2.0  # last column of the first block
    x[:, :, 3, -1] = 2.0  # last column of the row
    x[:, :, 4] = 0.5  # all equal: column 0
    return x


def _first_max(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = rows.max(axis=-1, keepdims=True)
    return values, np.argmax(rows == values, axis=-1)[..., None]


def test_long_rows_take_the_first_maximum() -> None:
    x = torch.from_numpy(_long_rows(2, seed=1)).mean(dim=1)
    values, index = top_k_last(x, 1)
    want_values, want_index = _first_max(x.numpy())
    assert index.dtype == torch.int64 and index.shape == (2, 6, 1)
    np.testing.assert_array_equal(values.numpy(), want_values)
    np.testing.assert_array_equal(index.numpy(), want_index)
    assert index[0, 0, 0] == 3 * BLOCK + 5 and index[0, 1, 0] == 7 * BLOCK + 2
    assert index[0, 2, 0] == BLOCK - 1 and index[0, 3, 0] == 4 * MIN_BLOCKED - 1
    assert index[0, 4, 0] == 0


def test_exported_long_rows_keep_a_dynamic_batch(tmp_path: Path) -> None:
    # Traced at batch 2, run at 1 and 3: no size of the trace may be left in the graph.
    ours = _export(_Ours(), tmp_path / "ours.onnx", columns=4 * MIN_BLOCKED)
    assert "TopK" not in {n.op_type for n in ours.graph.node}
    session = ort.InferenceSession(str(tmp_path / "ours.onnx"))
    for batch in (1, 3):
        x = _long_rows(batch, seed=batch)
        values, index = session.run(None, {"x": x})
        mean = torch.from_numpy(x).mean(dim=1).numpy()  # the graph's own head mean, in fp32
        want_values, want_index = _first_max(mean)
        assert index.dtype == np.int64 and index.shape == (batch, 6, 1)
        np.testing.assert_array_equal(values, want_values)
        np.testing.assert_array_equal(index, want_index)


def test_fp16_variant_keeps_the_two_step_pick_in_fp32(tmp_path: Path) -> None:
    from models.fp16 import to_fp16

    _export(_Ours(), tmp_path / "ours.onnx", columns=4 * MIN_BLOCKED)
    converted, info = to_fp16(onnx.load(str(tmp_path / "ours.onnx")))
    kinds = {n.name: n.op_type for n in converted.graph.node}
    kept = [kinds[name] for name in info["fp32_nodes"] if name in kinds]
    # The head mean, both maxima, both ArgMax and the block-selecting MatMul, and no fp16 round
    # trip between them (the converter casts each blocked node's output to fp16 and back).
    assert {"ReduceMean", "ReduceMax", "ArgMax", "MatMul"} <= set(kept), kept
    assert info["fp16_round_trips_bypassed"] >= 4
    onnx.save(converted, str(tmp_path / "ours.fp16.onnx"))

    # Two columns of one block 1e-4 apart at 0.5, where fp16's spacing is 4.9e-4: fp16 would
    # round them to a tie and take the first; fp32 takes the larger, later one.
    x = np.full((1, 4, 6, 4 * MIN_BLOCKED), 0.25, np.float32)
    x[..., 9 * BLOCK + 3] = 0.5
    x[..., 9 * BLOCK + 40] = 0.5001
    session = ort.InferenceSession(str(tmp_path / "ours.fp16.onnx"))
    values, index = session.run(None, {"x": x})
    assert (index == 9 * BLOCK + 40).all(), index
    # The value leaves the graph through the fp16 graph's own cast (the renderer does not read
    # it at k = 1: the softmax of one score is 1).
    np.testing.assert_allclose(values, 0.5001, rtol=1e-3)
