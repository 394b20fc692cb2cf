"""Where the `models` package is and the environment for a child process that imports it (the
exporter, the checkpoint inspector); called on whichever thread starts the child.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The source tree this `runtime` was imported from (runtime/model/ -> the root)."""
    return Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    """The environment for a child that imports `models` as this process would."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    root = project_root()
    if (root / "models").is_dir() and (root / "pyproject.toml").is_file():
        # Running from a source tree: let the child import `models` as the parent would. An
        # installed copy (site-packages) is on the child's path already, and putting
        # site-packages ahead of the standard library would be wrong.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    return env
