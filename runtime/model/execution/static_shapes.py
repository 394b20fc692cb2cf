"""Static-shape copies of the fixed-shape graphs for ONNX Runtime's CoreML provider (built and
run on the caller's thread; a new input-shape signature is prepared on its first run, which in
the app is the inference thread).

CoreML's ML Program format compiles partitions for static input shapes; our graphs have dynamic
axes (batch, frames, samples: `runtime.model.contract`). The renderer and the velocity graph
are called with a few fixed shapes (`CUDA_GRAPH_GRAPHS`: the renderer at the hop's batch, the
velocity per step), so when CoreML is asked for they are opened per input-shape signature on a
copy of their .onnx with those shapes fixed (`onnx.tools.update_model_dims`, and the symbolic
axes they name fixed in the recorded intermediate shapes; not `onnxruntime.tools`, which imports
torch where it is installed), as OpenVINO
compiles them per signature (`runtime.model.execution.openvino_sessions`). A copy is written
once into the CoreML cache folder (`SessionOptions.coreml_cache_dir`, ``static/``) under the
graph's content hash and the shapes, and carries the same key as its ``COREML_CACHE_KEY``:
CoreML's own cache of compiled programs is keyed by the model's path and input names, not its
shapes. The last `MAX_STATIC` signatures stay open. The graphs with truly variable lengths
(audio) keep their dynamic axes: CoreML takes the partitions it can and the CPU the rest.

Writing a copy needs the onnx package, which only the convert extra installs (the project keeps
it out of the base dependencies and the bundle): where it is missing the dynamic graph is opened
as before, with a notice saying how to get the static copies.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import onnxruntime as ort

from runtime.core import paths
from runtime.core.files import atomic_write_bytes
from runtime.model.contract import GraphSpec
from runtime.model.execution.providers import COREML
from runtime.model.execution.sessions import (
    CUDA_GRAPH_GRAPHS,
    ContractError,
    GraphSession,
    contract_problems,
)

if TYPE_CHECKING:
    import onnx

__all__ = [
    "MAX_STATIC",
    "StaticShapeSession",
    "fixed_copy",
    "onnx_available",
    "static_key",
    "wants_static",
]

logger = logging.getLogger(__name__)

MAX_STATIC = 2
"""Input-shape signatures kept open per graph (each session holds its own copy of the weights),
as OpenVINO's `MAX_COMPILED`."""
STATIC_DIR = "static"
"""The copies' folder inside the CoreML cache folder."""
CACHE_KEY = "COREML_CACHE_KEY"
"""The model metadata CoreML keys its compiled-program cache by (at most 64 characters of
letters, digits and underscores)."""

Shapes = Mapping[str, tuple[int, ...]]
Signature = tuple[tuple[int, ...], ...]


def wants_static(spec: GraphSpec, requested: Sequence[str]) -> bool:
    """Whether `spec` is opened per input shape: CoreML first among the providers asked for,
    and a graph called with a few fixed shapes."""
    return bool(requested) and requested[0] == COREML and spec.name in CUDA_GRAPH_GRAPHS


def onnx_available() -> bool:
    """Whether the onnx package is there to write the copies (nothing is imported to find out;
    a broken install counts as absent, as in `runtime.model.convert_extra`)."""
    try:
        return importlib.util.find_spec("onnx") is not None
    except (ImportError, ValueError):
        return False


def content_digest(path: Path) -> str:
    """The SHA-256 of the graph file, hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def static_key(digest: str, shapes: Shapes) -> str:
    """The copy's name and CoreML cache key: the graph's content hash and a hash of the input
    shapes (by name, sorted)."""
    listed = json.dumps(sorted((name, list(shape)) for name, shape in shapes.items()))
    return f"{digest[:32]}_{hashlib.sha256(listed.encode()).hexdigest()[:16]}"


def fixed_copy(path: Path, shapes: Shapes, *, folder: Path, digest: str | None = None) -> Path:
    """A copy of the graph at `path` with every input's shape fixed to `shapes` (all inputs),
    in `folder`; written once, found there after. `digest`: the file's `content_digest`, when
    the caller has it."""
    key = static_key(digest or content_digest(path), shapes)
    out = folder / f"{path.name.removesuffix('.onnx')}.{key}.onnx"
    if out.exists():
        return out
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load(str(path))
    sizes: dict[str, int] = {}  # each symbolic axis's size, from the inputs it appears in
    inputs: dict[str, list[int | str]] = {}
    for value in model.graph.input:
        if value.name not in shapes:  # an initializer listed as an input (older exporters)
            inputs[value.name] = _dims(value)
            continue
        inputs[value.name] = list(shapes[value.name])
        for dim, size in zip(_dims(value), shapes[value.name], strict=True):
            if isinstance(dim, str):
                sizes[dim] = size
    outputs = {v.name: [sizes.get(d, d) if isinstance(d, str) else d for d in _dims(v)]
               for v in model.graph.output}  # fmt: skip
    update_inputs_outputs_dims(model, inputs, outputs)
    for value in model.graph.value_info:  # intermediate shapes the exporter recorded
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in sizes:
                dim.dim_value = sizes[dim.dim_param]
    kept = [p for p in model.metadata_props if p.key != CACHE_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=CACHE_KEY, value=key)
    atomic_write_bytes(out, model.SerializeToString())
    logger.info("wrote a static-shape copy of %s: %s", path.name, out)
    return out


@dataclass(frozen=True)
class _Arg:
    """A graph input or output as ONNX Runtime's `NodeArg` gives it."""

    name: str
    type: str
    shape: list[int | str | None]


class _GraphIO:
    """A graph's inputs and outputs read from the file, for `contract_problems` (the dynamic
    graph itself is never opened here)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        initializers = {t.name for t in model.graph.initializer}
        self._inputs = [_arg(v) for v in model.graph.input if v.name not in initializers]
        self._outputs = [_arg(v) for v in model.graph.output]

    def get_inputs(self) -> list[_Arg]:
        return self._inputs

    def get_outputs(self) -> list[_Arg]:
        return self._outputs


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    """A graph input's or output's axes: sizes, symbolic names, -1 where neither is given."""
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or -1)
        for d in value.type.tensor_type.shape.dim
    ]


def _arg(value: onnx.ValueInfoProto) -> _Arg:
    import onnx

    dtype = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower()
    dims = [None if d == -1 else d for d in _dims(value)]
    return _Arg(name=value.name, type=f"tensor({dtype})", shape=dims)


class StaticShapeSession(GraphSession):
    """A fixed-shape graph on CoreML: one ONNX Runtime session per input-shape signature, each
    on a static-shape copy (see the module docstring). The contract is checked on the graph
    file; `providers` are the last opened session's. `static`: False where onnx is missing and
    the dynamic graph was opened instead."""

    max_shapes = MAX_STATIC

    def _open(self, path: Path, so: ort.SessionOptions) -> None:
        self.static = onnx_available()
        if not self.static:
            self.notices.append(
                "CoreML runs this graph with dynamic shapes: its static-shape copies need the "
                "onnx package (pip install onnx)"
            )
            logger.warning("%s: %s", self.spec.name, self.notices[-1])
            super()._open(path, so)
            return
        import onnx

        problems = contract_problems(self.spec, _GraphIO(onnx.load(str(path))))
        if problems:
            raise ContractError(
                f"graph {self.spec.name!r} at {path} does not match the contract: "
                + "; ".join(problems)
            )
        self._so = so
        self._digest: str | None = None
        self._folder = (self.options.coreml_cache_dir or paths.cache_dir() / "coreml") / STATIC_DIR
        self._sessions: OrderedDict[Signature, ort.InferenceSession] = OrderedDict()
        # Each binding runs on the session it was made from (and keeps that one alive).
        self._bound: weakref.WeakKeyDictionary[ort.IOBinding, ort.InferenceSession] = (
            weakref.WeakKeyDictionary()
        )
        self.copies: OrderedDict[Signature, Path] = OrderedDict()
        """The static-shape copies open now, by signature (`doctor`, tests)."""

    def full_shapes(self, shapes: Shapes) -> dict[str, tuple[int, ...]]:
        """Every input's shape: `shapes`, and the contract's for inputs bound once with a
        fixed shape (the renderer's avatar tensors)."""
        out: dict[str, tuple[int, ...]] = {}
        for spec in self.spec.inputs:
            shape = shapes.get(spec.name)
            if shape is None:
                if not all(isinstance(d, int) for d in spec.shape):
                    raise KeyError(f"{self.spec.name}: the shape of {spec.name!r} is needed")
                shape = tuple(int(d) for d in spec.shape)
            out[spec.name] = tuple(shape)
        return out

    def _session_for(self, shapes: Shapes) -> ort.InferenceSession:
        if not self.static:
            return super()._session_for(shapes)
        full = self.full_shapes(shapes)
        key = tuple(full[name] for name in self.spec.input_names)
        session = self._sessions.get(key)
        if session is not None:
            self._sessions.move_to_end(key)
            return session
        if self._digest is None:
            self._digest = content_digest(self.path)
        copy = fixed_copy(self.path, full, folder=self._folder, digest=self._digest)
        session = self._create(copy, self._so)
        self._opened(session)
        logger.info("%s: %s on a static-shape copy for %s", self.spec.name, self.provider, key)
        self._sessions[key] = session
        self.copies[key] = copy
        while len(self._sessions) > MAX_STATIC:
            old, _ = self._sessions.popitem(last=False)
            self.copies.pop(old, None)
        return session

    def io_binding(self, shapes: Shapes | None = None) -> ort.IOBinding:
        if not self.static:
            return super().io_binding(shapes)
        if shapes is None:
            raise TypeError(f"{self.spec.name}: a static-shape graph binds per input shape")
        session = self._session_for(shapes)
        binding = session.io_binding()
        self._bound[binding] = session
        return binding

    def run_with_binding(
        self, binding: ort.IOBinding, *, run_options: ort.RunOptions | None = None
    ) -> None:
        if not self.static:
            super().run_with_binding(binding, run_options=run_options)
            return
        self._bound[binding].run_with_iobinding(binding, run_options)

    def summary(self) -> str:
        """As `GraphSession.summary`, saying that static-shape copies run:
        ``CoreML, 2 threads, static shapes``."""
        text = super().summary()
        if not self.static:
            return text
        head, paren, rest = text.partition(" (")
        return f"{head}, static shapes{paren}{rest}"
