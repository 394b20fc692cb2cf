"""Swin-style windowed self-attention (synthesis levels at >= 128 px).

Relative-position indices and the shifted-window mask are built here and stored as buffers
(`relative_position_index`, `attn_mask`), exactly as the checkpoint format has them.

At 256 px the maps of all 1024 windows are 134 MB per frame, and the bias, the mask and the
softmax each make another; windows are independent, so they are attended `WINDOW_CHUNK`
windows at a time and the exported graph holds one chunk's maps at once.
"""

from __future__ import annotations

import torch
from torch import nn

from models.renderer.attention import make_mlp, query_chunks

MASK_VALUE = -100.0
WINDOW_CHUNK = 256
"""Windows per attention chunk: 256 x 8 heads x 64 x 64 floats = 34 MB per frame."""


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    # (B, H, W, C) -> (B * H/w * W/w, w*w, C), windows in row-major order per image
    _, h, w, c = x.shape
    x = x.reshape(-1, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    # (B * nW, w*w, C) -> (B, H, W, C)
    c = windows.shape[-1]
    x = windows.reshape(-1, height // window, width // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def relative_position_index(window: int) -> torch.Tensor:
    """(w*w, w*w) int64 index into the (2w-1)^2 bias table for every token pair in a window."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ).flatten(1)  # (2, w*w)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (w*w, w*w, 2)
    rel = rel + (window - 1)
    return rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1]


def shifted_window_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """(nW, w*w, w*w) additive mask: -100 between tokens that came from different regions
    of the cyclically shifted image, 0 within a region."""
    region = torch.zeros(1, height, width, 1)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for hs in bands:
        for ws in bands:
            region[:, hs, ws, :] = label
            label += 1
    ids = window_partition(region, window).squeeze(-1)  # (nW, w*w)
    diff = ids[:, None, :] - ids[:, :, None]  # (nW, w*w, w*w)
    return torch.where(diff != 0, torch.tensor(MASK_VALUE), torch.tensor(0.0))


class WindowAttention(nn.Module):
    """Multi-head attention inside windows, with a learned relative-position bias."""

    relative_position_index: torch.Tensor

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.window_tokens = window * window
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.proj = nn.Linear(dim, dim)

    def split_heads(self, tokens: torch.Tensor) -> torch.Tensor:
        # (B*nW, N, C) -> (B*nW, heads, N, d)
        return torch.unflatten(tokens, -1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key_value: torch.Tensor,
        mask: torch.Tensor | None,
        num_windows: int,
    ) -> torch.Tensor:
        # query, key_value: (B*nW, N, C) windows, nW = num_windows per image;
        # mask: (nW, N, N) or None
        n, h = self.window_tokens, self.num_heads
        q = self.split_heads(self.q(query)) * self.scale  # (B*nW, h, N, d)
        k_t = self.split_heads(self.k(key_value)).transpose(-2, -1)  # (B*nW, h, d, N)
        v = self.split_heads(self.v(key_value))  # (B*nW, h, N, d)
        per_image = (-1, num_windows, h)
        q, k_t, v = (t.reshape(*per_image, *t.shape[2:]) for t in (q, k_t, v))  # (B, nW, h, ., .)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        bias = bias.reshape(n, n, -1).permute(2, 0, 1)  # (h, N, N)
        parts = []
        for start, stop in query_chunks(num_windows, WINDOW_CHUNK):
            attn = q[:, start:stop] @ k_t[:, start:stop] + bias  # (B, chunk, h, N, N)
            if mask is not None:
                attn = attn + mask[start:stop, None]
            parts.append(attn.softmax(dim=-1) @ v[:, start:stop])  # (B, chunk, h, N, d)
        x = torch.cat(parts, dim=1).flatten(0, 1)  # (B*nW, h, N, d)
        out: torch.Tensor = self.proj(x.transpose(1, 2).flatten(2))  # (B*nW, N, C)
        return out


class SwinBlock(nn.Module):
    """Windowed self-attention block, optionally on a cyclically shifted grid."""

    attn_mask: torch.Tensor | None

    def __init__(
        self, dim: int, side: int, num_heads: int, window: int, shift: int, mlp_ratio: float
    ) -> None:
        super().__init__()
        if side <= window:  # one window covers the level: no shifting needed
            shift, window = 0, side
        self.side = side
        self.window = window
        self.shift = shift
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window)
        self.norm_ffn = nn.LayerNorm(dim)
        self.mlp = make_mlp(dim, mlp_ratio, dropout_after_act=False)
        mask = shifted_window_mask(side, side, window, shift) if shift > 0 else None
        self.register_buffer("attn_mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        c, s = x.shape[1], self.side
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        # In self-attention the reference's query and key/value norms see the same tokens;
        # the query projection reads norm_q, keys and values read norm_kv.
        q = self.norm_q(tokens).reshape(-1, s, s, c)  # (B, H, W, C)
        kv = self.norm_kv(tokens).reshape(-1, s, s, c)
        if self.shift > 0:
            q = torch.roll(q, shifts=(-self.shift, -self.shift), dims=(1, 2))
            kv = torch.roll(kv, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(
            window_partition(q, self.window),
            window_partition(kv, self.window),
            self.attn_mask,
            (s // self.window) ** 2,
        )  # (B*nW, w*w, C)
        y = window_reverse(windows, self.window, s, s)  # (B, H, W, C)
        if self.shift > 0:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        y = tokens + y.reshape(-1, s * s, c)
        y = y + self.mlp(self.norm_ffn(y))
        return torch.unflatten(y.transpose(1, 2), 2, (s, s))  # (B, C, H, W)
