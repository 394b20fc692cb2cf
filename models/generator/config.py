"""Hyper-parameters of the IMTalker motion generator (published defaults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from runtime.model.versions import V1, ModelVersion, PositionScheme


@dataclass(frozen=True)
class GeneratorConfig:
    """The generator's architecture and sampler defaults (reference `options/base_options.py`)."""

    fps: float = 25.0
    sampling_rate: int = 16_000
    clip_seconds: float = 2.0
    num_prev_frames: int = 10
    hidden_size: int = 512
    depth: int = 8
    num_heads: int = 8
    mlp_ratio: float = 4.0
    motion_dim: int = 32
    condition_dim: int = 32
    audio_feature_dim: int = 768
    gaze_dim: int = 2
    pose_dim: int = 3
    cam_dim: int = 3
    attention_window: int = 5
    frequency_embedding_size: int = 256
    ode_method: str = "euler"
    nfe: int = 10
    a_cfg_scale: float = 3.0
    position_scheme: PositionScheme = "sinusoidal_banded"
    """How the transformer sees frame positions (`runtime.model.versions.ModelVersion`)."""
    rope_base: float = 10_000.0
    """RoPE frequency base (used only with position_scheme "rope")."""

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")
        if self.ode_method != "euler":
            raise ValueError(f"only the euler sampler is implemented, not {self.ode_method!r}")
        if self.nfe < 1:
            raise ValueError("nfe must be at least 1")
        if self.position_scheme not in ("sinusoidal_banded", "rope"):
            raise ValueError(f"unknown position_scheme {self.position_scheme!r}")
        if self.position_scheme == "rope" and (self.hidden_size // self.num_heads) % 2:
            raise ValueError("RoPE needs an even head size")

    @classmethod
    def for_version(cls, version: ModelVersion = V1) -> GeneratorConfig:
        """The published architecture and sampler defaults of `version`."""
        return cls(
            a_cfg_scale=version.default_cfg,
            position_scheme=version.position_scheme,
            rope_base=version.rope_base if version.rope_base is not None else cls.rope_base,
        )

    @property
    def clip_frames(self) -> int:
        """Frames generated per chunk (50 for 2 s at 25 fps)."""
        return int(self.clip_seconds * self.fps)

    @property
    def total_frames(self) -> int:
        """Frames the transformer sees at once: previous context + current chunk."""
        return self.num_prev_frames + self.clip_frames

    @property
    def samples_per_frame(self) -> int:
        return int(self.sampling_rate / self.fps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown GeneratorConfig fields: {sorted(unknown)}")
        return cls(**{k: data[k] for k in known if k in data})
