"""Which model version a checkpoint is, from its keys alone, and the modules of each version.

The marker rules live in `runtime.model.versions`; this module adds what only the model code
knows: each version's full key set, so that a key set fitting no version can be described
("most resembles v2, 31 keys differ") instead of failing deep inside strict loading.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable

import torch
from torch import nn

from models.checkpoint import computed_buffer_names
from models.checkpoint.errors import ModelPart, ModelVersionMismatchError, UnknownModelVersionError
from models.generator.config import GeneratorConfig
from models.generator.generator import FMGenerator
from models.renderer.config import RendererConfig
from models.renderer.renderer import IMTRenderer
from runtime.model.versions import (
    VERSIONS,
    ModelVersion,
    closest_version,
    detect_generator_version,
    detect_renderer_version,
)

logger = logging.getLogger(__name__)


def build_renderer(version: ModelVersion) -> IMTRenderer:
    return IMTRenderer(RendererConfig.for_version(version))


def build_generator(version: ModelVersion) -> FMGenerator:
    return FMGenerator(GeneratorConfig.for_version(version))


def _build(part: ModelPart, version: ModelVersion) -> nn.Module:
    return build_renderer(version) if part == "renderer" else build_generator(version)


@functools.cache
def expected_keys(part: ModelPart, version: ModelVersion) -> tuple[frozenset[str], frozenset[str]]:
    """(every key `version`'s module loads, the computed ones a checkpoint may omit)."""
    # On the meta device only names and shapes exist: no memory, no initialisation cost.
    with torch.device("meta"):
        module = _build(part, version)
    keys = frozenset(module.state_dict()) | {n for n, _ in module.named_buffers()}
    return keys, computed_buffer_names(module)


def _fits(part: ModelPart, version: ModelVersion, keys: frozenset[str]) -> bool:
    want, optional = expected_keys(part, version)
    return keys <= want and not (want - keys - optional)


def checkpoint_version(part: ModelPart, keys: Iterable[str]) -> ModelVersion:
    """The version whose `part` module takes exactly these (module, unprefixed) keys.

    Raises UnknownModelVersionError naming the closest version when the markers fit none or
    the key set does not fit the version they name; the key lists go to the debug log.
    """
    have = frozenset(keys)
    detect = detect_renderer_version if part == "renderer" else detect_generator_version
    found = detect(have)
    if found is not None and _fits(part, found, have):
        return found
    sets = {name: expected_keys(part, v) for name, v in VERSIONS.items()}
    resemblance = closest_version(
        have,
        {name: want for name, (want, _) in sets.items()},
        optional={name: optional for name, (_, optional) in sets.items()},
    )
    logger.debug(
        "%s checkpoint fits no known version; closest %s. missing: %s; unexpected: %s",
        part,
        resemblance.version.name,
        ", ".join(resemblance.missing),
        ", ".join(resemblance.unexpected),
    )
    raise UnknownModelVersionError(part, resemblance)


def pair_version(renderer_keys: Iterable[str], generator_keys: Iterable[str]) -> ModelVersion:
    """The one version of a renderer + generator pair; a mixed pair is refused."""
    renderer = checkpoint_version("renderer", renderer_keys)
    generator = checkpoint_version("generator", generator_keys)
    if renderer != generator:
        raise ModelVersionMismatchError(renderer=renderer, generator=generator)
    return renderer
