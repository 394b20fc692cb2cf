"""Identity encoder: source image -> appearance feature pyramid + identity latent."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from models.renderer.config import RendererConfig
from models.renderer.conv_blocks import DownConvResBlock
from models.renderer.styled_layers import EqualConv2d, EqualLinear

MLP_SLOPE = 0.2


class IdentityEncoder(nn.Module):
    """A conv stem plus one downsampling residual block per coarser pyramid level.

    The identity latent is an MLP over the spatial mean of the coarsest level. The
    checkpoint also holds an `equalconv` the reference never calls; it is kept (unused) so the
    checkpoint loads strictly.
    """

    def __init__(self, config: RendererConfig) -> None:
        super().__init__()
        dims = config.feature_dims
        top = dims[-1]
        self.initial_conv = nn.Sequential(
            nn.Conv2d(3, dims[0], kernel_size=7, padding=3),
            nn.BatchNorm2d(dims[0]),
            nn.ReLU(),
        )
        # v2 reads 512 px: its extra stem blocks bring the input to the finest level's side.
        # Registered before `down_blocks` so the state dict keeps the checkpoint's key order.
        self.extra_down_blocks = [
            f"down_block_{i}" for i in range(config.identity_extra_down_blocks)
        ]
        for name in self.extra_down_blocks:
            self.add_module(name, DownConvResBlock(dims[0], dims[0]))
        self.down_blocks = nn.ModuleList(
            DownConvResBlock(c_in, c_out) for c_in, c_out in itertools.pairwise(dims)
        )
        self.equalconv = EqualConv2d(top, top, 3, padding=1)
        self.linear_layers = nn.ModuleList(EqualLinear(top, top) for _ in range(4))
        self.final_linear = EqualLinear(top, config.identity_dim)

    def forward(self, image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        # image: (B, 3, S, S) RGB in [0, 1], S = 256 (v1) or 512 (v2)
        x: torch.Tensor = self.initial_conv(image)  # (B, 32, S, S)
        for name in self.extra_down_blocks:
            x = self.get_submodule(name)(x)  # (B, 32, S/2, S/2)
        pyramid = [x]  # finest level: (B, 32, 256, 256)
        for block in self.down_blocks:
            x = block(x)  # (B, C_l, H/2, W/2)
            pyramid.append(x)
        v = x.flatten(2).mean(dim=2)  # (B, 512)
        for layer in self.linear_layers:
            v = F.leaky_relu(layer(v), MLP_SLOPE)
        id_latent: torch.Tensor = self.final_linear(v)  # (B, 512)
        return pyramid[
            ::-1
        ], id_latent  # coarsest level first: (B, 512, 8, 8) ... (B, 32, 256, 256)
