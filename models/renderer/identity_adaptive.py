"""Identity-adaptive module: re-expresses a motion latent relative to an identity latent."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.renderer.config import RendererConfig
from models.renderer.styled_layers import EqualLinear

SLOPE = 0.2


class IdentityAdaptive(nn.Module):
    """MLP over [motion, identity]: in_layer (no activation), `depth` leaky layers, output."""

    def __init__(self, config: RendererConfig) -> None:
        super().__init__()
        dim_mot, dim_id = config.motion_dim, config.identity_dim
        self.in_layer = EqualLinear(dim_mot + dim_id, dim_id)
        self.linear_layers = nn.ModuleList(
            EqualLinear(dim_id, dim_id) for _ in range(config.adapt_depth)
        )
        self.final_linear = EqualLinear(dim_id, dim_mot)

    def forward(self, motion: torch.Tensor, id_latent: torch.Tensor) -> torch.Tensor:
        # motion: (B, 32), id_latent: (B, 512) or (1, 512) broadcast over B
        # Broadcast by adding zeros rather than expand(B, ...): keeps the batch dynamic in
        # traced exports; x + 0 is exact.
        id_latent = id_latent + torch.zeros_like(motion[:, :1])  # (B, 512)
        x: torch.Tensor = self.in_layer(torch.cat((motion, id_latent), dim=-1))  # (B, 512)
        for layer in self.linear_layers:
            x = F.leaky_relu(layer(x), SLOPE)
        out: torch.Tensor = self.final_linear(x)  # (B, 32)
        return out
