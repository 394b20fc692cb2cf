"""The environment report behind `imtalker-cam doctor` (main thread; a few seconds at most).

Every probe reports what it found or the exact error it met; none raises, so the report is
complete on a machine where everything is missing.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import platform
import sys
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

from runtime.media import device_names
from runtime.model import convert_extra
from runtime.model.execution.cuda_env import cuda_environment
from runtime.model.execution.cuda_fetch import cuda_runtime_need
from runtime.model.execution.cuda_user_libs import user_library_dir
from runtime.model.execution.providers import (
    CPU,
    TENSORRT,
    ProviderProbe,
    ProviderReport,
    provider_report,
    unusable_warning,
)

logger = logging.getLogger(__name__)

PACKAGES = (
    "imtalker-cam",
    "numpy",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "onnx",
    "torch",
    "PySide6-Essentials",
    "pyvirtualcam",
    "sounddevice",
    "opencv-python-headless",
    "av",
    "soxr",
    "Pillow",
    "huggingface_hub",
    "platformdirs",
)


@dataclass(frozen=True)
class Report:
    python: str
    platform: str
    packages: dict[str, str | None]
    providers_compiled: tuple[str, ...]
    providers: tuple[ProviderProbe, ...]
    gpu: dict[str, Any]
    audio_inputs: tuple[str, ...]
    audio_error: str | None
    virtual_camera: dict[str, Any]
    models: dict[str, Any] = field(default_factory=dict)
    openvino: dict[str, Any] = field(default_factory=dict)
    """OpenVINO's devices (CPU, Intel GPU, NPU) with their capabilities (BF16, FP16, INT8), or
    why there are none (`probe_openvino`)."""
    cuda: dict[str, Any] = field(default_factory=dict)
    """Driver version, the CUDA major this build needs, CUDA/cuDNN libraries loaded and where
    from (`runtime.model.execution.cuda_env.CudaEnvironment.to_json`)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def probe_providers() -> tuple[tuple[str, ...], tuple[ProviderProbe, ...]]:
    """Every compiled-in provider run on a 1-node graph (cached:
    `runtime.model.execution.providers`)."""
    report = provider_report()
    return report.compiled, report.probes


def probe_gpu() -> dict[str, Any]:
    """NVIDIA GPU presence from the driver's device nodes and nvidia-smi, without CUDA."""
    import shutil
    import subprocess

    info: dict[str, Any] = {"present": False, "devices": [], "detail": ""}
    smi = shutil.which("nvidia-smi")
    if smi is None:
        info["detail"] = "no NVIDIA driver found (nvidia-smi not on PATH)"
        return info
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        info["detail"] = f"nvidia-smi failed: {exc}"
        return info
    devices = [line.strip() for line in out.splitlines() if line.strip()]
    info.update(present=bool(devices), devices=devices, detail="ok" if devices else "no GPU")
    return info


def probe_openvino() -> dict[str, Any]:
    """OpenVINO's devices, or the error importing it (it has no wheels on some platforms)."""
    try:
        from runtime.model.execution.openvino_sessions import device_report
    except ImportError as exc:
        return {"installed": False, "devices": [], "detail": f"not importable: {exc}"}
    try:
        return {"installed": True, "devices": device_report(), "detail": "ok"}
    except Exception as exc:  # a broken plugin: report its words
        return {"installed": True, "devices": [], "detail": f"{type(exc).__name__}: {exc}"}


def probe_audio(
    sd: ModuleType | None = None,
    *,
    pactl: device_names.Runner | None = None,
    platform: str = sys.platform,
) -> tuple[tuple[str, ...], str | None]:
    """Microphones by the names the app shows (the sound server's descriptions, each device
    once: `runtime.media.device_names`), the system default marked; or the exact error."""
    try:
        if sd is None:
            import sounddevice as sd_module

            sd = sd_module
        devices = [dict(d) for d in sd.query_devices()]
        hostapis_fn = getattr(sd, "query_hostapis", None)
        hostapis = [dict(a) for a in hostapis_fn()] if hostapis_fn is not None else []
    except Exception as exc:  # PortAudio missing or broken: report its own words
        return (), f"{type(exc).__name__}: {exc}"
    names = {str(d.get("name", "")) for d in devices}
    pulse = None
    if platform.startswith("linux") and {"pulse", "pipewire"} & names:
        pulse = device_names.pulse_sources() if pactl is None else device_names.pulse_sources(pactl)
    found = device_names.microphones(devices, hostapis, pulse=pulse, platform=platform)
    default_index: int | None = None
    with contextlib.suppress(TypeError, ValueError, IndexError, AttributeError):
        default_index = int(sd.default.device[0])
    default = device_names.default_label(devices, default_index, pulse=pulse, choices=found)
    inputs = tuple(
        f"{mic.label} (system default)" if mic.label == default else mic.label for mic in found
    )
    if inputs:
        return inputs, None
    try:
        sd.query_devices(kind="input")
    except Exception as exc:
        return (), f"no audio input device: {exc}"
    return (), "no audio input device"


def probe_virtual_camera() -> dict[str, Any]:
    """Try to open a small virtual camera; report pyvirtualcam's own message on failure."""
    result: dict[str, Any] = {"os": platform.system(), "available": False, "backend": None}
    try:
        import pyvirtualcam
    except ImportError as exc:
        result["detail"] = f"pyvirtualcam not importable: {exc}"
        return result
    try:
        with pyvirtualcam.Camera(width=64, height=64, fps=25) as cam:
            result.update(available=True, backend=cam.backend, device=cam.device, detail="ok")
    except Exception as exc:  # pyvirtualcam raises RuntimeError with an install hint
        result["detail"] = str(exc)
    return result


def probe_models() -> dict[str, Any]:
    """Every file of the model store with its state, the model version and whether the
    graphs are converted (what `models status` says, in short)."""
    from runtime.core import paths
    from runtime.model.compile import cache as compiled_cache
    from runtime.model.store.model_store import ModelStore

    store = ModelStore(paths.model_store_dir())
    missing = convert_extra.missing_modules()
    doc: dict[str, Any] = {
        "store": str(store.root),
        "files": {},
        "states": {},
        "convert_extra_missing": list(missing),
        "convert_hint": convert_extra.hint() if missing else None,
    }
    try:
        status = store.status()
        converted = compiled_cache.is_converted(store)
        version = store.model_version()
    except Exception as exc:  # an unusable store folder: say so, the report goes on
        doc.update(complete=False, converted=False, model_version=None, error=str(exc))
        return doc
    for f in status.files:
        doc["files"][f.path] = f.present
        if f.verified:
            state = "verified"
        elif f.present:
            state = f"not verified ({f.problem})" if f.problem else "not verified"
        else:
            state = "missing"
        doc["states"][f.path] = state
    doc.update(complete=status.complete, converted=converted, model_version=version)
    return doc


def collect() -> Report:
    # First: it preloads CUDA/cuDNN from the nvidia-* wheels, which the provider probe then uses.
    environment = cuda_environment()
    cuda = environment.to_json()
    cuda["fetch_offer"] = cuda_runtime_need(
        driver=environment.driver,
        build_cuda=environment.build_cuda,
        wheels=environment.wheels,
        folder=user_library_dir(environment.build_cuda),
    )
    compiled, providers = probe_providers()
    inputs, audio_error = probe_audio()
    return Report(
        python=sys.version.split()[0],
        platform=platform.platform(),
        packages=package_versions(),
        providers_compiled=compiled,
        providers=providers,
        gpu=probe_gpu(),
        audio_inputs=inputs,
        audio_error=audio_error,
        virtual_camera=probe_virtual_camera(),
        models=probe_models(),
        openvino=probe_openvino(),
        cuda=cuda,
    )


def format_cuda(cuda: dict[str, Any]) -> list[str]:
    driver = cuda.get("driver") or {}
    if not driver.get("present"):
        return ["", f"NVIDIA driver: none ({driver.get('reason', 'not checked')})"]
    lines = [
        "",
        f"NVIDIA driver {driver.get('driver_version')}: CUDA up to {driver.get('max_cuda')}; "
        f"this onnxruntime build needs CUDA {cuda.get('build_cuda') or '- (CPU build)'}",
    ]
    if cuda.get("problem"):
        lines.append(f"  {cuda['problem']}")
    wheels = cuda.get("wheels") or {}
    lines.append(
        "  CUDA/cuDNN wheels: "
        + (", ".join(f"{n} {v}" for n, v in wheels.items()) or "none (set-up installs them)")
    )
    if cuda.get("fetch_offer"):
        lines.append(f"  {cuda['fetch_offer']}")
    if cuda.get("preload_error"):
        lines.append(f"  preloading them failed: {cuda['preload_error']}")
    for lib in cuda.get("libraries") or []:
        lines.append(f"  loaded {lib['name']} from {lib['source']} ({lib['path']})")
    return lines


def format_openvino(openvino: dict[str, Any]) -> list[str]:
    if not openvino.get("devices"):
        return ["", f"OpenVINO: no devices ({openvino.get('detail', 'not checked')})"]
    lines = ["", "OpenVINO devices (--backend openvino --openvino-device ...):"]
    for d in openvino["devices"]:
        caps = ", ".join(d["capabilities"]) or "-"
        lines.append(f"  {d['device']:<8} {d['name']}  ({caps})")
    return lines


def format_report(report: Report) -> str:
    lines = [f"Python {report.python} on {report.platform}", "", "Packages:"]
    for name, version in report.packages.items():
        lines.append(f"  {name:<24} {version or '-'}")
    lines += ["", "ONNX Runtime providers (compiled in -> initialises?):"]
    for probe in report.providers:
        mark = "yes" if probe.initialises else "no"
        used = ", ".join(probe.used) or "-"
        lines.append(f"  {probe.name:<28} {mark:<4} used: {used}  ({probe.detail})")
    in_use = ProviderReport(compiled=report.providers_compiled, probes=report.providers)
    lines.append(f"  usable: {in_use.summary()}")
    running_on = (in_use.usable or (CPU,))[0]
    for probe in report.providers:
        # Said here, once, as a warning; elsewhere it is logged at INFO. TensorRT is only
        # used when asked for (--tensorrt): its row above is enough.
        if probe.name not in (CPU, TENSORRT, "onnxruntime") and not probe.initialises:
            lines.append(f"  WARNING: {unusable_warning(probe, running_on=running_on)}")
    gpu = report.gpu
    lines += ["", f"GPU: {'; '.join(gpu['devices']) if gpu['present'] else 'none'}"]
    if not gpu["present"]:
        lines.append(f"  {gpu['detail']}")
    lines += format_cuda(report.cuda)
    lines += format_openvino(report.openvino)
    lines += ["", "Audio inputs:"]
    lines += [f"  {d}" for d in report.audio_inputs] or [f"  none ({report.audio_error})"]
    vcam = report.virtual_camera
    lines += ["", f"Virtual camera ({vcam['os']}):"]
    if vcam["available"]:
        lines.append(f"  {vcam['backend']} at {vcam.get('device')}")
    else:
        lines.append(f"  unavailable: {vcam['detail']}")
    lines += format_models(report.models)
    return "\n".join(lines)


def format_models(models: dict[str, Any]) -> list[str]:
    lines = ["", f"Model files in {models['store']}:"]
    if models.get("error"):
        return [*lines, f"  unusable: {models['error']}"]
    version = models.get("model_version")
    lines.append(f"  model version: {'IMTalker ' + version if version else 'not known yet'}")
    for name, state in models["states"].items():
        lines.append(f"  {name:<48} {state}")
    if models["converted"]:
        lines.append("  converted for this computer: yes")
    elif models["complete"]:
        lines.append("  converted for this computer: no (the first start converts, a few minutes)")
    else:
        lines.append("  converted for this computer: no (files missing)")
    if models.get("convert_hint"):
        lines.append(f"  conversion: {models['convert_hint']}")
    return lines
