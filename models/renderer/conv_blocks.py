"""Batch-normalised residual conv blocks of the identity encoder and the synthesis network.

Attribute names (`conv1`, `norm.norm`, `feat_res_block1`, ...) are the checkpoint's keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.renderer.styled_layers import ConvLayer

LEAKY_SLOPE = 0.01  # nn.LeakyReLU's default, which the reference blocks use


class NormLayer(nn.Module):
    """BatchNorm wrapper; exists only because the checkpoint nests it as `norm.norm`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        out: torch.Tensor = self.norm(x)
        return out


class ConvBlock(nn.Module):
    """3x3 conv (no bias) -> BatchNorm -> optional LeakyReLU."""

    def __init__(self, channels: int, *, activate: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm = NormLayer(channels)
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        out: torch.Tensor = self.norm(self.conv(x))
        return F.leaky_relu(out, LEAKY_SLOPE) if self.activate else out


class FeatResBlock(nn.Module):
    """Two ConvBlocks with an identity skip, then LeakyReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBlock(channels, activate=True)
        self.conv2 = ConvBlock(channels, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        out: torch.Tensor = self.conv2(self.conv1(x))
        return F.leaky_relu(out + x, LEAKY_SLOPE)


class _ConvResStack(nn.Module):
    """conv1 -> BN -> LeakyReLU -> [resample] -> conv2 -> two FeatResBlocks.

    Shared body of the reference's ConvResBlock / DownConvResBlock / UpConvResBlock, which
    differ only in where the 2x resampling happens.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = NormLayer(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.feat_res_block1 = FeatResBlock(out_channels)
        self.feat_res_block2 = FeatResBlock(out_channels)

    def head(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H, W)
        out: torch.Tensor = self.norm(self.conv1(x))
        return F.leaky_relu(out, LEAKY_SLOPE)

    def tail(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_out, H, W) -> (B, C_out, H, W)
        out: torch.Tensor = self.feat_res_block2(self.feat_res_block1(self.conv2(x)))
        return out


class ConvResBlock(_ConvResStack):
    """Same-resolution block (synthesis network, after concatenating the aligned features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H, W)
        return self.tail(self.head(x))


class DownConvResBlock(_ConvResStack):
    """Halves the resolution with a 2x2 average pool after the first conv (identity encoder)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H/2, W/2)
        return self.tail(F.avg_pool2d(self.head(x), kernel_size=2, stride=2))


class UpConvResBlock(_ConvResStack):
    """Doubles the resolution (nearest neighbour) before the first conv (synthesis network)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, 2H, 2W)
        return self.tail(self.head(F.interpolate(x, scale_factor=2.0, mode="nearest")))


class ResBlock(nn.Module):
    """LIA residual block: two convs (the second downsamples) plus a downsampling skip conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True)
        self.skip = ConvLayer(in_channels, out_channels, 3, downsample=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H/2, W/2)
        out: torch.Tensor = self.conv2(self.conv1(x)) + self.skip(x)
        return out
