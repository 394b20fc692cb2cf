"""Atomic safetensors writing and the one-time conversion of a published checkpoint.

The converted file keeps the published key layout (`gen.*`, `model.*`, `wav2vec2.*`) stored
flat, holding only the entries we use, so the same extraction functions read it back. A
reader never sees a half-written file: the data goes to a temporary file in the same folder,
is fsynced, and is renamed over the destination in one step.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import safetensors.torch
import torch
from torch import nn

from models.checkpoint.layouts import (
    AUDIO_ENCODER_PREFIX,
    GENERATOR_PREFIX,
    RENDERER_PREFIX,
    WAV2VEC2_PREFIX,
    StateDict,
    generator_state_dicts,
    renderer_state_dict,
    wav2vec2_state_dict,
)
from models.checkpoint.strict import load_strict

CheckpointKind = Literal["renderer", "generator", "wav2vec2"]


def _unshared(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Contiguous CPU tensors; safetensors refuses tensors that share storage, so copy those."""
    seen: set[int] = set()
    out: StateDict = {}
    for key, value in state_dict.items():
        tensor = value.detach().to("cpu").contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen and tensor.numel() > 0:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[key] = tensor
    return out


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_safetensors(
    state_dict: Mapping[str, torch.Tensor],
    path: Path,
    *,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write `state_dict` to `path` atomically (temp file + fsync + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        safetensors.torch.save_file(
            _unshared(state_dict), str(tmp), metadata=dict(metadata) if metadata else None
        )
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def convert_to_safetensors(
    src: Path,
    dst: Path,
    *,
    kind: CheckpointKind,
    module: nn.Module | Callable[[StateDict], nn.Module] | None = None,
    computed_buffers: frozenset[str] | None = None,
) -> StateDict:
    """Read `src` safely, optionally verify it against `module`, and write it to `dst`.

    `module` (if given) must strictly accept the main part: the renderer, the generator without
    its audio encoder, or the audio encoder. It may also be a factory called with the main
    part's state dict (to build the module of the version the keys say). Returns the main
    part's state dict.
    """
    published: StateDict
    if kind == "renderer":
        main = renderer_state_dict(src)
        published = {RENDERER_PREFIX + k: v for k, v in main.items()}
    elif kind == "generator":
        weights = generator_state_dicts(src)
        main = weights.model
        published = {GENERATOR_PREFIX + k: v for k, v in main.items()}
        audio_prefix = GENERATOR_PREFIX + AUDIO_ENCODER_PREFIX
        published.update({audio_prefix + k: v for k, v in (weights.audio_encoder or {}).items()})
    else:
        main = wav2vec2_state_dict(src)
        published = {WAV2VEC2_PREFIX + k: v for k, v in main.items()}
    if module is not None:
        target = module if isinstance(module, nn.Module) else module(main)
        load_strict(target, main, computed_buffers=computed_buffers)
    write_safetensors(published, dst, metadata={"format": "pt", "kind": kind, "source": src.name})
    return main
