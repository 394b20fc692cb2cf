"""How the graphs' sessions are opened for a backend request ("auto", "onnxruntime",
"openvino") and a precision: the one place that resolves ``auto`` (with CUDA's probe and the
last bench of the graphs) into `SessionOptions`, for the command line and the desktop app
(main thread or the app's worker, while opening the models)."""

from __future__ import annotations

import logging
from pathlib import Path

from runtime.core import paths
from runtime.model.execution.backends import (
    ORT_DEVICES,
    BackendChoice,
    openvino_installed,
    ort_providers,
    resolve,
)
from runtime.model.execution.sessions import OPENVINO, OPENVINO_DEVICES, SessionOptions

__all__ = [
    "cuda_usable",
    "measured_choice",
    "resolve_backend",
    "session_choice",
    "session_options",
]

logger = logging.getLogger(__name__)


def cuda_usable() -> bool:
    """Whether ONNX Runtime's CUDA provider initialises here (probed once per process)."""
    from runtime.model.execution.providers import CUDA, usable_providers

    return usable_providers((CUDA,))[0] == CUDA


def measured_choice(graphs: Path | None) -> BackendChoice | None:
    """What the last `imtalker-cam bench` of `graphs` chose, if it measured these graphs."""
    if graphs is None:
        return None
    from runtime.engine.bench import chosen_backend

    return chosen_backend(paths.cache_dir(), graphs)


def resolve_backend(
    *,
    backend: str,
    precision: str,
    graphs: Path | None,
    tensorrt: bool = False,
    cuda: bool | None = None,
) -> BackendChoice:
    """`backend`/`precision` resolved for this machine (and `graphs`, for auto). `cuda`:
    whether CUDA is usable, when the caller probed it (None: probed here, only if needed)."""
    if cuda is None:
        cuda = backend != OPENVINO and cuda_usable()
    choice = resolve(
        backend,
        precision=precision,
        cuda_usable=tensorrt or (backend != OPENVINO and cuda),
        measured=measured_choice(graphs) if backend == "auto" else None,
        openvino=openvino_installed(),
    )
    if backend == "auto":
        logger.info("backend auto: %s", choice.label)
    return choice


def session_choice(
    *,
    backend: str,
    precision: str,
    graphs: Path | None,
    openvino_device: str = "auto",
    cuda: bool | None = None,
) -> BackendChoice:
    """What a session opened with these settings (`session_options`) will run on, with the
    OpenVINO device picked as `OpenVinoSession` picks it: the key a measurement is quoted by
    (a timing run's `BenchResult.choice`, the app's last live session)."""
    choice = resolve_backend(backend=backend, precision=precision, graphs=graphs, cuda=cuda)
    if choice.backend != OPENVINO or not openvino_installed():
        return choice
    from runtime.model.execution.openvino_sessions import available_devices, pick_device

    # As `session_options` passes it on: the choice's device unless one was named.
    keep = openvino_device == "auto" and choice.device in OPENVINO_DEVICES
    wanted = choice.device if keep else openvino_device
    device = pick_device(wanted, available_devices())
    return BackendChoice(backend=OPENVINO, device=device, precision=choice.precision)


def session_options(
    *,
    backend: str = "auto",
    precision: str = "fp32",
    graphs: Path | None = None,
    threads: int = 0,
    openvino_device: str = "auto",
    cuda_graph: bool = False,
    tensorrt: bool = False,
    cuda: bool | None = None,
) -> SessionOptions:
    """The sessions' options for `backend` ("auto" uses the last bench of `graphs`) at
    `precision`; the other arguments are the command line's ``--threads``,
    ``--openvino-device``, ``--cuda-graph`` and ``--tensorrt``."""
    choice = resolve_backend(
        backend=backend, precision=precision, graphs=graphs, tensorrt=tensorrt, cuda=cuda
    )
    openvino = choice.backend == OPENVINO
    auto_device = openvino and openvino_device == "auto" and choice.device in OPENVINO_DEVICES
    return SessionOptions(
        intra_op_threads=threads,
        precision=choice.precision,
        enable_cuda_graph=cuda_graph,
        use_tensorrt=tensorrt,
        tensorrt_fp16=tensorrt and choice.precision == "fp16",
        tensorrt_cache_dir=paths.cache_dir() / "tensorrt" if tensorrt else None,
        providers=ort_providers(choice) if choice.device in ORT_DEVICES else None,
        coreml_cache_dir=paths.cache_dir() / "coreml",
        backend=choice.backend,
        openvino_device=choice.device if auto_device else openvino_device,
        openvino_cache_dir=paths.cache_dir() / "openvino" if openvino else None,
    )
