"""`imtalker-cam doctor --graphs [DIR]`: the portability report of a folder of ONNX graphs
(main thread; one pass over each file).

Per graph, the ops CoreML ML Program, DirectML and OpenVINO GPU leave to the CPU and how many
partitions result (`runtime.model.portability`). Without DIR, the installed compiled graphs.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from runtime.model import portability
from runtime.model.onnx_nodes import OnnxReadError, read_graph


def installed_graphs_dir() -> Path | None:
    """The compiled-graph folder of the installed model, or None when it is not converted."""
    from runtime.core import paths
    from runtime.model.compile import cache as compiled_cache
    from runtime.model.store.model_store import ModelStore

    return compiled_cache.converted_dir(ModelStore(paths.model_store_dir()))


def collect(folder: Path) -> dict[str, Any]:
    """The report as plain data: every `*.onnx` of `folder` in name order, or its read error."""
    doc: dict[str, Any] = {"folder": str(folder), "backends": list(portability.BACKENDS)}
    graphs: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.onnx")):
        try:
            graph = read_graph(path)
        except (OSError, OnnxReadError) as exc:
            graphs.append({"graph": path.name, "error": str(exc)})
            continue
        graphs.append(asdict(portability.assess(path.name, graph)))
    doc["graphs"] = graphs
    return doc


def format_report(doc: dict[str, Any]) -> str:
    lines = [f"Portability of the graphs in {doc['folder']} (op types only; see README):"]
    if not doc["graphs"]:
        lines.append("  no *.onnx files")
    for graph in doc["graphs"]:
        if "error" in graph:
            lines.append(f"  {graph['graph']}: unreadable ({graph['error']})")
            continue
        lines.append(
            f"  {graph['graph']}: {graph['nodes']} nodes, {graph['folded']} folded as constants"
        )
        for verdict in graph["backends"]:
            missing = verdict["unsupported"]
            if not missing:
                what = "all ops supported"
            else:
                what = "falls back: " + ", ".join(f"{op} x{n}" for op, n in missing.items())
            lines.append(f"    {verdict['backend']}: {verdict['partitions']} partition(s); {what}")
    return "\n".join(lines)
