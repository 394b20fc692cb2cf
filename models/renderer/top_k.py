"""Top-k along the last axis, exported without TopK when k is 1 (exporter process, any thread).

The renderer keeps the single best column per row (`resampler_top_k = 1`). `torch.topk`
exports as ONNX TopK, which CoreML's ML Program format does not run, so each of the
renderer's eight TopK nodes split its graph into CPU and GPU pieces. For k = 1 the same
result is a maximum and the first index that reaches it (ReduceMax and ArgMax, which every
backend runs): ONNX TopK puts the lower index first among equal values and ArgMax picks the
first one, so the graphs' outputs are identical, ties included (`torch.topk` itself leaves the
order of ties open).
"""

from __future__ import annotations

import torch


def top_k_last(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.topk(x, k, dim=-1)` (largest, sorted): values and int64 indices, (..., k)."""
    if k == 1:
        values, index = x.max(dim=-1, keepdim=True)
        return values, index
    values, index = torch.topk(x, k=k, dim=-1)
    return values, index
