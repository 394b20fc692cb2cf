"""The NVIDIA side of the environment: the driver (from `nvidia-smi`), the CUDA major this
onnxruntime-gpu build needs, and which CUDA/cuDNN libraries the process loads and from where
(any thread; `nvidia-smi` is run at most once per process unless asked again).

CUDA and cuDNN come from the nvidia-* wheels that `packaging/bootstrap.sh` installs with
onnxruntime-gpu's `cuda` and `cudnn` extras where a driver answers; `preload_cuda_libraries`
(ONNX Runtime's `preload_dlls`, called before the first CUDA session) loads them from there
rather than from whatever is on the library path.

A driver supports CUDA up to the version its `nvidia-smi` header names; a wheel built for a
newer CUDA major fails to initialise with a library error. `driver_problem` turns that into
one sentence ("NVIDIA driver 550 supports CUDA 12.4; this build needs CUDA 13: update the
driver to 580 or newer") for `doctor`, the GUI and the session log; never a silent CPU.

Hardware is passed in: the parsers take `nvidia-smi`'s text and the probes take a runner, so
tests use recorded outputs.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Runner = Callable[[list[str]], str]
"""Runs a command and returns its stdout; raises OSError or CalledProcessError on failure."""

MIN_DRIVER_FOR_CUDA = {11: 450, 12: 525, 13: 580}
"""Oldest Linux driver branch that supports each CUDA major (NVIDIA's compatibility table)."""

_QUERY = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
_CUDA_IN_HEADER = re.compile(r"CUDA Version:\s*([0-9]+(?:\.[0-9]+)?)")


@dataclass(frozen=True, kw_only=True)
class Gpu:
    name: str
    memory_mib: int | None


@dataclass(frozen=True, kw_only=True)
class DriverInfo:
    """What `nvidia-smi` says; `present` False (with `reason`) when it does not answer."""

    present: bool
    reason: str = ""
    driver_version: str | None = None
    max_cuda: str | None = None
    gpus: tuple[Gpu, ...] = ()

    @property
    def driver_major(self) -> int | None:
        if self.driver_version is None:
            return None
        head = self.driver_version.split(".", 1)[0]
        return int(head) if head.isdigit() else None


@dataclass(frozen=True, kw_only=True)
class LoadedLibrary:
    name: str  # e.g. libcudnn.so.9
    path: str
    source: str  # "pip wheel nvidia-cudnn-cu13 9.13.0" or "system"


@dataclass(frozen=True, kw_only=True)
class CudaEnvironment:
    """Everything `doctor --json` reports under "cuda"."""

    driver: DriverInfo
    build_cuda: str | None
    """CUDA version onnxruntime-gpu was built for (None: a CPU-only onnxruntime)."""
    problem: str | None
    """`driver_problem`'s sentence, or None."""
    preloaded: bool
    preload_error: str | None
    libraries: tuple[LoadedLibrary, ...]
    wheels: dict[str, str] = field(default_factory=dict)
    """Installed nvidia-* runtime wheels by distribution name -> version."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["driver"]["driver_major"] = self.driver.driver_major
        return data


def parse_query(text: str) -> tuple[str | None, tuple[Gpu, ...]]:
    """`nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader`."""
    driver: str | None = None
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[0]:
            continue
        driver = driver or parts[1]
        memory = re.match(r"(\d+)", parts[2])
        gpus.append(Gpu(name=parts[0], memory_mib=int(memory.group(1)) if memory else None))
    return driver, tuple(gpus)


def parse_max_cuda(header: str) -> str | None:
    """The "CUDA Version: 12.4" of plain `nvidia-smi`'s header (the newest CUDA it runs)."""
    found = _CUDA_IN_HEADER.search(header)
    return found.group(1) if found else None


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=15, check=True)
    return done.stdout


def read_driver(run: Runner = _run) -> DriverInfo:
    """Ask `nvidia-smi`; an absent tool or a failing driver is reported, never raised."""
    try:
        driver, gpus = parse_query(run(_QUERY))
        header = run(["nvidia-smi"])
    except FileNotFoundError:
        return DriverInfo(present=False, reason="no NVIDIA driver (nvidia-smi not found)")
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()
        reason = detail[0] if detail else f"exit status {exc.returncode}"
        return DriverInfo(present=False, reason=f"nvidia-smi failed: {reason}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return DriverInfo(present=False, reason=f"nvidia-smi failed: {exc}")
    if not gpus:
        return DriverInfo(present=False, reason="nvidia-smi lists no GPU")
    return DriverInfo(
        present=True, driver_version=driver, max_cuda=parse_max_cuda(header), gpus=gpus
    )


def _major(version: str | None) -> int | None:
    if not version:
        return None
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def driver_problem(driver: DriverInfo, build_cuda: str | None) -> str | None:
    """The sentence for a driver too old for this build's CUDA major, else None."""
    need = _major(build_cuda)
    have = _major(driver.max_cuda)
    if not driver.present or need is None or have is None or have >= need:
        return None
    minimum = MIN_DRIVER_FOR_CUDA.get(need)
    fix = f"update the driver to {minimum} or newer" if minimum else "update the driver"
    shown = driver.driver_major if driver.driver_major is not None else driver.driver_version
    return (
        f"NVIDIA driver {shown} supports CUDA {driver.max_cuda}; "
        f"this build needs CUDA {need}: {fix}"
    )


def build_cuda_version() -> str | None:
    """The CUDA version onnxruntime-gpu was built for; None for a CPU-only onnxruntime."""
    try:
        from onnxruntime.capi import build_and_package_info as info
    except ImportError:
        return None
    version = getattr(info, "cuda_version", None)
    return str(version) if version else None


# -- preloading and what got loaded ------------------------------------------------------------

_preload_lock = threading.Lock()
_preload_result: tuple[bool, str | None] | None = None


def preload_cuda_libraries() -> tuple[bool, str | None]:
    """Load CUDA and cuDNN from the nvidia-* wheels (ONNX Runtime's `preload_dlls`) once per
    process, before the first CUDA session. Returns (done, error); a build without
    `preload_dlls` or without CUDA is (False, None)."""
    global _preload_result
    with _preload_lock:
        if _preload_result is None:
            _preload_result = _preload()
        return _preload_result


def _preload() -> tuple[bool, str | None]:
    try:
        import onnxruntime as ort
    except ImportError:
        return False, None
    preload = getattr(ort, "preload_dlls", None)
    if preload is None or "CUDAExecutionProvider" not in ort.get_available_providers():
        return False, None
    if not nvidia_wheels():
        # A runtime fetched into the user's folder (the bundle, a pipx install); otherwise
        # nothing to prefer: loading from the system path is what ORT does anyway.
        from runtime.model.execution.cuda_user_libs import (
            is_installed,
            preload_from,
            user_library_dir,
        )

        folder = user_library_dir(build_cuda_version())
        if folder is not None and is_installed(folder):
            return preload_from(folder)
        return False, None
    try:
        preload(cuda=True, cudnn=True, msvc=True)
    except Exception as exc:  # a missing wheel library is a finding for doctor, not a crash
        logger.warning("preloading CUDA libraries failed: %s", exc)
        return False, f"{type(exc).__name__}: {exc}"
    logger.debug("CUDA and cuDNN preloaded from the nvidia-* wheels")
    return True, None


def nvidia_wheels() -> dict[str, str]:
    """Installed nvidia-* runtime wheels (the onnxruntime-gpu `cuda`/`cudnn` extras)."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or ""
        if name.lower().startswith("nvidia-"):
            found[name] = dist.version
    return dict(sorted(found.items()))


_LIBRARIES = re.compile(
    r"/(lib(?:cudart|cublasLt|cublas|cudnn|nvrtc|cufft|curand)[^/]*\.so[.\d]*)$"
)


def loaded_libraries(maps: Iterable[str] | None = None) -> tuple[LoadedLibrary, ...]:
    """CUDA and cuDNN libraries mapped into this process (Linux: /proc/self/maps), with the
    pip wheel they came from when the path is inside one."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text().splitlines()
        except OSError:
            return ()
    seen: dict[str, LoadedLibrary] = {}
    for line in maps:
        path = line.split(maxsplit=5)[-1] if line.strip() else ""
        found = _LIBRARIES.search(path)
        if not found or path in seen:
            continue
        seen[path] = LoadedLibrary(name=found.group(1), path=path, source=_source_of(path))
    return tuple(seen.values())


def _source_of(path: str) -> str:
    parts = Path(path).parts
    if "nvidia" in parts and "site-packages" in parts:
        package = parts[parts.index("nvidia") + 1] if parts.index("nvidia") + 1 < len(parts) else ""
        return f"pip wheel nvidia/{package}"
    return "system"


def cuda_environment(run: Runner = _run, *, preload: bool = True) -> CudaEnvironment:
    """The whole report (`doctor --json` "cuda")."""
    driver = read_driver(run)
    build = build_cuda_version()
    done, error = preload_cuda_libraries() if preload and driver.present else (False, None)
    return CudaEnvironment(
        driver=driver,
        build_cuda=build,
        problem=driver_problem(driver, build),
        preloaded=done,
        preload_error=error,
        libraries=loaded_libraries(),
        wheels=nvidia_wheels(),
    )
