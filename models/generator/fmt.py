"""Flow-matching transformer (FMT) of the IMTalker motion generator.

A DiT-style stack: every block's LayerNorms are modulated per frame by the condition
sequence (timestep + projected audio/gaze/pose/cam), and self-attention is restricted to a
local window of frames (v1: absolute sinusoidal positions) or not restricted at all (v2: rotary
position embeddings on q and k). Parameter names follow the reference (`fmt.*` in generator.ckpt),
including the timm-style `Mlp` (`fc1`/`fc2`) and `Attention` (`qkv`/`proj`) layouts.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.generator.config import GeneratorConfig


def alignment_mask(num_frames: int, window: int) -> torch.Tensor:
    """(num_frames, num_frames) bool, True where frame i may NOT attend to frame j.

    Frame i sees frames i-window .. i+window (the reference's `enc_dec_mask`).
    """
    idx = torch.arange(num_frames)
    return (idx[None, :] - idx[:, None]).abs() > window  # (T, T)


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """(num_positions, dim) float32 sinusoidal position table.

    The angles are computed in double precision and rounded to float32 *before* sin/cos,
    because the reference builds them as Python floats and then takes sin/cos of a float32
    tensor; taking sin/cos in double would differ in the last bits.
    """
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (P, 1)
    pair = torch.div(torch.arange(dim), 2, rounding_mode="floor").to(torch.float64)
    angle = (pos / torch.pow(10000.0, 2.0 * pair / dim)[None, :]).to(torch.float32)  # (P, D)
    table = torch.empty_like(angle)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table


def rope_inv_freq(head_dim: int, base: float) -> torch.Tensor:
    """(head_dim / 2,) float32 inverse frequencies 1 / base^(2i / head_dim) (v2 `inv_freq`)."""
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    return 1.0 / (base**exponent)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(..., D) -> (..., D): the halves (x1, x2) become (-x2, x1)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotate-half RoPE over a head's full size, positions 0..T-1 of the window.

    `inv_freq` is a persistent buffer (`fmt.rotary_emb.inv_freq` in the v2 checkpoint); the
    angles are rebuilt from it on every call, so a loaded value is the one used.
    """

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        self.inv_freq: torch.Tensor
        self.register_buffer("inv_freq", rope_inv_freq(head_dim, base))

    def forward(self, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin tables, each (T, Dh)."""
        pos = torch.arange(frames, device=self.inv_freq.device).to(self.inv_freq.dtype)  # (T,)
        freqs = pos[:, None] * self.inv_freq[None, :]  # (T, Dh/2)
        angles = torch.cat([freqs, freqs], dim=-1)  # (T, Dh)
        return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, Dh) rotated by the (T, Dh) tables."""
    return x * cos + rotate_half(x) * sin


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per-frame adaLN modulation; all (B, T, D)."""
    return x * (1 + scale) + shift


class Positions(NamedTuple):
    """How attention sees frame order: a (T, T) "may attend" mask (None: full attention) and/or
    RoPE (cos, sin) tables, each (T, Dh)."""

    allowed: torch.Tensor | None
    rope: tuple[torch.Tensor, torch.Tensor] | None


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean "may attend" mask as the 0 / -inf bias SDPA adds to the scores. Same result;
    the reason is the export: for a boolean mask the exporter guards the softmax against rows
    with nothing allowed (IsNaN + Where after every Softmax), and IsNaN is an op CoreML's ML
    Program does not run, so each block's attention split the velocity graph. Every row of
    the alignment mask allows at least its own frame, so the guard never had work to do.
    (T, T) bool -> (T, T) `dtype`."""
    zeros = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return zeros.masked_fill(~allowed, float("-inf"))


class Mlp(nn.Module):
    """Two-layer MLP with tanh-approximated GELU (timm `Mlp` parameter names)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(self.act(self.fc1(x)))
        return out


class Attention(nn.Module):
    """Multi-head self-attention (timm `Attention` names): with a boolean "may attend" mask
    (v1), or full attention with q and k rotated by RoPE (v2). The reference's q/k norms are
    identities (no parameters in either checkpoint), so RoPE applies to the projections."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, positions: Positions) -> torch.Tensor:
        b, n, c = x.shape  # (B, T, D)
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, Dh)
        if positions.rope is not None:
            cos, sin = positions.rope  # (T, Dh) each
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        bias = None if positions.allowed is None else additive_mask(positions.allowed, q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, T, Dh)
        y = y.transpose(1, 2).reshape(b, n, c)  # (B, T, D)
        out: torch.Tensor = self.proj(y)
        return out


class TimestepEmbedder(nn.Module):
    """Flow time t -> (N, hidden) via a cos/sin frequency embedding and a 2-layer MLP."""

    def __init__(self, hidden_size: int, frequency_size: int, max_period: float = 10000.0) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )
        if frequency_size % 2:
            raise ValueError("frequency_size must be even")
        half = frequency_size // 2
        # Same float32 arithmetic as the reference; not part of the checkpoint.
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.freqs: torch.Tensor
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.reshape(-1, 1).float() * self.freqs[None, :]  # (N, F/2)
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (N, F)
        out: torch.Tensor = self.mlp(emb)  # (N, D)
        return out


class SequenceEmbed(nn.Module):
    """Per-frame linear embedding (the reference's norm is an identity, so only `proj`)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.proj(x)
        return out


class FMTBlock(nn.Module):
    """Attention + MLP, each with adaLN shift/scale before and a gate after."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor, positions: Positions) -> torch.Tensor:
        # x, c: (B, T, D); the six modulations are per frame.
        mods = self.adaLN_modulation(c).chunk(6, dim=-1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods
        x = x + gate_msa * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), positions)
        x = x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class Decoder(nn.Module):
    """Final modulated LayerNorm + linear head to motion space."""

    def __init__(self, hidden_size: int, out_dim: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.linear = nn.Linear(hidden_size, out_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)  # (B, T, D) each
        out: torch.Tensor = self.linear(modulate(self.norm_final(x), shift, scale))
        return out


class FlowMatchingTransformer(nn.Module):
    """Velocity of the motion flow for a full window (previous + current frames).

    v1: buffers `pos_embed` (1, T, D) and `alignment_mask` (T, T); v2: `rotary_emb.inv_freq`
    (Dh / 2,). They are part of the published state dict and rebuilt here exactly as the
    reference builds them.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        frames = config.total_frames
        self.x_embedder = SequenceEmbed(2 * config.motion_dim, hidden)
        self.banded = config.position_scheme == "sinusoidal_banded"
        # Registration order = the checkpoint's key order (each version's manifest).
        if self.banded:
            self.pos_embed: torch.Tensor
            self.register_buffer("pos_embed", sinusoid_table(frames, hidden)[None])
        else:
            self.rotary_emb = RotaryEmbedding(hidden // config.num_heads, config.rope_base)
        self.t_embedder = TimestepEmbedder(hidden, config.frequency_embedding_size)
        self.c_embedder = nn.Linear(config.condition_dim, hidden)
        self.blocks = nn.ModuleList(
            FMTBlock(hidden, config.num_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.decoder = Decoder(hidden, config.motion_dim)
        if self.banded:
            self.alignment_mask: torch.Tensor
            self.register_buffer("alignment_mask", alignment_mask(frames, config.attention_window))

    def forward(
        self, t: torch.Tensor, x: torch.Tensor, ref_x: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor:
        """Velocity (B, T, motion_dim) of the window.

        t: (B,) or (1,) flow time; x: (B, T, motion_dim) previous + current motion;
        ref_x: (B, motion_dim) reference motion; cond: (B, T, condition_dim) the sum of the
        projected conditions.
        """
        t_emb = self.t_embedder(t)[:, None, :]  # (B|1, 1, D)
        ref = ref_x[:, None, :].expand(-1, x.shape[1], -1)  # (B, T, M)
        h = self.x_embedder(torch.cat([ref, x], dim=-1))  # (B, T, D)
        if self.banded:
            h = h + self.pos_embed
            positions = Positions(allowed=~self.alignment_mask, rope=None)  # (T, T)
        else:
            positions = Positions(allowed=None, rope=self.rotary_emb(x.shape[1]))
        c = t_emb + self.c_embedder(cond)  # (B, T, D)
        for block in self.blocks:
            h = block(h, c, positions)
        out: torch.Tensor = self.decoder(h, c)  # (B, T, M)
        return out
