"""Which backend, device and precision the graphs run with: the candidates this machine offers,
the accuracy gate a reduced precision must pass, and the resolution of ``--backend auto``
(any thread; pure functions over what the caller probed and measured).

Auto: ONNX Runtime when CUDA is usable (the GPU path is ONNX Runtime's); otherwise the fastest
candidate `imtalker-cam bench` measured within `TOLERANCE` on these graphs; otherwise, before
any measurement, ONNX Runtime on the CPU in fp32 (today's path, known to be right).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from runtime.model.execution.providers import COREML, CPU, CUDA, DIRECTML, TENSORRT
from runtime.model.execution.sessions import (
    ONNXRUNTIME,
    OPENVINO,
    OPENVINO_PRECISIONS,
    ModelSet,
)

__all__ = [
    "BACKEND_CHOICES",
    "REFERENCE",
    "TOLERANCE",
    "BackendChoice",
    "Tolerance",
    "candidates",
    "openvino_installed",
    "resolve",
    "running_choice",
]

AUTO = "auto"
BACKEND_CHOICES = (AUTO, ONNXRUNTIME, OPENVINO)


@dataclass(frozen=True, kw_only=True)
class BackendChoice:
    """One way to run the graphs. `device`: "CPU"/"CUDA" for ONNX Runtime, OpenVINO's device
    family ("CPU", "GPU", "NPU") for OpenVINO."""

    backend: str
    device: str
    precision: str

    @property
    def label(self) -> str:
        """``openvino/CPU/bf16``: how bench.json and the logs name it."""
        return f"{self.backend}/{self.device}/{self.precision}"

    @classmethod
    def from_label(cls, label: str) -> BackendChoice:
        backend, device, precision = label.split("/")
        return cls(backend=backend, device=device, precision=precision)


ORT_DEVICES = {"CoreML": COREML, "DirectML": DIRECTML}
"""ONNX Runtime devices other than CPU/CUDA, by the provider that runs them."""


def ort_providers(choice: BackendChoice) -> tuple[str, ...] | None:
    """The ONNX Runtime providers to ask for to run `choice` (None: the default preference)."""
    if choice.backend != ONNXRUNTIME or choice.device == "CUDA":
        return None
    provider = ORT_DEVICES.get(choice.device)
    return (CPU,) if provider is None else (provider, CPU)


ORT_DEVICE_OF = {CPU: "CPU", CUDA: "CUDA", TENSORRT: "CUDA", COREML: "CoreML", DIRECTML: "DirectML"}
"""The `BackendChoice.device` an ONNX Runtime provider runs (TensorRT is a way to run CUDA)."""


def running_choice(models: ModelSet) -> BackendChoice:
    """What `models` actually run on (the renderer's provider or OpenVINO device, after any
    fallback), as `imtalker-cam bench` records it and the app keys its measurements by."""
    provider = models.providers[0]
    if models.backend == OPENVINO:
        device = provider.split("/", 1)[-1]  # "OpenVINO/GPU" -> "GPU"
    else:
        device = ORT_DEVICE_OF.get(provider, provider)
    return BackendChoice(backend=models.backend, device=device, precision=models.precision)


REFERENCE = BackendChoice(backend=ONNXRUNTIME, device="CPU", precision="fp32")
"""What every other candidate is compared with (and the choice before any measurement)."""


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    """How far a candidate's outputs may be from `REFERENCE`'s on the same inputs (issue 22):
    frames |d| mean and 99th percentile (frames are in [0, 1]), the sampler's motion latents
    relative error (|d| / |reference|, over the chunk)."""

    frames_mean: float = 2e-3
    frames_p99: float = 2e-2
    motion_rel: float = 1e-2

    def frames_ok(self, mean_abs: float, p99_abs: float) -> bool:
        return mean_abs <= self.frames_mean and p99_abs <= self.frames_p99

    def motion_ok(self, rel: float) -> bool:
        return rel <= self.motion_rel


TOLERANCE = Tolerance()


def openvino_installed() -> bool:
    """Whether the openvino package is there (it has no wheels for some platforms)."""
    return importlib.util.find_spec("openvino") is not None


def candidates(
    *,
    openvino: bool,
    openvino_devices: tuple[str, ...] = (),
    bf16: bool = False,
    int8: bool = False,
    ort_usable: tuple[str, ...] = (),
) -> tuple[BackendChoice, ...]:
    """What `bench` tries on a machine without usable CUDA, `REFERENCE` first: ONNX Runtime's
    CoreML or DirectML where usable (`ort_usable`: the providers that passed their probe);
    OpenVINO on the CPU in fp32, where the CPU runs it natively bf16, and with `int8` (NNCF is
    installed: `runtime.model.compile.quantize`) the int8 renderer; on an OpenVINO GPU fp32 and
    fp16."""
    out = [REFERENCE]
    for device, provider in ORT_DEVICES.items():
        if provider in ort_usable:
            out.append(BackendChoice(backend=ONNXRUNTIME, device=device, precision="fp32"))
    if not openvino:
        return tuple(out)
    out.append(BackendChoice(backend=OPENVINO, device="CPU", precision="fp32"))
    if bf16:
        out.append(BackendChoice(backend=OPENVINO, device="CPU", precision="bf16"))
        out.append(BackendChoice(backend=OPENVINO, device="CPU", precision="bf16-mixed"))
    if int8:
        out.append(BackendChoice(backend=OPENVINO, device="CPU", precision="int8"))
    if any(d.split(".")[0] == "GPU" for d in openvino_devices):
        out.append(BackendChoice(backend=OPENVINO, device="GPU", precision="fp32"))
        out.append(BackendChoice(backend=OPENVINO, device="GPU", precision="fp16"))
    return tuple(out)


def resolve(
    requested: str,
    *,
    precision: str,
    cuda_usable: bool,
    measured: BackendChoice | None,
    openvino: bool,
) -> BackendChoice:
    """The backend to open the graphs with.

    `requested`: "auto", "onnxruntime" or "openvino"; `precision`: what was asked for (auto
    keeps an explicit fp16/bf16/int8 and only fills in the backend); `measured`: bench's choice on
    these graphs, if any; `openvino`: whether OpenVINO is installed (auto does not pick it
    otherwise; asking for it explicitly is an error at session time).
    """
    if requested not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {requested!r}")
    if requested == ONNXRUNTIME:
        return BackendChoice(backend=ONNXRUNTIME, device="CUDA" if cuda_usable else "CPU",
                             precision=precision)  # fmt: skip
    if requested == OPENVINO:
        return BackendChoice(backend=OPENVINO, device="auto", precision=precision)
    if cuda_usable:
        return BackendChoice(backend=ONNXRUNTIME, device="CUDA", precision=precision)
    if precision in OPENVINO_PRECISIONS:  # only OpenVINO runs them
        return BackendChoice(backend=OPENVINO, device="auto", precision=precision)
    if measured is not None and precision == "fp32" and (measured.backend != OPENVINO or openvino):
        return measured
    return BackendChoice(backend=ONNXRUNTIME, device="CPU", precision=precision)
