"""Hyper-parameters of the IMTalker renderer (the published `renderer.ckpt` layout).

The defaults are the ones the published checkpoint was trained with; changing any of them
changes the state-dict shapes, so a different value only makes sense for a different checkpoint.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from typing import Any

from runtime.model.versions import V1, ModelVersion


@dataclass(frozen=True, kw_only=True)
class RendererConfig:
    """Renderer architecture. Level tuples run finest first, as in the reference code."""

    image_size: int = 256
    """Side of the square RGB input (source and driving crops), values in [0, 1]."""
    identity_extra_down_blocks: int = 0
    """Downsampling blocks between the identity encoder's stem and the finest pyramid level
    (`down_block_<i>`, v2: one, for its 512 px input)."""
    feature_dims: tuple[int, ...] = (32, 64, 128, 256, 512, 512)
    """Channels of the appearance pyramid, finest level first."""
    spatial_dims: tuple[int, ...] = (256, 128, 64, 32, 16, 8)
    """Side of each appearance level, finest first (each level halves the previous one)."""
    motion_encoder_channels: tuple[int, ...] = (128, 256, 512, 512, 512)
    """Output channels of the motion encoder's downsampling residual blocks."""
    motion_encoder_stem: int = 64
    """Channels of the motion encoder's first convolution."""
    motion_dim: int = 32
    """Size of a motion latent (also the style size of the motion decoder)."""
    identity_dim: int = 512
    """Size of the identity latent."""
    motion_const_channels: int = 32
    """Channels of the motion decoder's learned 4x4 constant input."""
    adapt_depth: int = 4
    """Hidden layers of the identity-adaptive MLP."""
    num_heads: int = 8
    """Attention heads of every attention layer (cross- and self-attention)."""
    window_size: int = 8
    """Swin window side used by the synthesis self-attention at high resolution."""
    swin_res_threshold: int = 128
    """Levels with side >= this use windowed self-attention in the synthesis network and the
    guided top-k resampler for motion transfer; smaller levels use full attention."""
    resampler_top_k: int = 1
    """Coarse-attention matches the guided resampler averages (the reference uses 1)."""
    mlp_ratio: float = 2.0
    """Hidden width of the transformer MLPs relative to the level's channels."""

    def __post_init__(self) -> None:
        if len(self.feature_dims) != len(self.spatial_dims):
            raise ValueError("feature_dims and spatial_dims must have one entry per level")
        for finer, coarser in itertools.pairwise(self.spatial_dims):
            if finer != 2 * coarser:
                raise ValueError(f"spatial_dims must halve level by level, got {self.spatial_dims}")
        if self.spatial_dims[0] * 2**self.identity_extra_down_blocks != self.image_size:
            raise ValueError(
                "the finest appearance level must have the input image's side, halved once per "
                "extra identity down block"
            )
        if self.num_coarse_levels < 1:
            raise ValueError("at least one level must be below swin_res_threshold")
        coarse_side = self.coarse_map_side
        for side in self.spatial_dims_coarse_first[self.num_coarse_levels :]:
            ratio = self.resampler_ratio(side)
            if ratio * coarse_side != side:
                raise ValueError(
                    f"level {side}px: resampler ratio {ratio} does not map it onto the "
                    f"{coarse_side}px coarse attention map"
                )
        for dim in self.feature_dims:
            if dim % self.num_heads:
                raise ValueError(f"{dim} channels are not divisible by {self.num_heads} heads")

    @classmethod
    def for_version(cls, version: ModelVersion = V1) -> RendererConfig:
        """The published architecture of `version`."""
        return cls(
            image_size=version.source_size,
            identity_extra_down_blocks=version.identity_extra_down_blocks,
        )

    # Derived values, coarsest level first (the order the decoder walks the pyramid in).

    @property
    def feature_dims_coarse_first(self) -> tuple[int, ...]:
        return self.feature_dims[::-1]

    @property
    def spatial_dims_coarse_first(self) -> tuple[int, ...]:
        return self.spatial_dims[::-1]

    @property
    def num_levels(self) -> int:
        return len(self.spatial_dims)

    @property
    def num_coarse_levels(self) -> int:
        """Levels handled by cross-attention (and decoded from the motion latent)."""
        return sum(1 for s in self.spatial_dims if s < self.swin_res_threshold)

    @property
    def coarse_map_side(self) -> int:
        """Side of the finest cross-attention level, whose attention map guides the resampler."""
        return self.spatial_dims_coarse_first[self.num_coarse_levels - 1]

    @property
    def output_size(self) -> int:
        """Side of the rendered frame (the synthesis network ends in a 2x pixel shuffle)."""
        return 2 * self.spatial_dims[0]

    def resampler_ratio(self, side: int) -> int:
        """Upscale from the coarse attention map to a fine level, as the reference defines it."""
        ratio = 2 * side / self.swin_res_threshold
        if ratio < 1 or not ratio.is_integer():
            raise ValueError(f"{side}px is not a multiple of half of swin_res_threshold")
        return int(ratio)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RendererConfig:
        """Inverse of `to_dict`; unknown keys are an error, missing keys take the defaults."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown renderer config keys: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            values[name] = tuple(int(v) for v in value) if isinstance(value, list) else value
        return cls(**values)
