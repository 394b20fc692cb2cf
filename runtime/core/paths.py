"""Where the app keeps its files (any thread): platformdirs, overridable for tests.

`IMTALKER_DATA_DIR`, `IMTALKER_CACHE_DIR` and `IMTALKER_CONFIG_DIR` replace the per-user roots,
so tests never touch a real user's files. `check_root` turns a file (or an unwritable folder)
where one of these folders must be into one sentence naming the variable that points there,
instead of a NotADirectoryError from deep inside whatever first writes to it.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from runtime.core.validate import ValidationError

APP_NAME = "imtalker-cam"

DATA_ENV = "IMTALKER_DATA_DIR"
CACHE_ENV = "IMTALKER_CACHE_DIR"
CONFIG_ENV = "IMTALKER_CONFIG_DIR"


def _root(env: str, default: str) -> Path:
    override = os.environ.get(env)
    return Path(override) if override else Path(default)


def data_dir() -> Path:
    return _root(DATA_ENV, platformdirs.user_data_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    return _root(CACHE_ENV, platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    return _root(CONFIG_ENV, platformdirs.user_config_dir(APP_NAME, appauthor=False))


def model_store_dir() -> Path:
    return data_dir() / "models"


def label(what: str, env: str) -> str:
    """`what`, naming `env` when it is set (so the user knows where the path came from)."""
    return f"{what} ({env}={os.environ[env]})" if os.environ.get(env) else what


def check_root(path: Path, *, what: str, writable: bool = True) -> Path:
    """`path` if it is a folder, or does not exist yet below a folder (that is writable when
    `writable`); else ValidationError naming `what` and the file in the way. Creates nothing."""
    probe = path
    while True:
        if probe.exists() or probe.is_symlink():
            if not probe.is_dir():
                where = "it" if probe == path else f"{probe}, on its way,"
                raise ValidationError(
                    f"the {what} {path} cannot be used: {where} is a file, not a folder",
                    subject=what,
                )
            if writable and not os.access(probe, os.W_OK | os.X_OK):
                raise ValidationError(
                    f"the {what} {path} cannot be used: {probe} is not writable", subject=what
                )
            return path
        if probe.parent == probe:
            return path
        probe = probe.parent


def check_app_roots(*, config: bool = False) -> None:
    """ValidationError when the data or cache folder (and the config folder, for the GUI)
    cannot be used."""
    check_root(data_dir(), what=label("data folder", DATA_ENV))
    check_root(cache_dir(), what=label("cache folder", CACHE_ENV))
    if config:
        check_root(config_dir(), what=label("settings folder", CONFIG_ENV))
