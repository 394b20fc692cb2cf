"""IMTalker's wav2vec2-base audio encoder, reimplemented without `transformers`.

The IMTalker variant differs from stock wav2vec2 in one place: the conv feature extractor's
output (about 50 steps per second) is linearly interpolated (align_corners=True) to the
video frame count *before* the feature projection, so the encoder emits exactly one
768-dim feature per video frame (the last hidden state).

Weights load from the `Wav2Vec2ForCTC` checkpoint `wav2vec2-base-960h/pytorch_model.bin`
(`wav2vec2.` prefix; `lm_head.*` and `masked_spec_embed` are not used) via
`audio_encoder_state_dict`. The positional convolution keeps the checkpoint's old
weight-norm parameters (`weight_g`, `weight_v`) and computes its effective weight on the fly.

Inputs are prepared by the pure functions `num_frames`, `pad_audio` and `normalize_audio`;
the module itself derives the frame count from the (already padded) input length, so it can
be exported with a dynamic number of samples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AudioEncoderConfig:
    """wav2vec2-base layout (the `transformers` defaults) and IMTalker's frame rate."""

    sampling_rate: int = 16_000
    fps: float = 25.0
    conv_dim: int = 512
    conv_kernels: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_strides: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_norm_eps: float = 1e-5

    @property
    def samples_per_frame(self) -> int:
        return int(self.sampling_rate / self.fps)


# ---- input preparation (pure functions) ------------------------------------------------


def num_frames(num_samples: int, *, fps: float = 25.0, sampling_rate: int = 16_000) -> int:
    """Video frames covering `num_samples` of audio (rounded up, as the reference does)."""
    return math.ceil(num_samples * fps / sampling_rate)


def pad_audio(
    audio: torch.Tensor, frames: int, *, fps: float = 25.0, sampling_rate: int = 16_000
) -> torch.Tensor:
    """Replicate-pad (B, N) audio up to a multiple of frames * 640 samples (reference)."""
    target = int(frames * sampling_rate / fps)
    rest = audio.shape[-1] % target
    if rest == 0:
        return audio
    return F.pad(audio[:, None, :], (0, target - rest), mode="replicate")[:, 0, :]


def normalize_audio(audio: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-utterance zero mean / unit variance over the last axis (wav2vec2 `do_normalize`)."""
    mean = audio.mean(dim=-1, keepdim=True)
    var = audio.var(dim=-1, keepdim=True, unbiased=False)
    return (audio - mean) / torch.sqrt(var + eps)


# ---- model -------------------------------------------------------------------------------


class ConvLayer(nn.Module):
    """Conv1d (no bias) -> optional GroupNorm (one group per channel) -> GELU."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, *, group_norm: bool
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel, stride=stride, bias=False)
        # Named `layer_norm` in the checkpoint although it is a GroupNorm.
        self.layer_norm = nn.GroupNorm(out_ch, out_ch, affine=True) if group_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (B, C, L')
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return F.gelu(x)


class FeatureExtractor(nn.Module):
    """Raw waveform (B, N) -> conv features (B, 512, L), about 50 steps per second."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        layers = []
        in_ch = 1
        for i, (k, s) in enumerate(zip(cfg.conv_kernels, cfg.conv_strides, strict=True)):
            layers.append(ConvLayer(in_ch, cfg.conv_dim, k, s, group_norm=i == 0))
            in_ch = cfg.conv_dim
        self.conv_layers = nn.ModuleList(layers)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = audio[:, None, :]  # (B, 1, N)
        for layer in self.conv_layers:
            x = layer(x)
        return x  # (B, 512, L)


class FeatureProjection(nn.Module):
    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(cfg.conv_dim, eps=cfg.layer_norm_eps)
        self.projection = nn.Linear(cfg.conv_dim, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.projection(self.layer_norm(x))
        return out


class WeightNormConv1d(nn.Module):
    """Grouped Conv1d with weight norm over the kernel axis (dim=2), checkpoint parameter names.

    Effective weight = weight_g * weight_v / ||weight_v||, the norm taken over the output and
    input-channel axes separately for every kernel position.
    """

    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.padding = kernel // 2
        self.groups = groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.normal_(self.weight_v, std=0.02)

    def weight(self) -> torch.Tensor:
        norm = self.weight_v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()  # (1, 1, K)
        return self.weight_v * (self.weight_g / norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight(), self.bias, padding=self.padding, groups=self.groups)


class PositionalConvEmbedding(nn.Module):
    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        self.conv = WeightNormConv1d(cfg.hidden_size, cfg.pos_conv_kernel, cfg.pos_conv_groups)
        # An even kernel with padding k/2 yields one extra step; drop it ("SamePad").
        self.trim = 1 if cfg.pos_conv_kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))  # (B, D, T + trim)
        if self.trim:
            y = y[:, :, : -self.trim]
        return F.gelu(y).transpose(1, 2)  # (B, T, D)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (
            self._heads(self.q_proj(x)),
            self._heads(self.k_proj(x)),
            self._heads(self.v_proj(x)),
        )
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, Dh)
        out: torch.Tensor = self.out_proj(y.transpose(1, 2).reshape(b, n, c))
        return out


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, hidden)
        self.output_dense = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.output_dense(F.gelu(self.intermediate_dense(x)))
        return out


class EncoderLayer(nn.Module):
    """Post-LayerNorm transformer layer (wav2vec2-base, not the "stable layer norm" variant)."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        self.attention = SelfAttention(cfg.hidden_size, cfg.num_heads)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.feed_forward = FeedForward(cfg.hidden_size, cfg.intermediate_size)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(x + self.attention(x))
        out: torch.Tensor = self.final_layer_norm(x + self.feed_forward(x))
        return out


class Encoder(nn.Module):
    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        self.pos_conv_embed = PositionalConvEmbedding(cfg)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(x + self.pos_conv_embed(x))  # (B, T, D)
        for layer in self.layers:
            x = layer(x)
        return x


class AudioEncoder(nn.Module):
    """(B, T * 640) normalised 16 kHz audio -> (B, T, 768) per-frame features."""

    def __init__(self, config: AudioEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or AudioEncoderConfig()
        self.feature_extractor = FeatureExtractor(self.config)
        self.feature_projection = FeatureProjection(self.config)
        self.encoder = Encoder(self.config)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        frames = audio.shape[-1] // self.config.samples_per_frame
        feats = self.feature_extractor(audio)  # (B, 512, L)
        # One feature per video frame, before the projection (the IMTalker change).
        feats = F.interpolate(feats, size=frames, mode="linear", align_corners=True)  # (B, 512, T)
        hidden = self.feature_projection(feats.transpose(1, 2))  # (B, T, 768)
        out: torch.Tensor = self.encoder(hidden)
        return out

    @torch.no_grad()
    def encode(self, audio: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        """Raw (B, N) 16 kHz audio -> (B, ceil(N / 640), 768): normalise, pad, run."""
        cfg = self.config
        if normalize:
            audio = normalize_audio(audio)
        frames = num_frames(audio.shape[-1], fps=cfg.fps, sampling_rate=cfg.sampling_rate)
        audio = pad_audio(audio, frames, fps=cfg.fps, sampling_rate=cfg.sampling_rate)
        out: torch.Tensor = self(audio)
        return out


_UNUSED_CHECKPOINT_KEYS = ("masked_spec_embed",)


def audio_encoder_state_dict(
    checkpoint: Mapping[str, torch.Tensor], *, prefix: str = "wav2vec2."
) -> dict[str, torch.Tensor]:
    """The encoder's entries of a wav2vec2 checkpoint, prefix stripped.

    `prefix` is "wav2vec2." for `pytorch_model.bin` of wav2vec2-base-960h, or
    "model.audio_encoder.wav2vec2." for a copy inside generator.ckpt. Entries outside the
    prefix (`lm_head.*`) and the training-only `masked_spec_embed` are dropped.
    """
    out = {}
    for key, value in checkpoint.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name in _UNUSED_CHECKPOINT_KEYS:
            continue
        out[name] = value
    return out
