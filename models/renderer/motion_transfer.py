"""Implicit motion transfer: warp the appearance pyramid to the driving motion.

Coarse levels (< 128 px): cross-attention with the driving motion map as query, the source
motion map as key and the source appearance features as value. Fine levels: no attention of
their own; the guided resampler reuses the finest coarse attention map (averaged over heads)
and copies, for every coarse cell, the block-average of its top-k matched source blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.renderer.attention import StandardAttention
from models.renderer.top_k import top_k_last


def to_tokens(x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, HW, C)
    return x.flatten(2).transpose(1, 2)


class CoarseMotionTransfer(nn.Module):
    """Cross-attention level. `block_efc` is the checkpoint's name for the attention."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.block_efc = StandardAttention(dim, num_heads)

    def source_key(self, source_motion_map: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> projected keys (B, HW, C); depends only on the avatar
        return self.block_efc.project_key(to_tokens(source_motion_map))

    def source_value(self, appearance: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> projected values (B, HW, C); depends only on the avatar
        return self.block_efc.project_value(to_tokens(appearance))

    def attend(
        self, driving_motion_map: torch.Tensor, key_proj: torch.Tensor, value_proj: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # driving_motion_map: (B, C, H, W); key_proj, value_proj: (B or 1, HW, C)
        out, attn = self.block_efc.attend(to_tokens(driving_motion_map), key_proj, value_proj)
        side = driving_motion_map.shape[2:]
        aligned = torch.unflatten(out.transpose(1, 2), 2, side)  # (B, C, H, W)
        return aligned, attn  # attn: (B, heads, HW, HW)

    def attend_top_k(
        self,
        driving_motion_map: torch.Tensor,
        key_proj: torch.Tensor,
        value_proj: torch.Tensor,
        top_k: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`attend` keeping only what the guided resampler reads of the map: per query cell
        the top-k head-averaged scores and their source cells, (B, HW, k) each."""
        out, scores, index = self.block_efc.attend_top_k(
            to_tokens(driving_motion_map), key_proj, value_proj, top_k
        )
        side = driving_motion_map.shape[2:]
        return torch.unflatten(out.transpose(1, 2), 2, side), scores, index

    def forward(
        self,
        driving_motion_map: torch.Tensor,
        source_motion_map: torch.Tensor,
        appearance: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attend(
            driving_motion_map,
            self.source_key(source_motion_map),
            self.source_value(appearance),
        )


class GuidedResampler(nn.Module):
    """Top-k resampling of a fine level, guided by the coarse attention map (no weights).

    The reference gathers the ratio x ratio source block behind each top-k coarse match and
    averages it with weights softmax(top-k scores) / ratio^2, giving every fine pixel of a
    coarse cell the same value. That equals: average-pool the source level by `ratio`
    (`pool`, per avatar), pick the top-k pooled cells per coarse cell, and upsample the
    result by nearest neighbour (`sample`).
    """

    def __init__(self, ratio: int, top_k: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.top_k = top_k

    def pool(self, appearance: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, C, H/r, W/r) mean of each r x r block
        return F.avg_pool2d(appearance, kernel_size=self.ratio, stride=self.ratio)

    def sample(self, pooled: torch.Tensor, coarse_attn: torch.Tensor) -> torch.Tensor:
        # pooled: (Bs, C, h, w) with Bs = 1 (one avatar, broadcast) or B;
        # coarse_attn: (B, heads, hw, hw) -> (B, C, h*r, w*r)
        scores, index = top_k_last(coarse_attn.mean(dim=1), self.top_k)  # (B, hw, k)
        return self.sample_top_k(pooled, scores, index)

    def sample_top_k(
        self, pooled: torch.Tensor, scores: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        # pooled: (Bs, C, h, w); scores, index: (B, hw, k) top-k of the head-averaged coarse
        # map per coarse cell -> (B, C, h*r, w*r)
        weights = scores.softmax(dim=-1)  # (B, hw, k)
        table = pooled.flatten(2).transpose(1, 2)  # (Bs, hw, C)
        cells_per_image = table.shape[1]
        # Row offset of each source image in the flattened table, built from tensor ops (no
        # Python batch size, so an exported graph keeps a dynamic batch): 0 when Bs = 1.
        ones = torch.ones_like(table[:, :1, :1], dtype=torch.long)  # (Bs, 1, 1)
        offsets = (ones.cumsum(dim=0) - 1) * cells_per_image
        picked = table.flatten(0, 1)[index + offsets]  # (B, hw, k, C)
        cells = (picked * weights.unsqueeze(-1)).sum(dim=2)  # (B, hw, C)
        grid = torch.unflatten(cells.transpose(1, 2), 2, pooled.shape[2:])  # (B, C, h, w)
        # Every fine pixel of a coarse cell takes the cell's value: nearest upsampling.
        return F.interpolate(grid, scale_factor=float(self.ratio), mode="nearest")

    def forward(self, appearance: torch.Tensor, coarse_attn: torch.Tensor) -> torch.Tensor:
        return self.sample(self.pool(appearance), coarse_attn)


class FineMotionTransfer(nn.Module):
    """Resampler level. `block` is the reference's attribute name (it holds no weights)."""

    def __init__(self, ratio: int, top_k: int) -> None:
        super().__init__()
        self.block = GuidedResampler(ratio, top_k)
