"""Top-k along the last axis, exported without TopK when k is 1 (exporter process, any thread).

The renderer keeps the single best column per row (`resampler_top_k = 1`). `torch.topk`
exports as ONNX TopK, which CoreML's ML Program format does not run, so each of the
renderer's eight TopK nodes split its graph into CPU and GPU pieces. For k = 1 the same
result is a maximum and the first index that reaches it (ReduceMax and ArgMax, which every
backend runs): ONNX TopK puts the lower index first among equal values and ArgMax picks the
first one, so the graphs' outputs are identical, ties included (`torch.topk` itself leaves the
order of ties open).

Long rows (the 64 px map's 4096 columns) take the index in two steps: the maximum of each
block of `BLOCK` columns, the first block holding the row's maximum, then the first column of
that block reaching it. OpenVINO's CPU plugin runs ArgMax as a TopK kernel that took 4.6 ms per
512 x 4096 chunk here (38 ms a frame, 15% of the renderer's fp32 motion stage) where a
ReduceMax over the same data took 0.3 ms. The first block holding the maximum holds its first
occurrence, so the index is the same, ties included (`tests/models/test_top_k.py`).
"""

from __future__ import annotations

import torch

BLOCK = 64
"""Columns per block of the two-step index (sqrt of the 64 px map's 4096 columns)."""

MIN_BLOCKED = 1024
"""Rows shorter than this take one ArgMax: the two steps only pay off on long rows."""


def top_k_last(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.topk(x, k, dim=-1)` (largest, sorted): values and int64 indices, (..., k)."""
    if k == 1:
        columns = x.shape[-1]
        if columns >= MIN_BLOCKED and columns % BLOCK == 0:
            return _blocked_max(x)
        values, index = x.max(dim=-1, keepdim=True)
        return values, index
    values, index = torch.topk(x, k=k, dim=-1)
    return values, index


def _blocked_max(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # x: (..., N) finite, N a multiple of BLOCK -> values, int64 index of the first maximum
    # (..., 1) each
    blocks = torch.unflatten(x, -1, (-1, BLOCK))  # (..., N/BLOCK, BLOCK)
    values, which = blocks.amax(dim=-1).max(dim=-1, keepdim=True)  # (..., 1) each
    # The winning block by a one-hot product rather than a gather over flattened rows: the
    # legacy exporter folds the flattened sizes into constants of the traced batch, and
    # exported graphs need a dynamic one. Exact for finite x: one term is x, the others 0.
    columns = torch.arange(blocks.shape[-2], device=x.device)  # (N/BLOCK,)
    one_hot = (columns == which).to(x.dtype).unsqueeze(-2)  # (..., 1, N/BLOCK)
    picked = (one_hot @ blocks).squeeze(-2)  # (..., BLOCK)
    index = which * BLOCK + picked.argmax(dim=-1, keepdim=True)  # (..., 1)
    return values, index
