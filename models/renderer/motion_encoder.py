"""Motion encoder: face image -> compact motion latent (identity-entangled, 32-d)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from models.renderer.config import RendererConfig
from models.renderer.conv_blocks import ResBlock
from models.renderer.styled_layers import EqualConv2d, EqualLinear

SLOPE = 0.2


class MotionEncoder(nn.Module):
    """LIA-style encoder: conv stem, downsampling residual blocks, conv, spatial mean, MLP."""

    def __init__(self, config: RendererConfig) -> None:
        super().__init__()
        stem = config.motion_encoder_stem
        channels = config.motion_encoder_channels
        top = channels[-1]
        self.conv1 = nn.Conv2d(3, stem, kernel_size=3, padding=1)
        self.res_blocks = nn.ModuleList(
            ResBlock(c_in, c_out) for c_in, c_out in itertools.pairwise((stem, *channels))
        )
        self.equalconv = EqualConv2d(top, top, 3, padding=1)
        self.linear_layers = nn.ModuleList(EqualLinear(top, top) for _ in range(4))
        self.final_linear = EqualLinear(top, config.motion_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # image: (B, 3, S, S) RGB in [0, 1], S = 256 (v1) or 512 (v2)
        x = F.leaky_relu(self.conv1(image), SLOPE)  # (B, 64, S, S)
        for block in self.res_blocks:
            x = block(x)  # (B, C_l, H/2, W/2) ... (B, 512, 8, 8)
        x = self.equalconv(x)  # (B, 512, 8, 8)
        v = x.flatten(2).mean(dim=2)  # (B, 512)
        for layer in self.linear_layers:
            v = F.leaky_relu(layer(v), SLOPE)
        out: torch.Tensor = self.final_linear(v)  # (B, 32)
        return out
