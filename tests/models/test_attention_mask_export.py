"""The v1 generator's attention mask as an additive bias (`models.generator.fmt.additive_mask`):
the same outputs as SDPA's boolean mask, in PyTorch and as exported ONNX run by ONNX Runtime,
and no IsNaN guard in the exported graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from models.generator.fmt import Attention, Positions, additive_mask, alignment_mask
from runtime.model import contract

FRAMES, DIM, HEADS, WINDOW = 12, 16, 2, 3


class _Ours(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.attn = Attention(DIM, HEADS)
        self.register_buffer("allowed", ~alignment_mask(FRAMES, WINDOW))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.attn(x, Positions(allowed=self.allowed, rope=None))
        return out


class _BoolMask(_Ours):
    """The previous form: SDPA given the boolean mask itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn
        b, n, c = x.shape
        qkv = a.qkv(x).reshape(b, n, 3, a.num_heads, a.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.allowed)
        out: torch.Tensor = a.proj(y.transpose(1, 2).reshape(b, n, c))
        return out


def _export(module: nn.Module, path: Path) -> onnx.ModelProto:
    torch.onnx.export(
        module,
        (torch.zeros(2, FRAMES, DIM),),
        str(path),
        dynamo=False,
        opset_version=contract.OPSET,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}},
    )
    return onnx.load(str(path))


def test_bias_is_zero_where_allowed_and_minus_inf_elsewhere() -> None:
    allowed = ~alignment_mask(FRAMES, WINDOW)
    bias = additive_mask(allowed, torch.float32)
    assert bias.dtype == torch.float32
    assert torch.equal(bias == 0, allowed)
    assert torch.isneginf(bias[~allowed]).all()
    assert allowed.any(dim=-1).all()  # every row allows something: no all -inf softmax row


def test_same_outputs_in_pytorch_and_onnx_without_isnan(tmp_path: Path) -> None:
    ours, reference = _Ours().eval(), _BoolMask().eval()
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, FRAMES, DIM)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-6)

    graph = _export(ours, tmp_path / "ours.onnx")
    old = _export(reference, tmp_path / "bool.onnx")
    assert "IsNaN" not in {n.op_type for n in graph.graph.node}
    assert "IsNaN" in {n.op_type for n in old.graph.node}
    feed = {"x": x.numpy()}
    got = ort.InferenceSession(str(tmp_path / "ours.onnx")).run(None, feed)[0]
    want = ort.InferenceSession(str(tmp_path / "bool.onnx")).run(None, feed)[0]
    np.testing.assert_array_equal(got, want)
