"""Finding the model's files among the paths a user names for `models import` (caller's
thread; only looks, never reads or writes a file)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from runtime.model.store.errors import ModelStoreError
from runtime.model.store.records import ExpectedFile


def locate(manifest: Sequence[ExpectedFile], sources: Sequence[Path]) -> dict[str, Path]:
    """Map expected files to the user's files: folders laid out like the repository (or
    holding it up to three levels down, as a Hugging Face cache does, or the wav2vec2
    folder itself), or single files named as in the repository."""
    found: dict[str, Path] = {}
    by_name = {e.name: e.path for e in manifest}
    for source in sources:
        source = Path(source)
        if source.is_file():
            relpath = by_name.get(source.name)
            if relpath is None:
                expected = ", ".join(sorted(by_name))
                raise ModelStoreError(
                    f"{source}: not a file of the model (expected one of: {expected})"
                )
            found.setdefault(relpath, source)
        elif source.is_dir():
            for relpath, path in _locate_in(manifest, source).items():
                found.setdefault(relpath, path)
        else:
            raise ModelStoreError(f"{source}: no such file or folder")
    return found


def _locate_in(manifest: Sequence[ExpectedFile], folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for entry in manifest:
        parts = PurePosixPath(entry.path).parts
        candidates = [folder.joinpath(*parts)]
        if len(parts) > 1 and folder.name == parts[0]:
            candidates.append(folder.joinpath(*parts[1:]))
        hits = [c for c in candidates if c.is_file()]
        if not hits:
            pattern = "/".join(parts)
            hits = sorted(
                p
                for depth in ("*/", "*/*/", "*/*/*/")
                for p in folder.glob(depth + pattern)
                if p.is_file() and not any(q.startswith(".") for q in p.parts[-len(parts) :])
            )
        if len(hits) > 1:
            listed = ", ".join(str(h) for h in hits)
            raise ModelStoreError(f"{entry.path}: found more than one copy ({listed})")
        if hits:
            found[entry.path] = hits[0]
    return found
