"""PyTorch port of the IMTalker renderer, weight-compatible with the published renderer.ckpt."""

from models.renderer.config import RendererConfig
from models.renderer.renderer import IMTRenderer, SourceCache, SourceEncoding

__all__ = ["IMTRenderer", "RendererConfig", "SourceCache", "SourceEncoding"]
