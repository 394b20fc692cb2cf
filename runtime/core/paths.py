"""Where the app keeps its files (any thread): platformdirs, overridable for tests.

`IMTALKER_DATA_DIR`, `IMTALKER_CACHE_DIR` and `IMTALKER_CONFIG_DIR` replace the per-user roots,
so tests never touch a real user's files.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "imtalker-cam"


def _root(env: str, default: str) -> Path:
    override = os.environ.get(env)
    return Path(override) if override else Path(default)


def data_dir() -> Path:
    return _root("IMTALKER_DATA_DIR", platformdirs.user_data_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    return _root("IMTALKER_CACHE_DIR", platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def config_dir() -> Path:
    return _root("IMTALKER_CONFIG_DIR", platformdirs.user_config_dir(APP_NAME, appauthor=False))


def model_store_dir() -> Path:
    return data_dir() / "models"
