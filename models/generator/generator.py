"""IMTalker motion generator: condition projections, CFG velocity, chunked Euler sampler.

The state dict matches the reference `FMGenerator` without its audio encoder (the
`model.` prefix stripped, `audio_encoder.*` excluded): `fmt.*` plus `audio_projection`,
`gaze_projection`, `pose_projection`, `cam_projection`. Audio features come from
`models.audio_encoder`.

`velocity` is the graph that gets exported to ONNX: no Python branching on tensor values,
and classifier-free guidance is always one batch-doubled forward.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from models.generator.config import GeneratorConfig
from models.generator.fmt import FlowMatchingTransformer


class Conditions(NamedTuple):
    """Projected per-frame conditions, each (B, T, condition_dim)."""

    audio: torch.Tensor
    gaze: torch.Tensor
    pose: torch.Tensor
    cam: torch.Tensor

    def window(self, start: int, stop: int) -> Conditions:
        return Conditions(*(c[:, start:stop] for c in self))

    def pad_to(self, frames: int) -> Conditions:
        """Pad the time axis to `frames` by repeating the last frame (the last chunk)."""
        missing = frames - self.audio.shape[1]
        if missing <= 0:
            return self
        return Conditions(*(torch.cat([c, c[:, -1:].expand(-1, missing, -1)], dim=1) for c in self))

    @staticmethod
    def zeros(like: torch.Tensor, batch: int, frames: int, dim: int) -> Conditions:
        """All-zero conditions with `like`'s dtype and device."""
        return Conditions(*(like.new_zeros(batch, frames, dim) for _ in range(4)))


def _projection(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.SiLU())


def align_sequence(raw: torch.Tensor, frames: int) -> torch.Tensor:
    """Crop or zero-pad a raw (T', C) or (B, T', C) condition to `frames` along time."""
    have = raw.shape[-2]
    if have >= frames:
        return raw[..., :frames, :]
    pad = raw.new_zeros((*raw.shape[:-2], frames - have, raw.shape[-1]))
    return torch.cat([raw, pad], dim=-2)


def fixed_chunk_noise(seed: int, batch: int, frames: int, dim: int) -> torch.Tensor:
    """(batch, frames, dim) initial noise of every chunk when the seed is fixed (reference)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, dim, generator=g)


class FMGenerator(nn.Module):
    """Audio-driven motion latent generator (flow matching, Euler sampler, audio CFG)."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        cfg = self.config
        self.fmt = FlowMatchingTransformer(cfg)
        self.audio_projection = _projection(cfg.audio_feature_dim, cfg.condition_dim)
        self.gaze_projection = _projection(cfg.gaze_dim, cfg.condition_dim)
        self.pose_projection = _projection(cfg.pose_dim, cfg.condition_dim)
        self.cam_projection = _projection(cfg.cam_dim, cfg.condition_dim)

    # ---- conditions -------------------------------------------------------------------

    def _project_raw(
        self, proj: nn.Module, raw: torch.Tensor | None, like: torch.Tensor
    ) -> torch.Tensor:
        batch, frames = like.shape[:2]
        if raw is None:
            # The reference feeds zero embeddings (not a projection of zeros) when absent.
            return like.new_zeros(batch, frames, self.config.condition_dim)
        aligned = align_sequence(raw, frames)
        if aligned.dim() == 2:
            aligned = aligned[None].expand(batch, -1, -1)  # (B, T, C)
        out: torch.Tensor = proj(aligned)
        return out

    def project_conditions(
        self,
        audio_features: torch.Tensor,
        *,
        gaze: torch.Tensor | None = None,
        pose: torch.Tensor | None = None,
        cam: torch.Tensor | None = None,
    ) -> Conditions:
        """Project audio features (B, T, 768) and raw gaze (T', 2) / pose (T', 3) / cam (T', 3).

        Raw conditions may also be batched (B, T', C); they are cropped or zero-padded to T
        before projection. A missing condition becomes a zero embedding.
        """
        like = audio_features
        return Conditions(
            audio=self.audio_projection(audio_features),
            gaze=self._project_raw(self.gaze_projection, gaze, like),
            pose=self._project_raw(self.pose_projection, pose, like),
            cam=self._project_raw(self.cam_projection, cam, like),
        )

    # ---- velocity ---------------------------------------------------------------------

    def velocity_window(
        self,
        t: torch.Tensor,
        x: torch.Tensor,
        prev_x: torch.Tensor,
        ref_x: torch.Tensor,
        a: torch.Tensor,
        prev_a: torch.Tensor,
        gaze: torch.Tensor,
        prev_gaze: torch.Tensor,
        pose: torch.Tensor,
        prev_pose: torch.Tensor,
        cam: torch.Tensor,
        prev_cam: torch.Tensor,
        cfg_scale: torch.Tensor | float,
    ) -> torch.Tensor:
        """Guided velocity (B, P+L, M) of the whole window, previous frames included.

        t: (B,) or (1,); x, a, gaze, pose, cam: (B, L, ·); prev_*: (B, P, ·); ref_x: (B, M);
        cfg_scale: float or (1,) tensor. The unconditional half zeroes only the current
        audio (the previous audio stays), as the reference does.
        """
        b = x.shape[0]
        x_full = torch.cat([prev_x, x], dim=1)  # (B, P+L, M)
        gaze_full = torch.cat([prev_gaze, gaze], dim=1)
        pose_full = torch.cat([prev_pose, pose], dim=1)
        cam_full = torch.cat([prev_cam, cam], dim=1)
        a_cond = torch.cat([prev_a, a], dim=1)
        a_uncond = torch.cat([prev_a, torch.zeros_like(a)], dim=1)
        # Same summation order as the reference (a + pose + cam + gaze).
        cond = a_cond + pose_full + cam_full + gaze_full  # (B, P+L, C)
        uncond = a_uncond + pose_full + cam_full + gaze_full

        t_b = t.reshape(-1).expand(b)  # (B,)
        out = self.fmt(
            torch.cat([t_b, t_b]),
            torch.cat([x_full, x_full]),
            torch.cat([ref_x, ref_x]),
            torch.cat([uncond, cond]),
        )  # (2B, P+L, M)
        v_uncond, v_cond = out[:b], out[b:]
        guided: torch.Tensor = v_uncond + cfg_scale * (v_cond - v_uncond)
        return guided

    def velocity(
        self,
        t: torch.Tensor,
        x: torch.Tensor,
        prev_x: torch.Tensor,
        ref_x: torch.Tensor,
        a: torch.Tensor,
        prev_a: torch.Tensor,
        gaze: torch.Tensor,
        prev_gaze: torch.Tensor,
        pose: torch.Tensor,
        prev_pose: torch.Tensor,
        cam: torch.Tensor,
        prev_cam: torch.Tensor,
        cfg_scale: torch.Tensor | float,
    ) -> torch.Tensor:
        """Guided velocity (B, L, M) of the current frames only (what the sampler integrates)."""
        full = self.velocity_window(
            t, x, prev_x, ref_x, a, prev_a, gaze, prev_gaze, pose, prev_pose, cam, prev_cam,
            cfg_scale,
        )  # fmt: skip
        return full[:, prev_x.shape[1] :]

    # ---- sampling ---------------------------------------------------------------------

    def sample_chunk(
        self,
        x0: torch.Tensor,
        ref_x: torch.Tensor,
        current: Conditions,
        previous: Conditions,
        prev_x: torch.Tensor,
        *,
        cfg_scale: float,
        nfe: int,
    ) -> torch.Tensor:
        """Integrate one chunk from noise x0 (B, L, M) to motion (B, L, M).

        Euler on the grid linspace(0, 1, nfe): nfe - 1 velocity evaluations (torchdiffeq's
        fixed-grid 'euler' evaluates at every grid point except the last).
        """
        steps = torch.linspace(0.0, 1.0, nfe, device=x0.device)
        x = x0
        for i in range(nfe - 1):
            t0 = steps[i : i + 1]  # (1,)
            dt = steps[i + 1] - steps[i]
            v = self.velocity(
                t0, x, prev_x, ref_x,
                current.audio, previous.audio, current.gaze, previous.gaze,
                current.pose, previous.pose, current.cam, previous.cam,
                cfg_scale,
            )  # fmt: skip
            x = x + dt * v
        return x

    @torch.no_grad()
    def sample(
        self,
        audio_features: torch.Tensor,
        ref_x: torch.Tensor,
        *,
        gaze: torch.Tensor | None = None,
        pose: torch.Tensor | None = None,
        cam: torch.Tensor | None = None,
        cfg_scale: float | None = None,
        nfe: int | None = None,
        seed: int | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Motion latents (B, T, M) for audio features (B, T, 768) and reference motion (B, M).

        Chunks of L frames, each conditioned on the previous chunk's last P frames (zeros for
        the first); the last chunk is padded by repeating its last frame. Initial noise per
        chunk: `noise[k]` if given (num_chunks, B, L, M); else, with `seed`, the same seeded
        draw for every chunk (the reference's fixed-seed mode); else the global torch RNG.
        """
        cfg = self.config
        cfg_scale = cfg.a_cfg_scale if cfg_scale is None else cfg_scale
        nfe = cfg.nfe if nfe is None else nfe
        b, frames, _ = audio_features.shape
        clip, prev, dim = cfg.clip_frames, cfg.num_prev_frames, cfg.motion_dim
        num_chunks = math.ceil(frames / clip)
        if noise is not None and tuple(noise.shape) != (num_chunks, b, clip, dim):
            raise ValueError(f"noise must be {(num_chunks, b, clip, dim)}, got {noise.shape}")

        conds = self.project_conditions(audio_features, gaze=gaze, pose=pose, cam=cam)
        like = audio_features
        previous = Conditions.zeros(like, b, prev, cfg.condition_dim)
        prev_x = like.new_zeros(b, prev, dim)
        chunks: list[torch.Tensor] = []
        for k in range(num_chunks):
            if noise is not None:
                x0 = noise[k].to(like)
            elif seed is not None:
                x0 = fixed_chunk_noise(seed, b, clip, dim).to(like)
            else:
                x0 = torch.randn(b, clip, dim).to(like)
            current = conds.window(k * clip, (k + 1) * clip).pad_to(clip)
            x1 = self.sample_chunk(
                x0, ref_x, current, previous, prev_x, cfg_scale=cfg_scale, nfe=nfe
            )
            chunks.append(x1)
            previous = current.window(clip - prev, clip)
            prev_x = x1[:, clip - prev :]
        return torch.cat(chunks, dim=1)[:, :frames]
