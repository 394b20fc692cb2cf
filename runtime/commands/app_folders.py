"""Check the app's own folders before a command uses them (the CLI's main thread).

`IMTALKER_DATA_DIR` / `IMTALKER_CACHE_DIR` (or the per-user defaults) must be folders, or not
exist yet below a folder: a file in their place is named with the variable that points there,
instead of a NotADirectoryError from deep inside the model store.
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime.core import paths
from runtime.core.validate import ValidationError


def _check_root(path: Path, *, what: str) -> None:
    probe = path
    while True:
        if probe.exists() or probe.is_symlink():
            if not probe.is_dir():
                where = "it" if probe == path else f"{probe}, on its way,"
                raise ValidationError(
                    f"the {what} {path} cannot be used: {where} is a file, not a folder",
                    subject=what,
                )
            if not os.access(probe, os.W_OK | os.X_OK):
                raise ValidationError(
                    f"the {what} {path} cannot be used: {probe} is not writable", subject=what
                )
            return
        if probe.parent == probe:
            return
        probe = probe.parent


def _label(env: str, default: str) -> str:
    return f"{default} ({env})" if os.environ.get(env) else default


def check_app_folders() -> None:
    """ValidationError when the data or cache folder is unusable."""
    _check_root(paths.data_dir(), what=_label("IMTALKER_DATA_DIR", "data folder"))
    _check_root(paths.cache_dir(), what=_label("IMTALKER_CACHE_DIR", "cache folder"))
