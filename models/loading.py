"""Build the three PyTorch models from a folder laid out like the published model repository
(`renderer.ckpt`, `generator.ckpt`, `wav2vec2-base-960h/`), strictly and safely (main thread of
the conversion process)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from models.audio_encoder import AudioEncoder
from models.checkpoint import (
    CheckpointNotFoundError,
    StateDict,
    StateDictMismatchError,
    generator_state_dicts,
    load_strict,
    renderer_state_dict,
    wav2vec2_state_dict,
)
from models.generator.generator import FMGenerator
from models.renderer.renderer import IMTRenderer
from models.versioning import build_generator, build_renderer, pair_version
from runtime.model import loader_files
from runtime.model.versions import ModelVersion

logger = logging.getLogger(__name__)

RENDERER_FILE = "renderer.ckpt"
GENERATOR_FILE = "generator.ckpt"
WAV2VEC2_DIR = "wav2vec2-base-960h"
# Written by `python -m models.to_safetensors`; preferred when present (no unpickling at all).
# Which file is read for each part is decided by runtime.model.loader_files alone.
RENDERER_SAFETENSORS = "renderer.safetensors"
GENERATOR_SAFETENSORS = "generator.safetensors"
WAV2VEC2_SAFETENSORS = f"{WAV2VEC2_DIR}/model.safetensors"


@dataclass(frozen=True)
class LoadedModels:
    renderer: IMTRenderer
    generator: FMGenerator
    audio_encoder: AudioEncoder
    version: ModelVersion
    """Detected from the checkpoints' keys (never from file names)."""
    sources: dict[str, str] = field(default_factory=dict)
    """SHA-256 of every file read, by path relative to the weights folder (hashed just
    before it was read), so the compiled-graph cache can prove which files built it."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def _read(weights: Path, part: str, chosen: dict[str, str], sources: dict[str, str]) -> Path:
    """The file the loader reads for `part`, hashed into `sources` first."""
    relpath = chosen.get(part)
    if relpath is None:
        candidates = next(p.candidates for p in loader_files.PARTS if p.name == part)
        raise CheckpointNotFoundError(loader_files.local_path(weights, candidates[-1]))
    path = loader_files.local_path(weights, relpath)
    sources[relpath] = _sha256(path)
    return path


def _load(module: nn.Module, state_dict: StateDict) -> None:
    """load_strict, with the full key lists in the debug log (the exception stays short)."""
    try:
        load_strict(module, state_dict)
    except StateDictMismatchError as exc:
        logger.debug("%s", exc.details)
        raise


def load_models(weights: Path) -> LoadedModels:
    """All three models in eval mode, built for the version the checkpoints' keys say.

    A renderer and a generator of different versions raise ModelVersionMismatchError, a
    checkpoint of no known version UnknownModelVersionError, both before any model is built.
    The wav2vec2 folder's weights win over a copy inside generator.ckpt (the published files
    hold equal copies).
    """
    chosen = loader_files.chosen(weights)
    sources: dict[str, str] = {}
    renderer_weights = renderer_state_dict(_read(weights, "renderer", chosen, sources))
    gen_weights = generator_state_dicts(_read(weights, "generator", chosen, sources))
    version = pair_version(renderer_weights, gen_weights.model)
    logger.info("model version %s", version.name)
    renderer = build_renderer(version)
    _load(renderer, renderer_weights)
    generator = build_generator(version)
    _load(generator, gen_weights.model)
    audio_encoder = AudioEncoder()
    folder = weights / WAV2VEC2_DIR
    audio_weights = (
        wav2vec2_state_dict(_read(weights, "audio_encoder", chosen, sources))
        if folder.exists() or gen_weights.audio_encoder is None
        else gen_weights.audio_encoder
    )
    _load(audio_encoder, audio_weights)
    return LoadedModels(
        renderer=renderer.eval(),
        generator=generator.eval(),
        audio_encoder=audio_encoder.eval(),
        version=version,
        sources=sources,
    )
