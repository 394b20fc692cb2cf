"""Command-line choices of how the graphs run (precision, CUDA graphs, TensorRT), shared by
`render`, `live` and `bench` (main thread, while parsing)."""

from __future__ import annotations

import argparse

from runtime.model.contract import PRECISIONS
from runtime.model.execution.sessions import SessionOptions


def add_device_arguments(group: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp16: the mixed-precision renderer and velocity graphs (for GPUs; on a CPU "
        "they are slower)",
    )
    group.add_argument(
        "--cuda-graph",
        action="store_true",
        help="capture the renderer and velocity calls as CUDA graphs (CUDA only; falls back "
        "to plain runs with a notice when capture is not possible)",
    )
    group.add_argument(
        "--tensorrt",
        action="store_true",
        help="try ONNX Runtime's TensorRT provider first (engines cached in the cache dir; "
        "the first build takes minutes; a failed build falls back to CUDA with a notice)",
    )


def session_options(args: argparse.Namespace) -> SessionOptions:
    from runtime.core import paths

    tensorrt = bool(getattr(args, "tensorrt", False))
    precision = getattr(args, "precision", "fp32")
    return SessionOptions(
        intra_op_threads=getattr(args, "threads", 0) or 0,
        precision=precision,
        enable_cuda_graph=bool(getattr(args, "cuda_graph", False)),
        use_tensorrt=tensorrt,
        tensorrt_fp16=tensorrt and precision == "fp16",
        tensorrt_cache_dir=paths.cache_dir() / "tensorrt" if tensorrt else None,
    )
