"""Style-modulated motion decoder: motion latent -> multi-scale motion feature maps."""

from __future__ import annotations

import torch
from torch import nn

from models.renderer.config import RendererConfig
from models.renderer.styled_layers import StyledConv

CONST_SIDE = 4


class MotionDecoder(nn.Module):
    """A learned 4x4 constant refined by StyledConvs (style = motion latent).

    One StyledConv at 4x4, then per coarse pyramid level: a 2x upsampling StyledConv and two
    more; each level's last output is that level's motion map. With the published config:
    (B, 512, 8, 8), (B, 512, 16, 16), (B, 256, 32, 32), (B, 128, 64, 64).
    """

    def __init__(self, config: RendererConfig) -> None:
        super().__init__()
        style = config.motion_dim
        dims = config.feature_dims_coarse_first[: config.num_coarse_levels]
        self.const = nn.Parameter(
            torch.randn(1, config.motion_const_channels, CONST_SIDE, CONST_SIDE)
        )
        layers = [StyledConv(config.motion_const_channels, dims[0], 3, style)]
        c_in = dims[0]
        for c_out in dims:
            layers.append(StyledConv(c_in, c_out, 3, style, upsample=True))
            layers.append(StyledConv(c_out, c_out, 3, style))
            layers.append(StyledConv(c_out, c_out, 3, style))
            c_in = c_out
        self.style_conv_layers = nn.ModuleList(layers)
        self.num_levels = len(dims)

    def forward(self, motion: torch.Tensor) -> list[torch.Tensor]:
        # motion: (B, 32) identity-adapted latent
        # Broadcast the constant over the batch without reading B as a Python int.
        x = self.const + torch.zeros_like(motion[:, :1, None, None])  # (B, 32, 4, 4)
        x = self.style_conv_layers[0](x, motion)  # (B, 512, 4, 4)
        maps: list[torch.Tensor] = []
        for level in range(self.num_levels):
            for j in range(3):
                x = self.style_conv_layers[1 + 3 * level + j](x, motion)  # (B, C_l, S_l, S_l)
            maps.append(x)
        return maps  # coarsest first
