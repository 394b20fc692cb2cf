"""Command-line choices of how the graphs run (backend, precision, CUDA graphs, TensorRT),
shared by `render`, `live`, `bench` and `serve` (main thread, while parsing and opening).

``--backend auto`` is resolved by `runtime.engine.backend_options` (which the desktop app uses
too): CUDA when usable, else what the last `imtalker-cam bench` of the same graphs chose within
tolerance, else ONNX Runtime on the CPU in fp32."""

from __future__ import annotations

import argparse
from pathlib import Path

from runtime.engine import backend_options
from runtime.model.execution.backends import BACKEND_CHOICES, BackendChoice
from runtime.model.execution.sessions import (
    OPENVINO,
    OPENVINO_DEVICES,
    SESSION_PRECISIONS,
    SessionOptions,
)


def add_device_arguments(group: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    group.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="auto (default): ONNX Runtime with CUDA when usable, else the fastest backend and "
        "precision `imtalker-cam bench` measured within tolerance on these graphs, else ONNX "
        "Runtime on the CPU; openvino: Intel's runtime (CPU, Intel GPU, NPU)",
    )
    group.add_argument(
        "--openvino-device",
        choices=OPENVINO_DEVICES,
        default="auto",
        help="with --backend openvino: auto (a GPU when OpenVINO lists one, else the CPU), CPU, "
        "GPU or NPU; a device that cannot compile a graph falls back to the CPU with a notice",
    )
    group.add_argument(
        "--precision",
        choices=SESSION_PRECISIONS,
        default="fp32",
        help="fp16: the mixed-precision renderer and velocity graphs (for GPUs; on a CPU "
        "they are slower); bf16: OpenVINO on CPUs with AVX-512 BF16 or AMX, about 2x the "
        "renderer's speed but outside the fp32 tolerance (PSNR 37-45 dB: see README); "
        "bf16-mixed: OpenVINO's CPU with the renderer in bf16 except the parts measured most "
        "sensitive (fp32 there), within the fp32 tolerance; int8: "
        "OpenVINO's CPU with the renderer quantized by NNCF (the int8 extra), made once by "
        "`imtalker-cam bench --backend openvino --precision int8`",
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


def cuda_usable() -> bool:
    """Whether ONNX Runtime's CUDA provider initialises here (probed once per process)."""
    return backend_options.cuda_usable()


def _cuda(args: argparse.Namespace) -> bool:
    """CUDA's probe, only where the request needs it (OpenVINO and TensorRT do not)."""
    if getattr(args, "backend", "auto") == OPENVINO or getattr(args, "tensorrt", False):
        return False
    return cuda_usable()


def backend_choice(args: argparse.Namespace, graphs: Path | None = None) -> BackendChoice:
    """`--backend`/`--precision` resolved for this machine (and `graphs`, for auto)."""
    return backend_options.resolve_backend(
        backend=getattr(args, "backend", "auto"),
        precision=getattr(args, "precision", "fp32"),
        graphs=graphs,
        tensorrt=bool(getattr(args, "tensorrt", False)),
        cuda=_cuda(args),
    )


def session_options(args: argparse.Namespace, graphs: Path | None = None) -> SessionOptions:
    """The sessions' options from the command line; `graphs` lets ``--backend auto`` use the
    last bench of those graphs."""
    return backend_options.session_options(
        backend=getattr(args, "backend", "auto"),
        precision=getattr(args, "precision", "fp32"),
        graphs=graphs,
        threads=getattr(args, "threads", 0) or 0,
        openvino_device=getattr(args, "openvino_device", "auto"),
        cuda_graph=bool(getattr(args, "cuda_graph", False)),
        tensorrt=bool(getattr(args, "tensorrt", False)),
        cuda=_cuda(args),
    )
