"""Full multi-head attention and the full-attention transformer block (levels below 128 px).

At the 64 px level a full attention map is heads x 4096 x 4096 floats (512 MB per frame, twice
that with the softmax's output), which is most of the renderer's working memory. Softmax,
the head mean and top-k are row-wise, so computing the map `QUERY_CHUNK` query rows at a time
gives the same rows; the exported graph then holds one chunk's map at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.renderer.top_k import top_k_last

QUERY_CHUNK = 512
"""Query rows per attention chunk: 8 heads x 512 x 4096 floats = 64 MB per frame at 64 px."""


def query_chunks(tokens: int, chunk: int = QUERY_CHUNK) -> list[tuple[int, int]]:
    """[start, stop) row ranges covering `tokens` rows (one range when it is small)."""
    return [(start, min(start + chunk, tokens)) for start in range(0, tokens, chunk)]


class StandardAttention(nn.Module):
    """Multi-head attention with separate q/k/v projections that also returns the map.

    Split into `project_key` / `project_value` / `attend` so per-avatar keys and values can be
    projected once and reused for every frame. Keys and values may have batch 1 while the
    query has batch B: the matmuls broadcast.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def split_heads(self, tokens: torch.Tensor) -> torch.Tensor:
        # (B, N, C) -> (B, heads, N, C/heads)
        return torch.unflatten(tokens, -1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def project_key(self, key: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, N, C)
        out: torch.Tensor = self.k_proj(key)
        return out

    def project_value(self, value: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, N, C)
        out: torch.Tensor = self.v_proj(value)
        return out

    def attend(
        self, query: torch.Tensor, key_proj: torch.Tensor, value_proj: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # query: (B, N, C); key_proj, value_proj: (B or 1, N, C) already projected
        # Scaling q instead of the (N, N) logits saves a full pass over the largest tensor;
        # for head sizes 16 and 64 the scale is a power of two, so nothing changes.
        q = self.split_heads(self.q_proj(query)) * self.scale  # (B, h, N, d)
        k = self.split_heads(key_proj)  # (B|1, h, N, d)
        v = self.split_heads(value_proj)  # (B|1, h, N, d)
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, h, N, N)
        x = (attn @ v).transpose(1, 2).flatten(2)  # (B, N, C)
        out: torch.Tensor = self.proj(x)
        return out, attn

    def attend_top_k(
        self, query: torch.Tensor, key_proj: torch.Tensor, value_proj: torch.Tensor, top_k: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`attend` without keeping the map: the output plus, per query row, the top-k values
        and column indices of the head-averaged map, computed `QUERY_CHUNK` rows at a time.

        query: (B, N, C); key_proj, value_proj: (B or 1, N, C) -> (B, N, C), (B, N, k) scores,
        (B, N, k) int64 indices."""
        q = self.split_heads(self.q_proj(query)) * self.scale  # (B, h, N, d)
        k_t = self.split_heads(key_proj).transpose(-2, -1)  # (B|1, h, d, N)
        v = self.split_heads(value_proj)  # (B|1, h, N, d)
        outs: list[torch.Tensor] = []
        scores: list[torch.Tensor] = []
        indices: list[torch.Tensor] = []
        for start, stop in query_chunks(q.shape[2]):
            rows = q[:, :, start:stop]  # (B, h, chunk, d)
            if outs:
                # An exact zero that makes this chunk wait for everything the last one read its
                # map for, so runtimes that order nodes by data alone finish a chunk (and free
                # its map) before the next: OpenVINO ran every chunk's `attn @ v` and head mean
                # last, holding all eight 64 MB maps at once (+0.58 GB at the first frame).
                done = (
                    outs[-1][:, :1, :1, :1]
                    + scores[-1][:, :1, :1].unsqueeze(1)
                    + indices[-1][:, :1, :1].unsqueeze(1).to(rows.dtype)
                )  # (B, 1, 1, 1)
                rows = rows + done * 0.0
            attn = (rows @ k_t).softmax(dim=-1)  # (B, h, chunk, N)
            outs.append(attn @ v)  # (B, h, chunk, d)
            top, index = top_k_last(attn.mean(dim=1), top_k)  # (B, chunk, k)
            scores.append(top)
            indices.append(index)
        x = torch.cat(outs, dim=2).transpose(1, 2).flatten(2)  # (B, N, C)
        out: torch.Tensor = self.proj(x)
        return out, torch.cat(scores, dim=1), torch.cat(indices, dim=1)

    def attend_fused(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        """Same output as `forward` without materialising the whole map: the fused kernel
        on `QUERY_CHUNK` query rows at a time (exported graphs decompose it into MatMul and
        Softmax, so the chunking is what bounds their memory).

        query, key, value: (B, N, C) un-projected tokens -> (B, N, C)."""
        q = self.split_heads(self.q_proj(query))  # (B, h, N, d)
        k = self.split_heads(self.k_proj(key))
        v = self.split_heads(self.v_proj(value))
        parts = [
            F.scaled_dot_product_attention(q[:, :, start:stop], k, v, scale=self.scale)
            for start, stop in query_chunks(q.shape[2])
        ]
        x = torch.cat(parts, dim=2)  # (B, h, N, d)
        out: torch.Tensor = self.proj(x.transpose(1, 2).flatten(2))  # (B, N, C)
        return out

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # (B, N, C) each -> output (B, N, C), attention map (B, heads, N, N)
        return self.attend(query, self.project_key(key), self.project_value(value))


def make_mlp(dim: int, ratio: float, *, dropout_after_act: bool) -> nn.Sequential:
    """Linear -> GELU -> Linear. Identity placeholders stand where the reference had Dropout
    layers so the Sequential indices (checkpoint keys `mlp.0` / `mlp.2` or `mlp.3`) match."""
    hidden = int(dim * ratio)
    layers: list[nn.Module] = [nn.Linear(dim, hidden), nn.GELU()]
    if dropout_after_act:
        layers.append(nn.Identity())
    layers += [nn.Linear(hidden, dim), nn.Identity()]
    return nn.Sequential(*layers)


class TransformerBlock(nn.Module):
    """Full self-attention block with learned positional embeddings on queries and keys.

    The values carry no positional embedding, and the residual adds the attention output to
    the un-normalised input.
    """

    def __init__(self, dim: int, side: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = StandardAttention(dim, num_heads)
        self.q_pos_embedding = nn.Parameter(torch.randn(1, side * side, dim))
        self.k_pos_embedding = nn.Parameter(torch.randn(1, side * side, dim))
        self.norm_ffn = nn.LayerNorm(dim)
        self.mlp = make_mlp(dim, mlp_ratio, dropout_after_act=True)
        self.side = side

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        q = self.norm_q(tokens + self.q_pos_embedding)
        k = self.norm_kv(tokens + self.k_pos_embedding)
        v = self.norm_kv(tokens)
        attn_out = self.attn.attend_fused(q, k, v)  # (B, HW, C); the map is not needed here
        y = tokens + attn_out
        y = y + self.mlp(self.norm_ffn(y))
        return torch.unflatten(y.transpose(1, 2), 2, (self.side, self.side))  # (B, C, H, W)
