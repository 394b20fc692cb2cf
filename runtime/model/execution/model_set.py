"""Opening a compiled model's graphs on the chosen backend (caller's thread: the CLI's main
thread, the app's session worker): ONNX Runtime's `GraphSession` or OpenVINO's
`OpenVinoSession`, both checked against the contract; on CoreML the fixed-shape graphs are
`StaticShapeSession`s, opened per input shape."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from runtime.model.compile.graph_version import graphs_version
from runtime.model.contract import graphs
from runtime.model.execution.sessions import (
    OPENVINO,
    GraphSession,
    ModelSet,
    SessionOptions,
    requested_providers,
)
from runtime.model.execution.static_shapes import StaticShapeSession, wants_static

logger = logging.getLogger(__name__)


def open_model_set(
    graph_dir: Path,
    *,
    options: SessionOptions,
    names: Sequence[str] | None = None,
) -> ModelSet:
    """Sessions for the graphs in `graph_dir` (all, or `names`), each checked against the
    contract of the model version the graphs say they are (`graphs_version`), on
    `options.backend` (ONNX Runtime's `GraphSession` or OpenVINO's `OpenVinoSession`)."""
    version = graphs_version(graph_dir)
    wanted = [g for g in graphs(version) if names is None or g.name in names]
    session_type: type[GraphSession] = GraphSession
    if options.backend == OPENVINO:
        # Imported here: openvino is optional where it has no wheels.
        from runtime.model.execution.openvino_sessions import OpenVinoSession

        session_type = OpenVinoSession
    requested = requested_providers(options) if options.backend != OPENVINO else []
    sessions = {
        g.name: (StaticShapeSession if wants_static(g, requested) else session_type)(
            g, graph_dir / g.filename_for(options.graph_precision), options=options
        )
        for g in wanted
    }
    models = ModelSet(sessions=sessions, version=version)
    logger.info(
        "%d graphs of IMTalker %s from %s on %s",
        len(sessions),
        version.name,
        graph_dir,
        models.summary(),
    )
    return models
