"""The CUDA runtime fetched on first use (a worker thread: network and disk; `cuda_runtime_need`
is quick and fine on any thread).

The desktop bundle and a `pipx`/`uv tool` install carry onnxruntime-gpu but not the CUDA and
cuDNN libraries it loads (the nvidia-* wheels of its `cuda` and `cudnn` extras, about 1.5 GB:
past GitHub's release-asset limit in a bundle). Where an NVIDIA driver answers and neither
those wheels nor a system CUDA are there, `cuda_runtime_need` says so; `plan_fetch` asks the
package index which wheels that means for this platform and how big they are (what the offer
shows); `fetch` downloads them with progress and cancel, checks each SHA-256 and puts their
libraries in one per-user folder, from which `preload_cuda_libraries` (ONNX Runtime's
`preload_dlls(directory=...)`) loads them before the first CUDA session.

Nothing runs pip: the bundle has none. A wheel is a zip archive; only its shared libraries
are kept (flat in `<data dir>/cuda/cu<major>/lib`), which is what `preload_dlls` loads.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import shutil
import sys
import threading
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.requirements import Requirement
from packaging.tags import Tag, sys_tags
from packaging.utils import parse_wheel_filename
from packaging.version import InvalidVersion, Version

from runtime.model.execution.cuda_env import DriverInfo, driver_problem
from runtime.model.execution.cuda_user_libs import (
    MARKER_FILE,
    is_installed,
)
from runtime.model.store.errors import Cancelled, ModelStoreError

logger = logging.getLogger(__name__)

INDEX_URL = "https://pypi.org/pypi"
"""PyPI's JSON API: `<index>/<name>/json` lists every release's files with size and SHA-256."""

EXTRAS = ("cuda", "cudnn")
"""onnxruntime-gpu's extras that name the CUDA and cuDNN runtime wheels it needs."""

_CHUNK = 1 << 20

Fetcher = Callable[[str], Any]
"""Opens a URL for reading (urllib.request.urlopen by default; tests pass a loopback URL)."""
Loader = Callable[[str], object]
"""Loads a shared library by name (ctypes.CDLL by default); raises OSError when absent."""


class CudaFetchError(ModelStoreError):
    """The CUDA runtime could not be planned, downloaded or installed (one sentence)."""


@dataclass(frozen=True, kw_only=True)
class WheelFile:
    name: str  # distribution, e.g. nvidia-cuda-runtime
    version: str
    filename: str
    url: str
    size: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class FetchPlan:
    """What `fetch` would download: the offer shows `total_bytes`."""

    wheels: tuple[WheelFile, ...]
    folder: Path

    @property
    def total_bytes(self) -> int:
        return sum(w.size for w in self.wheels)


@dataclass(frozen=True, kw_only=True)
class FetchProgress:
    wheel: str
    done_bytes: int
    total_bytes: int


def runtime_requirements(dist: str = "onnxruntime-gpu") -> tuple[Requirement, ...]:
    """The nvidia-* requirements of onnxruntime-gpu's `cuda` and `cudnn` extras, from its
    installed metadata (so they always match the onnxruntime-gpu in use)."""
    try:
        lines = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return ()
    out = []
    for line in lines:
        req = Requirement(line)
        if req.marker is None:
            continue
        if any(req.marker.evaluate({"extra": extra}) for extra in EXTRAS):
            out.append(req)
    return tuple(out)


def _system_library_names(major: int) -> tuple[str, ...]:
    if sys.platform == "win32":
        return (f"cudart64_{major}.dll", f"cudart64_{major}0.dll")
    return (f"libcudart.so.{major}",)


def cuda_runtime_need(
    *,
    driver: DriverInfo,
    build_cuda: str | None,
    wheels: Mapping[str, str],
    folder: Path | None,
    load: Loader = ctypes.CDLL,
) -> str | None:
    """Why the CUDA runtime should be fetched (the offer's sentence), or None when it should
    not: no driver, a CPU build, a driver too old for the build (fetching would not help),
    the runtime wheels installed, a finished fetch, or a system CUDA that loads."""
    major = (build_cuda or "").split(".", 1)[0]
    if not driver.present or not major.isdigit() or folder is None:
        return None
    if driver_problem(driver, build_cuda) is not None:
        return None
    if any(name.lower().startswith("nvidia-cuda-runtime") for name in wheels):
        return None
    if is_installed(folder):
        return None
    for name in _system_library_names(int(major)):
        try:
            load(name)
        except OSError:
            continue
        return None
    gpu = driver.gpus[0].name if driver.gpus else "the NVIDIA GPU"
    return (
        f"{gpu} can run the model with CUDA, but the CUDA {major} runtime is not installed: "
        "fetch it once (NVIDIA's libraries from PyPI, kept in this user's folder)"
    )


def _open_json(opener: Fetcher, url: str) -> dict[str, Any]:
    try:
        with opener(url) as response:
            data: dict[str, Any] = json.loads(response.read().decode("utf-8"))
            return data
    except (OSError, ValueError) as exc:
        raise CudaFetchError(f"could not ask the package index ({url}): {exc}") from exc


def _best_wheel(
    releases: Mapping[str, Any], req: Requirement, tags: frozenset[Tag]
) -> tuple[Version, dict[str, Any]] | None:
    best: tuple[Version, dict[str, Any]] | None = None
    for text, files in releases.items():
        try:
            version = Version(text)
        except InvalidVersion:
            continue
        if version.is_prerelease or not req.specifier.contains(version):
            continue
        for file in files:
            filename = str(file.get("filename", ""))
            if file.get("yanked") or not filename.endswith(".whl"):
                continue
            if not tags & set(parse_wheel_filename(filename)[3]):
                continue
            if best is None or version > best[0]:
                best = (version, file)
    return best


def plan_fetch(
    requirements: Iterable[Requirement],
    *,
    folder: Path,
    index_url: str = INDEX_URL,
    opener: Fetcher = urllib.request.urlopen,
    tags: Iterable[Tag] | None = None,
    environment: Mapping[str, str] | None = None,
) -> FetchPlan:
    """The wheels (with their nvidia-* dependencies) this platform needs, newest first that
    fits each requirement. Asks the index; downloads nothing."""
    accepted = frozenset(tags if tags is not None else sys_tags())
    env = dict(environment) if environment is not None else None
    todo = list(requirements)
    seen: dict[str, WheelFile] = {}
    while todo:
        req = todo.pop(0)
        key = req.name.lower()
        if key in seen:
            continue
        info = _open_json(opener, f"{index_url.rstrip('/')}/{req.name}/json")
        found = _best_wheel(info.get("releases", {}), req, accepted)
        if found is None:
            raise CudaFetchError(f"the package index has no {req} wheel for this computer")
        version, file = found
        seen[key] = WheelFile(
            name=req.name,
            version=str(version),
            filename=str(file["filename"]),
            url=str(file["url"]),
            size=int(file["size"]),
            sha256=str(file["digests"]["sha256"]),
        )
        release = _open_json(opener, f"{index_url.rstrip('/')}/{req.name}/{version}/json")
        for line in release.get("info", {}).get("requires_dist") or []:
            dep = Requirement(line)
            wanted = dep.marker is None or dep.marker.evaluate(env or {"extra": ""})
            if wanted and dep.name.lower().startswith("nvidia-"):
                todo.append(dep)
    return FetchPlan(wheels=tuple(seen.values()), folder=folder)


def _download(
    wheel: WheelFile,
    into: Path,
    *,
    opener: Fetcher,
    done_before: int,
    total: int,
    progress: Callable[[FetchProgress], None],
    cancel: threading.Event,
) -> Path:
    target = into / wheel.filename
    digest = hashlib.sha256()
    done = 0
    try:
        with opener(wheel.url) as response, open(target, "wb") as out:
            while chunk := response.read(_CHUNK):
                if cancel.is_set():
                    raise Cancelled("fetching the CUDA runtime was cancelled")
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                progress(
                    FetchProgress(
                        wheel=wheel.filename, done_bytes=done_before + done, total_bytes=total
                    )
                )
    except OSError as exc:
        raise CudaFetchError(f"downloading {wheel.filename} failed: {exc}") from exc
    if digest.hexdigest() != wheel.sha256:
        raise CudaFetchError(f"{wheel.filename} arrived damaged (its SHA-256 differs); try again")
    return target


def _is_library(member: str) -> bool:
    name = PurePosixPath(member).name
    return name.endswith(".dll") or ".so" in name or name.endswith(".dylib")


def _extract_libraries(archive: Path, lib: Path) -> list[str]:
    kept = []
    with zipfile.ZipFile(archive) as wheel:
        for member in wheel.infolist():
            parts = PurePosixPath(member.filename).parts
            if member.is_dir() or not _is_library(member.filename):
                continue
            if not {"lib", "bin"} & set(parts[:-1]):
                continue
            name = parts[-1]
            with wheel.open(member) as src, open(lib / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
            kept.append(name)
    return kept


def fetch_runtime(
    plan: FetchPlan,
    *,
    progress: Callable[[FetchProgress], None],
    cancel: threading.Event,
    opener: Fetcher = urllib.request.urlopen,
) -> Path:
    """Download the plan's wheels and keep their libraries in `plan.folder`, which is
    replaced only once everything arrived and checked out. Raises `Cancelled` or
    `CudaFetchError`; either way nothing half-done is left behind."""
    folder = plan.folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = folder.with_name(f".{folder.name}-incomplete")
    shutil.rmtree(work, ignore_errors=True)
    lib = work / "lib"
    lib.mkdir(parents=True)
    try:
        done = 0
        libraries: dict[str, list[str]] = {}
        for wheel in plan.wheels:
            archive = _download(
                wheel,
                work,
                opener=opener,
                done_before=done,
                total=plan.total_bytes,
                progress=progress,
                cancel=cancel,
            )
            done += wheel.size
            libraries[wheel.filename] = _extract_libraries(archive, lib)
            archive.unlink()
        marker = {"wheels": {w.name: w.version for w in plan.wheels}, "libraries": libraries}
        (lib / MARKER_FILE).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(lib, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("CUDA runtime fetched into %s (%d wheels)", folder, len(plan.wheels))
    return folder
