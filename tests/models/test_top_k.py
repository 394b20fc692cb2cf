"""`models.renderer.top_k.top_k_last` against `torch.topk`, in PyTorch and as exported ONNX run
by ONNX Runtime: identical values and indices, ties included, and no TopK node for k = 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from models.renderer.top_k import top_k_last


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


def _export(module: nn.Module, path: Path) -> onnx.ModelProto:
    from runtime.model import contract

    torch.onnx.export(
        module,
        (torch.zeros(2, 4, 6, 9),),
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
