"""StyleGAN2-style building blocks (as used by LIA) for the motion encoder and decoder.

Equalised-learning-rate layers keep their raw `weight` and apply the He scale at run time,
so the published weights load unchanged. The blur filter is a fixed 4x4 binomial kernel
stored as a buffer named `kernel` (part of the checkpoint format).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)
LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8


def make_blur_kernel(taps: tuple[float, ...] = BLUR_TAPS, gain: float = 1.0) -> torch.Tensor:
    """Separable low-pass kernel: outer product of `taps`, normalised to sum 1, times `gain`."""
    k = torch.tensor(taps, dtype=torch.float32)
    k2d = k[None, :] * k[:, None]  # (K, K)
    return k2d / k2d.sum() * gain


class Blur(nn.Module):
    """Zero-pad then filter every channel with the blur kernel (upfirdn2d with up=down=1)."""

    kernel: torch.Tensor

    def __init__(self, channels: int, pad: tuple[int, int], *, gain: float = 1.0) -> None:
        super().__init__()
        self.channels = channels
        self.pad = pad
        self.register_buffer("kernel", make_blur_kernel(gain=gain))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        k = self.kernel.shape[0]
        # A depthwise convolution is the same arithmetic as upfirdn2d's (B*C, 1, H, W) trick
        # without batch-dependent reshapes; convolution is correlation, hence the flip.
        weight = torch.flip(self.kernel, [0, 1]).view(1, 1, k, k).expand(self.channels, 1, k, k)
        p0, p1 = self.pad
        x = F.pad(x, [p0, p1, p0, p1])
        return F.conv2d(x, weight, groups=self.channels)  # (B, C, H + p0 + p1 - K + 1, ...)


class FusedLeakyReLU(nn.Module):
    """Bias, leaky ReLU (slope 0.2), then the sqrt(2) gain that keeps activations unit-scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        return F.leaky_relu(x + self.bias, LEAKY_SLOPE) * LEAKY_GAIN


class EqualConv2d(nn.Module):
    """Conv2d whose weight is scaled by 1/sqrt(fan_in) at run time."""

    bias: nn.Parameter | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W)
        return F.conv2d(
            x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding
        )


class EqualLinear(nn.Module):
    """Linear layer whose weight is scaled by 1/sqrt(in_features) at run time."""

    def __init__(self, in_features: int, out_features: int, *, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.full((out_features,), bias_init))
        self.scale = 1.0 / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in_features)
        return F.linear(x, self.weight * self.scale, self.bias)


class ConvLayer(nn.Sequential):
    """LIA's ConvLayer: [blur] -> EqualConv2d -> FusedLeakyReLU.

    With `downsample`, a blur precedes a stride-2 convolution (anti-aliased downsampling).
    Sequential indices are part of the checkpoint keys (`0.kernel`, `1.weight`, `2.bias`).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, downsample: bool = False
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(BLUR_TAPS) - 2) + (kernel_size - 1)
            layers.append(Blur(in_channels, ((p + 1) // 2, p // 2)))
            layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=2, bias=False))
        else:
            layers.append(
                EqualConv2d(
                    in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False
                )
            )
        layers.append(FusedLeakyReLU(out_channels))
        super().__init__(*layers)


class ModulatedConv2d(nn.Module):
    """Style-modulated, demodulated 3x3 convolution (StyleGAN2), optionally upsampling 2x.

    `forward` uses the batch-independent form: scale the input channels by the style,
    convolve with the shared weight, then scale the output channels by the demodulation
    coefficients. It equals the reference's per-sample-weight grouped convolution
    (`forward_grouped`, kept to prove the equivalence) at any batch size, and exports to
    ONNX as ordinary Conv / ConvTranspose nodes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        *,
        upsample: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.upsample = upsample
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(
            torch.randn(1, out_channels, in_channels, kernel_size, kernel_size)
        )
        if upsample:
            # Pads chosen so transposed conv (2H + 1) followed by the blur gives exactly 2H.
            factor = 2
            p = (len(BLUR_TAPS) - factor) - (kernel_size - 1)
            pad = ((p + 1) // 2 + factor - 1, p // 2 + 1)
            self.blur = Blur(out_channels, pad, gain=float(factor**2))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)

    def styles(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample input scales (B, C_in) and output demodulation coefficients (B, C_out)."""
        s = self.modulation(style)  # (B, C_in)
        w = self.weight[0] * self.scale  # (C_out, C_in, K, K)
        w_sq = w.pow(2).sum(dim=(2, 3))  # (C_out, C_in)
        demod = torch.rsqrt(s.pow(2) @ w_sq.t() + DEMOD_EPS)  # (B, C_out)
        return s, demod

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, H, W), style: (B, style_dim)
        s, demod = self.styles(style)
        w = self.weight[0] * self.scale  # (C_out, C_in, K, K)
        x = x * s[:, :, None, None]
        if self.upsample:
            out = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)  # (B, C_out, 2H+1, 2W+1)
            up: torch.Tensor = self.blur(out * demod[:, :, None, None])  # (B, C_out, 2H, 2W)
            return up
        out = F.conv2d(x, w, padding=self.padding)  # (B, C_out, H, W)
        return out * demod[:, :, None, None]

    def forward_grouped(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """The reference formulation: build a weight per sample, run one grouped convolution."""
        batch, c_in, height, width = x.shape
        c_out, k = self.out_channels, self.kernel_size
        s = self.modulation(style).view(batch, 1, c_in, 1, 1)
        weight = self.scale * self.weight * s  # (B, C_out, C_in, K, K)
        demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + DEMOD_EPS)  # (B, C_out)
        weight = weight * demod.view(batch, c_out, 1, 1, 1)
        x = x.reshape(1, batch * c_in, height, width)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * c_in, c_out, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=batch)
            blurred: torch.Tensor = self.blur(out.view(batch, c_out, out.shape[2], out.shape[3]))
            return blurred
        weight = weight.view(batch * c_out, c_in, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=batch)
        return out.view(batch, c_out, height, width)


class NoiseInjection(nn.Module):
    """Holds the checkpoint's noise strength; the renderer never injects noise (identity)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class StyledConv(nn.Module):
    """ModulatedConv2d -> (no noise) -> FusedLeakyReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        *,
        upsample: bool = False,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, style_dim, upsample=upsample
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, H, W), style: (B, style_dim) -> (B, C_out, H', W')
        out: torch.Tensor = self.activate(self.conv(x, style))
        return out
