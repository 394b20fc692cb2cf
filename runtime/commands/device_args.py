"""Command-line choices of how the graphs run (backend, precision, CUDA graphs, TensorRT),
shared by `render`, `live`, `bench` and `serve` (main thread, while parsing and opening).

``--backend auto`` is resolved by `runtime.model.execution.backends.resolve`: CUDA when usable,
else what the last `imtalker-cam bench` of the same graphs chose within tolerance, else ONNX
Runtime on the CPU in fp32."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from runtime.model.execution.backends import (
    BACKEND_CHOICES,
    ORT_DEVICES,
    BackendChoice,
    ort_providers,
    resolve,
)
from runtime.model.execution.sessions import (
    OPENVINO,
    OPENVINO_DEVICES,
    SESSION_PRECISIONS,
    SessionOptions,
)

logger = logging.getLogger(__name__)


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
        "renderer's speed but outside the fp32 tolerance (PSNR 37-45 dB: see README)",
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
    from runtime.model.execution.providers import CUDA, usable_providers

    return usable_providers((CUDA,))[0] == CUDA


def measured_choice(graphs: Path | None) -> BackendChoice | None:
    """What the last `imtalker-cam bench` of `graphs` chose, if it measured these graphs."""
    if graphs is None:
        return None
    from runtime.core import paths
    from runtime.engine.bench import chosen_backend

    return chosen_backend(paths.cache_dir(), graphs)


def backend_choice(args: argparse.Namespace, graphs: Path | None = None) -> BackendChoice:
    """`--backend`/`--precision` resolved for this machine (and `graphs`, for auto)."""
    from runtime.model.execution.backends import openvino_installed

    requested = getattr(args, "backend", "auto")
    precision = getattr(args, "precision", "fp32")
    use_cuda = bool(getattr(args, "tensorrt", False)) or (requested != OPENVINO and cuda_usable())
    choice = resolve(
        requested,
        precision=precision,
        cuda_usable=use_cuda,
        measured=measured_choice(graphs) if requested == "auto" else None,
        openvino=openvino_installed(),
    )
    if requested == "auto":
        logger.info("backend auto: %s", choice.label)
    return choice


def session_options(args: argparse.Namespace, graphs: Path | None = None) -> SessionOptions:
    """The sessions' options from the command line; `graphs` lets ``--backend auto`` use the
    last bench of those graphs."""
    from runtime.core import paths

    choice = backend_choice(args, graphs)
    tensorrt = bool(getattr(args, "tensorrt", False))
    openvino = choice.backend == OPENVINO
    device = getattr(args, "openvino_device", "auto")
    return SessionOptions(
        intra_op_threads=getattr(args, "threads", 0) or 0,
        precision=choice.precision,
        enable_cuda_graph=bool(getattr(args, "cuda_graph", False)),
        use_tensorrt=tensorrt,
        tensorrt_fp16=tensorrt and choice.precision == "fp16",
        tensorrt_cache_dir=paths.cache_dir() / "tensorrt" if tensorrt else None,
        providers=ort_providers(choice) if choice.device in ORT_DEVICES else None,
        coreml_cache_dir=paths.cache_dir() / "coreml",
        backend=choice.backend,
        openvino_device=choice.device
        if openvino and device == "auto" and choice.device in OPENVINO_DEVICES
        else device,
        openvino_cache_dir=paths.cache_dir() / "openvino" if openvino else None,
    )
