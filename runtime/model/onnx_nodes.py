"""The nodes of an ONNX graph file, read without the `onnx` package (caller's thread).

The runtime does not depend on `onnx` (only the converter does), so this reads the few
protobuf fields it needs straight from the wire format: `ModelProto.graph` (7), and in it
each `NodeProto` (1) with its inputs (1), outputs (2), op type (4) and domain (7), the names
of the graph's inputs (11) and of its initializers (5). Everything else, the weights
included, is skipped by its length, so a large graph costs one
pass over a memory map. Subgraphs (attributes of If/Loop/Scan) are not entered: the
exporter writes none.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class OnnxReadError(ValueError):
    """The file is not an ONNX model this reader understands."""


@dataclass(frozen=True)
class Node:
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def qualified(self) -> str:
        """`Op` for the default domain, `domain:Op` otherwise (e.g. `com.microsoft:FusedMatMul`)."""
        return self.op_type if self.domain in ("", "ai.onnx") else f"{self.domain}:{self.op_type}"


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxReadError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> list[tuple[int, memoryview | int]]:
    """(field number, payload) of every field; payloads of length-delimited fields are views."""
    out: list[tuple[int, memoryview | int]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            out.append((number, value))
        elif wire == _LENGTH:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise OnnxReadError("truncated field")
            out.append((number, buf[pos : pos + size]))
            pos += size
        elif wire == _FIXED64:
            pos += 8
        elif wire == _FIXED32:
            pos += 4
        else:
            raise OnnxReadError(f"unsupported protobuf wire type {wire}")
    return out


def _text(payload: memoryview | int) -> str:
    if isinstance(payload, int):
        raise OnnxReadError("expected a string field")
    return bytes(payload).decode("utf-8")


def _node(payload: memoryview) -> Node:
    inputs: list[str] = []
    outputs: list[str] = []
    op_type = domain = ""
    for number, value in _fields(payload):
        if number == 1:
            inputs.append(_text(value))
        elif number == 2:
            outputs.append(_text(value))
        elif number == 4:
            op_type = _text(value)
        elif number == 7:
            domain = _text(value)
    return Node(op_type=op_type, domain=domain, inputs=tuple(inputs), outputs=tuple(outputs))


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    """In file order, which ONNX requires to be topological."""
    inputs: tuple[str, ...]
    """What the caller feeds: the declared inputs that are not initializers."""


def _name(payload: memoryview, field: int) -> str:
    for number, value in _fields(payload):
        if number == field:
            return _text(value)
    return ""


def graph_from_bytes(data: bytes | memoryview) -> Graph:
    """The main graph of a serialized `ModelProto`."""
    graphs = [v for n, v in _fields(memoryview(data)) if n == 7 and not isinstance(v, int)]
    if not graphs:
        raise OnnxReadError("no graph in the model")
    nodes: list[Node] = []
    declared: list[str] = []
    initializers: set[str] = set()
    for number, value in _fields(graphs[-1]):
        if isinstance(value, int):
            continue
        if number == 1:
            nodes.append(_node(value))
        elif number == 11:
            declared.append(_name(value, 1))
        elif number == 5:
            initializers.add(_name(value, 8))
    inputs = tuple(name for name in declared if name not in initializers)
    return Graph(nodes=tuple(nodes), inputs=inputs)


def read_graph(path: Path) -> Graph:
    """`graph_from_bytes` of a file, through a memory map."""
    with path.open("rb") as f:
        if path.stat().st_size == 0:
            raise OnnxReadError("empty file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                return graph_from_bytes(view)
            finally:
                view.release()
