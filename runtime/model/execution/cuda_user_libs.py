"""The CUDA runtime fetched into the user's folder (`cuda_fetch` puts it there): where it goes,
whether a fetch finished, and loading it (any thread; loading happens once, before the first
CUDA session). Apart from the fetch so that `cuda_env` can load it without the downloader."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from runtime.core import paths

logger = logging.getLogger(__name__)

MARKER_FILE = "installed.json"
"""Written last by a finished fetch; a folder without it is an interrupted one."""


def user_library_dir(build_cuda: str | None) -> Path | None:
    """`<data dir>/cuda/cu<major>/lib`, where fetched libraries go; None for a CPU build."""
    major = (build_cuda or "").split(".", 1)[0]
    if not major.isdigit():
        return None
    return paths.data_dir() / "cuda" / f"cu{major}" / "lib"


def is_installed(folder: Path) -> bool:
    """A finished fetch leaves its marker last; a folder without it is an interrupted one."""
    return (folder / MARKER_FILE).is_file()


def preload_from(
    folder: Path, *, preload: Callable[..., object] | None = None
) -> tuple[bool, str | None]:
    """Load the fetched CUDA and cuDNN libraries (ONNX Runtime's `preload_dlls`); (done,
    error) as `cuda_env.preload_cuda_libraries` reports it."""
    if not is_installed(folder):
        return False, None
    if preload is None:
        try:
            import onnxruntime as ort
        except ImportError:
            return False, None
        preload = getattr(ort, "preload_dlls", None)
        if preload is None:
            return False, None
    try:
        preload(cuda=True, cudnn=True, msvc=True, directory=str(folder))
    except Exception as exc:  # a finding for doctor and the log, not a crash
        logger.warning("preloading the fetched CUDA runtime failed: %s", exc)
        return False, f"{type(exc).__name__}: {exc}"
    return True, None
