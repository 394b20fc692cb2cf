"""Small checkpoints with every key and shape of the real ones (for store and download tests).

Each tensor is a single value expanded to its full shape (stride 0), which `torch.save` stores
as one element, so a renderer checkpoint with all of its keys takes a few hundred KB. The
checkpoint inspector checks keys and shapes, so these pass it exactly as the published files
do; `seed` changes the values (and so the digests), `size` pads the file to at least that many
bytes with real random values in the first weights (for transfer tests that need volume).
"""

from __future__ import annotations

import functools
import io

import torch
from torch import nn

from models.audio_encoder import AudioEncoder
from models.versioning import build_generator, build_renderer
from runtime.model.versions import VERSIONS


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@functools.cache
def _module_shapes(part: str, version: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        if part == "renderer":
            return _shapes(build_renderer(VERSIONS[version]))
        if part == "generator":
            return _shapes(build_generator(VERSIONS[version]))
        return _shapes(AudioEncoder())


def _tensors(part: str, version: str, seed: int, size: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    budget = size
    for i, (key, shape) in enumerate(sorted(_module_shapes(part, version).items())):
        numel = 1
        for d in shape:
            numel *= d
        if 0 < 4 * numel <= budget and key.endswith("weight") and numel > 1:
            out[key] = torch.randn(shape, generator=generator)
            budget -= 4 * numel
        else:
            value = torch.full((1,), float(seed + i % 7))
            out[key] = value.expand(shape) if shape else value.reshape(())
    return out


@functools.cache
def skeleton_checkpoint(part: str, *, version: str = "v1", seed: int = 0, size: int = 0) -> bytes:
    """`part` ("renderer", "generator", "wav2vec2") in its published layout, as bytes."""
    tensors = _tensors(part, version, seed, size)
    if part == "renderer":
        payload: object = {"state_dict": {f"gen.{k}": v for k, v in tensors.items()}}
    elif part == "generator":
        payload = {"state_dict": {f"model.{k}": v for k, v in tensors.items()}}
    else:
        payload = {f"wav2vec2.{k}": v for k, v in tensors.items()}
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()
