"""Which files the model loader reads from a weights folder (any thread; dependency-free).

The one statement of it: `models.loading` reads exactly the file `chosen()` names for each
part, the compiled-graph cache key covers exactly those files (`compiled_cache.source_digests`),
and the exporter reports the digest of each file it read (`SOURCES_FILE`), which must equal
the key's. So a stray `renderer.safetensors` dropped beside the checkpoints gets graphs of its
own, never ones built from other files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

SOURCES_FILE = "sources.json"
"""Written by the exporter into its output folder: {relpath: sha256} of every file it read."""


@dataclass(frozen=True, kw_only=True)
class WeightsPart:
    name: str
    candidates: tuple[str, ...]  # POSIX paths relative to the folder, preferred first


PARTS: tuple[WeightsPart, ...] = (
    # safetensors first: written by `python -m models.to_safetensors`, no unpickling at all.
    WeightsPart(name="renderer", candidates=("renderer.safetensors", "renderer.ckpt")),
    WeightsPart(name="generator", candidates=("generator.safetensors", "generator.ckpt")),
    WeightsPart(
        name="audio_encoder",
        candidates=(
            "wav2vec2-base-960h/model.safetensors",
            "wav2vec2-base-960h/pytorch_model.bin",
        ),
    ),
)


def local_path(root: Path, relpath: str) -> Path:
    return root.joinpath(*PurePosixPath(relpath).parts)


def chosen(root: Path) -> dict[str, str]:
    """Part name -> the relpath the loader reads in `root` (parts with no file are absent)."""
    out: dict[str, str] = {}
    for part in PARTS:
        for relpath in part.candidates:
            if local_path(root, relpath).is_file():
                out[part.name] = relpath
                break
    return out
