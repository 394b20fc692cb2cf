"""IMTRenderer: the IMTalker renderer with inference-shaped entry points.

Submodule attribute names (`dense_feature_encoder`, `latent_token_encoder`,
`latent_token_decoder`, `frame_decoder`, `adapt`, `imt`) are the checkpoint's key prefixes.

Inference flow (one avatar, many frames):
    source = renderer.encode_source(image)          # once per avatar
    cache = renderer.precompute_source(source)      # once per avatar
    frames = renderer.render_precomputed(motion, cache)   # per batch of motion latents
`render(motion, source)` is the same computation without the cache; `forward` is the
reference's training-style call (driving image + source image -> frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from models.renderer.config import RendererConfig
from models.renderer.identity_adaptive import IdentityAdaptive
from models.renderer.identity_encoder import IdentityEncoder
from models.renderer.motion_decoder import MotionDecoder
from models.renderer.motion_encoder import MotionEncoder
from models.renderer.motion_transfer import CoarseMotionTransfer, FineMotionTransfer
from models.renderer.synthesis import SynthesisNetwork


@dataclass(frozen=True)
class SourceEncoding:
    """Everything the renderer derives from one source image (batch 1 in inference).

    Shapes with the published config:
    - appearance: (1, 512, 8, 8), (1, 512, 16, 16), (1, 256, 32, 32), (1, 128, 64, 64),
      (1, 64, 128, 128), (1, 32, 256, 256) -- coarsest first
    - id_latent: (1, 512)
    - motion: (1, 32) the source's own motion latent (the generator's reference motion)
    - adapted_motion: (1, 32) `motion` after the identity-adaptive module
    - motion_maps: (1, 512, 8, 8), (1, 512, 16, 16), (1, 256, 32, 32), (1, 128, 64, 64)
      decoded from `adapted_motion`
    """

    appearance: tuple[torch.Tensor, ...]
    id_latent: torch.Tensor
    motion: torch.Tensor
    adapted_motion: torch.Tensor
    motion_maps: tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class SourceCache:
    """Per-avatar tensors that do not depend on the driving motion (batch 1).

    - id_latent: (1, 512)
    - fine_appearance: the appearance levels the guided resampler reads (>= 128 px),
      (1, 64, 128, 128) and (1, 32, 256, 256); the coarse levels enter only through
      `cross_values`
    - cross_keys: per coarse level, the source motion map's tokens through the key
      projection, (1, HW, C): (1, 64, 512), (1, 256, 512), (1, 1024, 256), (1, 4096, 128)
    - cross_values: per coarse level, the appearance tokens through the value projection,
      same shapes as cross_keys
    """

    id_latent: torch.Tensor
    fine_appearance: tuple[torch.Tensor, ...]
    cross_keys: tuple[torch.Tensor, ...]
    cross_values: tuple[torch.Tensor, ...]

    def named(self) -> dict[str, torch.Tensor]:
        """The tensors under the runtime contract's names and in its order
        (`runtime.model.contract.AVATAR_TENSORS`): `id_latent`, `appearance_<level>` for the fine
        levels (pyramid index, coarsest = 0), then `cross_key_<i>`, `cross_value_<i>`."""
        coarse = len(self.cross_keys)
        out = {"id_latent": self.id_latent}
        out.update({f"appearance_{coarse + i}": t for i, t in enumerate(self.fine_appearance)})
        for i, (k, v) in enumerate(zip(self.cross_keys, self.cross_values, strict=True)):
            out[f"cross_key_{i}"] = k
            out[f"cross_value_{i}"] = v
        return out

    @classmethod
    def from_named(cls, tensors: dict[str, torch.Tensor], config: RendererConfig) -> SourceCache:
        """Inverse of `named` (e.g. to rebuild the cache from an export wrapper's flat inputs).
        Other entries of `tensors` are ignored."""
        levels, coarse = config.num_levels, config.num_coarse_levels
        return cls(
            id_latent=tensors["id_latent"],
            fine_appearance=tuple(tensors[f"appearance_{i}"] for i in range(coarse, levels)),
            cross_keys=tuple(tensors[f"cross_key_{i}"] for i in range(coarse)),
            cross_values=tuple(tensors[f"cross_value_{i}"] for i in range(coarse)),
        )


class IMTRenderer(nn.Module):
    """Identity encoder, motion encoder, identity-adaptive module, motion decoder, implicit
    motion transfer (`imt`, one module per pyramid level) and synthesis network."""

    def __init__(self, config: RendererConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else RendererConfig()
        self.dense_feature_encoder = IdentityEncoder(config)
        self.latent_token_encoder = MotionEncoder(config)
        self.latent_token_decoder = MotionDecoder(config)
        self.frame_decoder = SynthesisNetwork(config)
        self.adapt = IdentityAdaptive(config)
        levels: list[nn.Module] = []
        for i, (dim, side) in enumerate(
            zip(config.feature_dims_coarse_first, config.spatial_dims_coarse_first, strict=True)
        ):
            if i < config.num_coarse_levels:
                levels.append(CoarseMotionTransfer(dim, config.num_heads))
            else:
                levels.append(
                    FineMotionTransfer(config.resampler_ratio(side), config.resampler_top_k)
                )
        self.imt = nn.ModuleList(levels)

    # -- encoders ------------------------------------------------------------------------

    def encode_appearance(self, image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(B, 3, S, S) in [0, 1] (S = config.image_size) -> (pyramid coarsest first,
        identity latent (B, 512))."""
        pyramid, id_latent = self.dense_feature_encoder(image)
        return cast(list[torch.Tensor], pyramid), cast(torch.Tensor, id_latent)

    def encode_motion(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] (S = config.image_size) -> motion latents (B, 32)."""
        out: torch.Tensor = self.latent_token_encoder(images)
        return out

    def adapt_motion(self, motion: torch.Tensor, id_latent: torch.Tensor) -> torch.Tensor:
        """(B, 32) motion, (B or 1, 512) identity -> identity-adapted motion (B, 32).

        Same as calling the `adapt` submodule (whose name the checkpoint fixes)."""
        out: torch.Tensor = self.adapt(motion, id_latent)
        return out

    def decode_motion(self, adapted_motion: torch.Tensor) -> list[torch.Tensor]:
        """(B, 32) adapted motion -> motion maps per coarse level, coarsest first."""
        maps: list[torch.Tensor] = self.latent_token_decoder(adapted_motion)
        return maps

    def encode_source(self, image: torch.Tensor) -> SourceEncoding:
        """Source image (1, 3, S, S) in [0, 1] -> its SourceEncoding."""
        appearance, id_latent = self.encode_appearance(image)
        motion = self.encode_motion(image)
        adapted = self.adapt_motion(motion, id_latent)
        return SourceEncoding(
            appearance=tuple(appearance),
            id_latent=id_latent,
            motion=motion,
            adapted_motion=adapted,
            motion_maps=tuple(self.decode_motion(adapted)),
        )

    def precompute_source(self, source: SourceEncoding) -> SourceCache:
        """Project the avatar's cross-attention keys and values once."""
        keys, values = [], []
        for level in range(self.config.num_coarse_levels):
            block = self._coarse(level)
            keys.append(block.source_key(source.motion_maps[level]))  # (1, HW, C)
            values.append(block.source_value(source.appearance[level]))  # (1, HW, C)
        return SourceCache(
            id_latent=source.id_latent,
            fine_appearance=source.appearance[self.config.num_coarse_levels :],
            cross_keys=tuple(keys),
            cross_values=tuple(values),
        )

    # -- decoding ------------------------------------------------------------------------

    def _coarse(self, level: int) -> CoarseMotionTransfer:
        return cast(CoarseMotionTransfer, self.imt[level])

    def _fine(self, level: int) -> FineMotionTransfer:
        return cast(FineMotionTransfer, self.imt[level])

    def _transfer_and_synthesize(
        self,
        driving_maps: list[torch.Tensor],
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        fine_appearance: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        # driving_maps: (B, C_l, S_l, S_l) per coarse level; keys/values: (B or 1, HW, C_l);
        # fine_appearance: (B or 1, C_l, S_l, S_l) per fine level.
        aligned: list[torch.Tensor] = []
        coarse = self.config.num_coarse_levels
        for level in range(coarse - 1):
            feat, _ = self._coarse(level).attend(driving_maps[level], keys[level], values[level])
            aligned.append(feat)  # (B, C_l, S_l, S_l)
        # The last coarse map guides the fine levels, which read only its per-row top-k: it is
        # never held whole (see models.renderer.attention.QUERY_CHUNK).
        last = coarse - 1
        feat, scores, index = self._coarse(last).attend_top_k(
            driving_maps[last], keys[last], values[last], self.config.resampler_top_k
        )
        aligned.append(feat)
        for level, appearance in enumerate(fine_appearance, start=coarse):
            resampler = self._fine(level).block
            aligned.append(resampler.sample_top_k(resampler.pool(appearance), scores, index))
        frames: torch.Tensor = self.frame_decoder(aligned)
        return frames  # (B, 3, 512, 512)

    def decode(
        self,
        driving_maps: list[torch.Tensor],
        source_maps: Sequence[torch.Tensor],
        appearance: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """The reference's decode: driving motion maps against the source's motion maps and
        appearance pyramid (batch B, or batch 1 broadcast over the driving batch)."""
        coarse = range(self.config.num_coarse_levels)
        keys = [self._coarse(i).source_key(source_maps[i]) for i in coarse]
        values = [self._coarse(i).source_value(appearance[i]) for i in coarse]
        fine = appearance[self.config.num_coarse_levels :]
        return self._transfer_and_synthesize(driving_maps, keys, values, fine)

    def render(self, motion_latents: torch.Tensor, source: SourceEncoding) -> torch.Tensor:
        """Motion latents (B, 32) (not yet identity-adapted) -> frames (B, 3, 512, 512)."""
        adapted = self.adapt_motion(motion_latents, source.id_latent)
        return self.decode(self.decode_motion(adapted), source.motion_maps, source.appearance)

    def render_precomputed(self, motion_latents: torch.Tensor, cache: SourceCache) -> torch.Tensor:
        """`render` using the cached per-avatar projections: (B, 32) -> (B, 3, 512, 512)."""
        adapted = self.adapt_motion(motion_latents, cache.id_latent)
        return self._transfer_and_synthesize(
            self.decode_motion(adapted),
            list(cache.cross_keys),
            list(cache.cross_values),
            cache.fine_appearance,
        )

    def forward(
        self, x_current: torch.Tensor, x_reference: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference call: driving images (B, 3, S, S), source images (B, 3, S, S)
        -> (frames (B, 3, 512, 512), driving motion latents (B, 32))."""
        appearance, id_latent = self.encode_appearance(x_reference)
        source_motion = self.encode_motion(x_reference)
        driving_motion = self.encode_motion(x_current)
        source_maps = self.decode_motion(self.adapt_motion(source_motion, id_latent))
        driving_maps = self.decode_motion(self.adapt_motion(driving_motion, id_latent))
        return self.decode(driving_maps, source_maps, appearance), driving_motion
