"""Find the compiled graphs for a set of checkpoints (caller's thread; may take minutes the
first time, when it converts).

Two sources: the app's own model store (downloaded or imported, verified), or a folder the user
names with `--weights`, laid out like the published model repository. That folder is used in
place and never written to: its files are hashed to find (or build) their compiled graphs in
the cache.
"""

from __future__ import annotations

import logging
from pathlib import Path

from runtime.model.compile import cache as compiled_cache
from runtime.model.compile.cache import ConversionCallback
from runtime.model.files import sha256_file
from runtime.model.store.errors import ModelStoreError
from runtime.model.store.model_store import ModelStore
from runtime.model.store.records import StoreRecord

logger = logging.getLogger(__name__)


class ModelNotReadyError(ModelStoreError):
    """No usable model: files missing; the message says what to do."""


class WeightsFolder(ModelStore):
    """A read-only folder of checkpoints in the published layout."""

    def read_record(self) -> StoreRecord:
        # Never the store's record: a `store.json` in the user's folder is not ours to read,
        # set aside or rebuild (the folder is never written to); its files are hashed instead.
        return StoreRecord()

    def verified_digests(self) -> dict[str, str] | None:
        digests: dict[str, str] = {}
        for entry in self.manifest:
            path = self.root / entry.path
            if not path.is_file():
                return None
            digests[entry.path] = sha256_file(path)
        return digests

    def missing(self) -> list[str]:
        return [e.path for e in self.manifest if not (self.root / e.path).is_file()]

    @classmethod
    def complete(cls, root: Path) -> WeightsFolder:
        """The folder at `root`, or ModelNotReadyError naming every missing file."""
        folder = cls(root)
        missing = folder.missing()
        if missing:
            raise ModelNotReadyError(
                f"{root} is not laid out like the IMTalker model repository; missing: "
                + ", ".join(missing)
            )
        return folder


def resolve_graphs(
    weights: Path | None = None,
    *,
    progress: ConversionCallback | None = None,
) -> Path:
    """The folder of verified compiled graphs, converting once if needed."""
    if weights is not None:
        return compiled_cache.convert(WeightsFolder.complete(weights), progress=progress)
    store = ModelStore()
    ready = compiled_cache.converted_dir(store)
    if ready is not None:
        return ready
    if store.verified_digests() is None:
        raise ModelNotReadyError(
            "the IMTalker model is not installed: run `imtalker-cam models download` "
            "(or `imtalker-cam models import FOLDER`), or pass --weights FOLDER"
        )
    return compiled_cache.convert(store, progress=progress)
