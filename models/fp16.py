"""fp16 (mixed-precision) variants of exported graphs, with the numerically fragile ops in fp32.

onnxconverter-common's float16 conversion turns every float tensor and weight to fp16 except
the nodes on a block list, with casts at the borders; the graph's inputs and outputs stay fp32
(`keep_io_types`), so the runtime contract holds for both variants.

Kept in fp32, and why (written into the graph's config JSON under "fp16"):
- the attention chain that feeds the top-k pick (TopK, or ReduceMax + ArgMax for top-1, which
  are kept in fp32 too; the renderer's 64 px cross-attention logits, softmax, head mean, and
  the block selection of the two-step top-1): the
  guided resampler copies, per coarse cell, the source block with the highest head-averaged
  probability. Those probabilities are ~1/4096 each; in fp16 (11-bit mantissa) near-ties
  flip, a different source block is copied and the frame changes by whole blocks.
  This is the fp16 instability upstream reports for this model.
- Sin, Cos, Exp: timestep and position embeddings take sin/cos of angles up to hundreds of
  radians, where fp16's spacing (0.25 at 256) makes them meaningless.
- onnxconverter-common's own default list (TopK, Range, CumSum, Resize, ... ).

Not kept in fp32, though a candidate: the modulated convolutions' demodulation (Pow, ReduceSum,
Sqrt of 512 x 3 x 3 modulated weights plus 1e-8). Blocking those ops leaves the converter
unable to type the weights feeding Conv ("Conv bound to different types"), so the graph does
not load; on the golden inputs fp16 demodulation passes the tolerances, real weights are
untested until the GPU check runs.
"""

from __future__ import annotations

import warnings
from typing import Any

import onnx

FP32_OP_TYPES = ("Sin", "Cos", "Exp")
_TOWARD_LOGITS = (
    "ReduceMean", "ReduceMax", "Softmax", "Reshape", "Transpose", "Slice", "Squeeze",
    "Unsqueeze", "Cast", "MatMul",
)  # fmt: skip
"""Node types walked back from a top-k pick to the attention logits: the head mean and softmax,
the layout ops between them, and for long rows the two-step top-1 of `models.renderer.top_k`
(block maxima, then the winning block picked by a one-hot MatMul)."""
_PICKS = ("TopK", "ArgMax", "ReduceMax")
"""How a top-k pick exports: TopK, or for top-1 ReduceMax (the value) and ArgMax (the index),
`models.renderer.top_k`. ArgMax and ReduceMax are not on the converter's block list, so the
pick itself is blocked by name."""


def top_k_chains(graph: onnx.GraphProto) -> list[str]:
    """Names of the nodes that compute each top-k pick's inputs, walking back through every
    input of the ops in `_TOWARD_LOGITS` down to the softmax and the MatMul whose logits it
    normalises (the walk stops there), and of the ArgMax/ReduceMax picks themselves. A
    MatMul reached other than through a softmax is the two-step top-1's block selection:
    fp16 rounding of the probabilities it copies would flip near-ties inside a block."""
    producer = {out: node for node in graph.node for out in node.output}
    chosen: list[str] = []
    for node in graph.node:
        if node.op_type not in _PICKS:
            continue
        if node.op_type != "TopK" and node.name not in chosen:
            chosen.append(node.name)
        pending = [producer.get(name) for name in node.input]
        while pending:
            current = pending.pop()
            if current is None or current.name in chosen:
                continue
            if current.op_type not in _TOWARD_LOGITS and current.op_type not in _PICKS:
                continue
            chosen.append(current.name)
            if current.op_type == "Softmax":
                logits = producer.get(current.input[0])
                if logits is not None and logits.name not in chosen:
                    chosen.append(logits.name)
                continue
            pending.extend(producer.get(name) for name in current.input)
    return chosen


def _named(graph: onnx.GraphProto) -> None:
    """Give unnamed nodes names: the block list is by name."""
    for i, node in enumerate(graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def _retype_casts(graph: onnx.GraphProto) -> list[str]:
    """Cast nodes whose target the converter left as float while it retyped their output to
    fp16 (the timestep embedding's Cast before its fp16 Mul): make each Cast produce the type
    the graph declares, which ONNX Runtime otherwise refuses. Returns their names."""
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    declared = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.output)}
    fixed = []
    for node in graph.node:
        want = declared.get(node.output[0]) if node.op_type == "Cast" else None
        if want not in floats:
            continue
        for attr in node.attribute:
            if attr.name == "to" and attr.i in floats and attr.i != want:
                attr.i = int(want)
                fixed.append(node.name)
    return fixed


def _skip_round_trips(graph: onnx.GraphProto) -> int:
    """Let fp32 nodes read each other's outputs directly. The converter wraps every blocked node
    in its own casts, so between two of them a value goes fp32 -> fp16 -> fp32 and is rounded
    to fp16 anyway (the head mean before its ArgMax, say). Each Cast back to fp32 of a Cast to
    fp16 of an fp32 tensor is bypassed; casts left with no reader are dropped. Returns how many
    were bypassed."""
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    declared = {
        v.name: v.type.tensor_type.elem_type
        for v in (*graph.input, *graph.value_info, *graph.output)
    }
    declared.update({t.name: t.data_type for t in graph.initializer})
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {o.name for o in graph.output}

    def cast_to(node: onnx.NodeProto | None) -> int | None:
        if node is None or node.op_type != "Cast":
            return None
        return next((int(a.i) for a in node.attribute if a.name == "to"), None)

    renamed: dict[str, str] = {}
    for node in graph.node:
        down = producer.get(node.input[0]) if cast_to(node) == f32 else None
        if (
            cast_to(down) == f16
            and down is not None
            and declared.get(down.input[0]) == f32
            and node.output[0] not in outputs
        ):
            renamed[node.output[0]] = down.input[0]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    while True:  # a dropped cast may leave the cast before it unread
        read = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if n.op_type == "Cast" and not set(n.output) & read]
        if not dead:
            return len(renamed)
        for node in dead:
            graph.node.remove(node)


def to_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The mixed-precision model and what stayed fp32 (for the graph's config JSON)."""
    from onnxconverter_common import float16

    _named(model.graph)
    chain = top_k_chains(model.graph)
    op_types = sorted({*float16.DEFAULT_OP_BLOCK_LIST, *FP32_OP_TYPES})
    with warnings.catch_warnings():
        # Per-initializer notices about values clamped to fp16's range (weights only).
        warnings.simplefilter("ignore")
        converted = float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=op_types, node_block_list=chain
        )
    casts = _retype_casts(converted.graph)
    bypassed = _skip_round_trips(converted.graph)
    present = {n.op_type for n in model.graph.node}
    info = {
        "precision": "fp16",
        "io": "float32",
        "fp32_op_types": [t for t in op_types if t in present],
        "fp32_nodes": chain,
        "why": {
            "top_k_chain": "near-tied attention probabilities flip the resampler's top-k in fp16",
            "Sin/Cos/Exp": "embedding angles beyond fp16's resolution",
        },
        "casts_kept_fp32": casts,
        "fp16_round_trips_bypassed": bypassed,
        "fp16_not_blocked": "demodulation Pow/ReduceSum/Sqrt: blocking them breaks Conv typing",
    }
    return converted, info
