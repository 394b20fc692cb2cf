"""Check the app's own folders before a command uses them (the CLI's main thread).

`IMTALKER_DATA_DIR` / `IMTALKER_CACHE_DIR` (or the per-user defaults) must be folders, or not
exist yet below a folder: a file in their place is named with the variable that points there,
instead of a NotADirectoryError from deep inside the model store. The rule itself is
`runtime.core.paths.check_root`, shared with the GUI and the model store.
"""

from __future__ import annotations

from runtime.core import paths


def check_app_folders() -> None:
    """ValidationError when the data or cache folder is unusable."""
    paths.check_app_roots()
