"""Which ops of a graph each non-NVIDIA backend cannot run, and how many partitions result
(caller's thread; pure data and arithmetic, no ONNX Runtime).

The op lists are written from the vendors' published tables, from memory of these versions
(this code cannot fetch them; entries marked UNCERTAIN were not confirmed against the page):

- CoreML ML Program: ONNX Runtime docs, "CoreML Execution Provider", table "Supported
  operators / ML Program", ONNX Runtime 1.20-1.22. An allow list: anything not in it falls
  back to the CPU provider.
- DirectML: ONNX Runtime's DmlExecutionProvider kernel registrations ("OperatorKernels.md",
  DirectML 1.13+, ONNX opset 17+). DirectML registers nearly every numeric ONNX op, so this is
  a deny list of what it leaves to the CPU provider.
- OpenVINO GPU: OpenVINO 2026 "Supported Operations - ONNX" (frontend) with the GPU plugin's
  column of "Supported Operations - by inference device". Also nearly complete: a deny list.

Only the op type (and domain) is judged. Each backend also has per-op conditions (CoreML:
constant Slice/Split/Gemm arguments, 2-D pools, static shapes; DirectML and OpenVINO GPU:
some int64 paths run on the CPU), so the counts are a lower bound on what falls back.

ONNX Runtime optimizes a graph before it hands nodes to a provider, so the nodes judged are
the ones left after its two basic passes that matter here: constant folding (a node none of
whose inputs depends on a graph input becomes a weight; `constant_nodes`) and Identity
elimination (Identity counts as supported).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from runtime.model.onnx_nodes import Graph, Node

COREML = "CoreML ML Program"
DIRECTML = "DirectML"
OPENVINO_GPU = "OpenVINO GPU"
BACKENDS = (COREML, DIRECTML, OPENVINO_GPU)

COREML_SUPPORTED = frozenset(
    {
        "Add", "ArgMax", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat",
        "Conv", "ConvTranspose", "DepthToSpace", "Div", "Erf", "Gelu", "Gemm",
        "GlobalAveragePool", "GlobalMaxPool", "GridSample", "GroupNormalization",
        "InstanceNormalization", "LayerNormalization", "LeakyRelu", "MatMul", "Max",
        "MaxPool", "Mul", "Pow", "PRelu", "Reciprocal", "ReduceMax", "ReduceMean",
        "ReduceSum", "Relu", "Reshape", "Resize", "Round", "Shape", "Sigmoid", "Slice",
        "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze",
        # UNCERTAIN: listed for ML Program in later 1.2x releases (1.21/1.22), not in 1.20.
        "Gather", "Exp", "Where", "Equal", "Neg", "Abs", "Flatten", "Pad", "Min",
    }
)  # fmt: skip

# Control flow, sequences, strings and the like: left to the CPU provider.
_HOST_ONLY = frozenset(
    {
        "If", "Loop", "Scan", "SequenceAt", "SequenceConstruct", "SequenceEmpty",
        "SequenceInsert", "SequenceErase", "SequenceLength", "SplitToSequence",
        "ConcatFromSequence", "StringNormalizer", "StringConcat", "StringSplit",
        "RegexFullMatch", "TfIdfVectorizer", "Unique", "Optional", "OptionalHasElement",
        "OptionalGetElement",
    }
)  # fmt: skip

DIRECTML_UNSUPPORTED = _HOST_ONLY | frozenset(
    # UNCERTAIN: registered late or only for some types in DirectML's kernel list.
    {"NonZero", "Multinomial", "AffineGrid", "ImageDecoder", "Col2Im"}
)
OPENVINO_GPU_UNSUPPORTED = _HOST_ONLY | frozenset(
    # UNCERTAIN: the GPU column marks these as CPU-only or absent.
    {"Multinomial", "ImageDecoder", "STFT", "DFT", "Col2Im", "Unique"}
)

# Ops outside the default ONNX domain the backends accept (the exporter writes none today).
_DIRECTML_CONTRIB = frozenset(
    {"com.microsoft:FusedMatMul", "com.microsoft:Gelu", "com.microsoft:SkipLayerNormalization"}
)
_OPENVINO_CONTRIB = frozenset({"com.microsoft:FusedMatMul", "com.microsoft:Gelu"})


def supported(backend: str, node: Node) -> bool:
    """Whether `backend` runs `node`'s op (by op type and domain only)."""
    name = node.qualified
    if name in ("Constant", "Identity"):
        return True
    default_domain = name == node.op_type
    if backend == COREML:
        return default_domain and name in COREML_SUPPORTED
    if backend == DIRECTML:
        return name not in DIRECTML_UNSUPPORTED if default_domain else name in _DIRECTML_CONTRIB
    if backend == OPENVINO_GPU:
        if default_domain:
            return name not in OPENVINO_GPU_UNSUPPORTED
        return name in _OPENVINO_CONTRIB
    raise ValueError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")


def constant_nodes(graph: Graph) -> frozenset[int]:
    """Indices of the nodes constant folding removes: none of their inputs comes, through any
    chain of nodes, from a graph input."""
    live = set(graph.inputs)
    folded = set()
    for i, node in enumerate(graph.nodes):
        if any(name in live for name in node.inputs):
            live.update(node.outputs)
        else:
            folded.add(i)
    return frozenset(folded)


def partitions(nodes: Sequence[Node], ok: Sequence[bool]) -> int:
    """How many pieces the supported nodes form, grouped the way ONNX Runtime's
    `CreateSupportedPartitions` groups them: a topological walk that takes every ready
    supported node into the current piece, and closes the piece only when nothing but
    unsupported nodes is ready (whose outputs the next piece may need). Unconnected supported
    branches therefore share a piece; a CPU node between two supported ones splits them.
    Like ONNX Runtime's, the walk is one topological order, so this is what it would do,
    up to the order it picks among ready nodes."""
    producer = {name: i for i, node in enumerate(nodes) for name in node.outputs}
    consumers: list[list[int]] = [[] for _ in nodes]
    waiting = [0] * len(nodes)
    for i, node in enumerate(nodes):
        for j in {producer[name] for name in node.inputs if name in producer}:
            consumers[j].append(i)
            waiting[i] += 1
    ready = {True: [i for i in range(len(nodes)) if waiting[i] == 0 and ok[i]]}
    ready[False] = [i for i in range(len(nodes)) if waiting[i] == 0 and not ok[i]]

    def done(i: int) -> None:
        for k in consumers[i]:
            waiting[k] -= 1
            if waiting[k] == 0:
                ready[ok[k]].append(k)

    pieces = 0
    while ready[True] or ready[False]:
        if ready[True]:
            pieces += 1
            while ready[True]:
                done(ready[True].pop())
        while ready[False] and not ready[True]:
            done(ready[False].pop())
    return pieces


@dataclass(frozen=True)
class BackendVerdict:
    backend: str
    unsupported: dict[str, int]
    """Op (qualified name) -> how many nodes of it the backend leaves to the CPU."""
    partitions: int
    """Pieces the backend runs; each boundary is a copy between device and CPU."""


@dataclass(frozen=True)
class GraphPortability:
    graph: str
    nodes: int
    folded: int
    """Of `nodes`, those constant folding removes (not judged)."""
    op_counts: dict[str, int]
    backends: tuple[BackendVerdict, ...]


def assess(name: str, graph: Graph, *, backends: Iterable[str] = BACKENDS) -> GraphPortability:
    """Every backend's verdict on one graph, after constant folding."""
    folded = constant_nodes(graph)
    nodes = [node for i, node in enumerate(graph.nodes) if i not in folded]
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node.qualified] = counts.get(node.qualified, 0) + 1
    verdicts = []
    for backend in backends:
        ok = [supported(backend, node) for node in nodes]
        missing: dict[str, int] = {}
        for node, fine in zip(nodes, ok, strict=True):
            if not fine:
                missing[node.qualified] = missing.get(node.qualified, 0) + 1
        verdicts.append(
            BackendVerdict(
                backend=backend,
                unsupported=dict(sorted(missing.items())),
                partitions=partitions(nodes, ok),
            )
        )
    return GraphPortability(
        graph=name,
        nodes=len(graph.nodes),
        folded=len(folded),
        op_counts=dict(sorted(counts.items())),
        backends=tuple(verdicts),
    )
