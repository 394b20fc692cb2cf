"""Which IMTalker model version a folder of compiled graphs holds (caller's thread; reads a few
small JSON files). Free of ONNX Runtime, so the GUI can ask it too.
"""

from __future__ import annotations

import json
from pathlib import Path

from runtime.model.contract import GRAPHS
from runtime.model.versions import V1, VERSIONS, ModelVersion


class GraphVersionError(ValueError):
    """The graphs' config files name an unknown model version, or several."""


def graphs_version(graph_dir: Path) -> ModelVersion:
    """The model version the graphs in `graph_dir` were exported from.

    Read from the `"model_version"` of the config JSON the exporter writes beside each graph
    (every one present must agree). Graphs without any config JSON predate model versions and
    are v1's. Raises ContractError for an unknown or inconsistent version.
    """
    found: dict[str, str] = {}
    for spec in GRAPHS:
        path = graph_dir / spec.config_filename
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise GraphVersionError(f"unreadable graph configuration {path}: {exc}") from None
        name = raw.get("model_version") if isinstance(raw, dict) else None
        if name is not None:
            found[spec.name] = str(name)
    names = set(found.values())
    if not names:
        return V1
    if len(names) > 1:
        listed = ", ".join(f"{graph} {name}" for graph, name in sorted(found.items()))
        raise GraphVersionError(f"the graphs in {graph_dir} mix model versions ({listed})")
    (name,) = names
    if name not in VERSIONS:
        raise GraphVersionError(
            f"the graphs in {graph_dir} are of IMTalker model {name!r}, which this version of "
            f"imtalker-cam does not know (known: {', '.join(VERSIONS)}); update imtalker-cam"
        )
    return VERSIONS[name]
