"""Deterministic "recipe" weights from a golden manifest (see tests/data/golden/README.md).

The golden outputs of the reference implementation were computed with these weights, so a
port that loads them must reproduce the golden outputs exactly (within float tolerance).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from runtime.model.versions import V1, ModelVersion, version

_DTYPES: Mapping[str, torch.dtype] = {
    "float32": torch.float32,
    "torch.float32": torch.float32,
    "float64": torch.float64,
    "torch.float64": torch.float64,
    "int64": torch.int64,
    "torch.int64": torch.int64,
    "bool": torch.bool,
    "torch.bool": torch.bool,
}


@dataclass(frozen=True)
class ManifestEntry:
    key: str
    shape: tuple[int, ...]
    dtype: str
    recipe: str
    mean: float
    std: float


@dataclass(frozen=True)
class Manifest:
    checkpoint_key_prefix: str
    note: str
    entries: tuple[ManifestEntry, ...]

    @property
    def random_keys(self) -> tuple[str, ...]:
        return tuple(e.key for e in self.entries if e.recipe == "random")

    @property
    def computed_keys(self) -> tuple[str, ...]:
        return tuple(e.key for e in self.entries if e.recipe == "computed")


def golden_version_dir(golden_dir: Path, model_version: str | ModelVersion) -> Path:
    """Folder of one version's manifests and golden outputs under the golden root: the first
    release's sit in the root itself, every later version's in the subfolder of its name."""
    v = version(model_version) if isinstance(model_version, str) else model_version
    return golden_dir if v == V1 else golden_dir / v.name


def read_manifest(path: Path) -> Manifest:
    raw: dict[str, Any] = json.loads(path.read_text())
    entries = tuple(
        ManifestEntry(
            key=str(e["key"]),
            shape=tuple(int(s) for s in e["shape"]),
            dtype=str(e["dtype"]),
            recipe=str(e["recipe"]),
            mean=float(e.get("mean") or 0.0),
            std=float(e.get("std") or 0.0),
        )
        for e in raw["entries"]
    )
    return Manifest(
        checkpoint_key_prefix=str(raw.get("checkpoint_key_prefix", "")),
        note=str(raw.get("note", "")),
        entries=entries,
    )


def recipe_tensor(entry: ManifestEntry) -> torch.Tensor:
    """The value the golden run used for one `recipe == "random"` entry."""
    if entry.recipe != "random":
        raise ValueError(f"{entry.key}: recipe {entry.recipe!r} is computed by the module itself")
    g = torch.Generator().manual_seed(zlib.crc32(entry.key.encode()) & 0x7FFFFFFF)
    value = torch.randn(entry.shape, generator=g, dtype=torch.float32) * entry.std + entry.mean
    dtype = _DTYPES.get(entry.dtype, torch.float32)
    return value.to(dtype)


def recipe_state_dict(manifest: Manifest) -> dict[str, torch.Tensor]:
    """Every random-recipe entry of the manifest (computed buffers are left to the module)."""
    return {e.key: recipe_tensor(e) for e in manifest.entries if e.recipe == "random"}
