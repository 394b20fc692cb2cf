"""Synthesis network: aligned feature pyramid -> 512x512 RGB frame."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from models.renderer.attention import TransformerBlock
from models.renderer.config import RendererConfig
from models.renderer.conv_blocks import ConvResBlock, UpConvResBlock
from models.renderer.window_attention import SwinBlock

OUT_SLOPE = 0.2


class SelfAttention(nn.Module):
    """Per-level self-attention: one full-attention block below the threshold, otherwise a
    plain and a shifted Swin block. `blocks` is the checkpoint's name."""

    def __init__(self, config: RendererConfig, dim: int, side: int) -> None:
        super().__init__()
        heads, ratio, window = config.num_heads, config.mlp_ratio, config.window_size
        blocks: list[nn.Module]
        if side >= config.swin_res_threshold:
            blocks = [
                SwinBlock(dim, side, heads, window, 0, ratio),
                SwinBlock(dim, side, heads, window, window // 2, ratio),
            ]
        else:
            blocks = [TransformerBlock(dim, side, heads, ratio)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        for block in self.blocks:
            x = block(x)
        return x


class SynthesisNetwork(nn.Module):
    """Walks the pyramid coarse to fine: upsample, concatenate the aligned features of the
    next level, fuse, self-attend; then a 2x pixel-shuffle RGB head with a sigmoid."""

    def __init__(self, config: RendererConfig) -> None:
        super().__init__()
        dims = config.feature_dims_coarse_first
        sides = config.spatial_dims_coarse_first
        pairs = list(itertools.pairwise(dims))
        self.upconv_blocks = nn.ModuleList(UpConvResBlock(a, b) for a, b in pairs)
        self.resblocks = nn.ModuleList(ConvResBlock(2 * b, b) for _, b in pairs)
        self.transformer_blocks = nn.ModuleList(
            SelfAttention(config, dim, side) for dim, side in zip(dims[1:], sides[1:], strict=False)
        )
        self.final_conv = nn.Sequential(
            nn.LeakyReLU(OUT_SLOPE),
            nn.Conv2d(dims[-1], 3 * 4, kernel_size=3, padding=1),
            nn.PixelShuffle(upscale_factor=2),
            nn.Sigmoid(),
        )

    def forward(self, aligned: list[torch.Tensor]) -> torch.Tensor:
        # aligned: coarsest first, (B, 512, 8, 8) ... (B, 32, 256, 256)
        x = aligned[0]
        for i, (up, fuse, attend) in enumerate(
            zip(self.upconv_blocks, self.resblocks, self.transformer_blocks, strict=True)
        ):
            x = up(x)  # (B, C_{i+1}, 2H, 2W)
            x = fuse(torch.cat([x, aligned[i + 1]], dim=1))  # (B, C_{i+1}, 2H, 2W)
            x = attend(x)
        frame: torch.Tensor = self.final_conv(x)  # (B, 3, 512, 512) in [0, 1]
        return frame
