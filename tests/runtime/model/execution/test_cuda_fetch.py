"""The CUDA runtime fetched on first use (issue 23, item 5): when it is offered, which wheels a
plan takes and how big they are, the download with progress, cancel and a damaged file, and
the preload from the per-user folder.

The package index is a loopback server speaking PyPI's JSON API with small stand-in wheels
(`tests.support.pypi_index`); the driver (`DriverInfo`), the system library loader and ONNX
Runtime's `preload_dlls` are the GPU-side fakes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from packaging.tags import Tag

from runtime.model.execution import cuda_fetch, cuda_user_libs
from runtime.model.execution.cuda_env import DriverInfo
from runtime.model.execution.cuda_fetch import CudaFetchError, FetchProgress, plan_fetch
from runtime.model.store.errors import Cancelled
from tests.support.pypi_index import *  # noqa: F403 (the index fixtures)
from tests.support.pypi_index import DRIVER, LINUX, LINUX_ENV, REQS, Index
from tests.support.pypi_index import absent as _absent


def plan(index: Index, folder: Path) -> cuda_fetch.FetchPlan:
    return plan_fetch(
        REQS, folder=folder, index_url=f"{index.url}/pypi", tags=LINUX, environment=LINUX_ENV
    )


def test_the_plan_takes_the_newest_fitting_wheel_for_this_platform_and_its_nvidia_deps(
    published: Index, tmp_path: Path
) -> None:
    p = plan(published, tmp_path / "cuda")
    chosen = {w.name: w.version for w in p.wheels}
    # 13.1.0 is yanked, 13.0.2 has no Linux wheel; cublas comes with cudnn, the Windows-only
    # and non-nvidia dependencies do not.
    assert chosen == {
        "nvidia-cuda-runtime": "13.0.1",
        "nvidia-cudnn-cu13": "9.1.0",
        "nvidia-cublas": "13.0.0",
    }
    assert p.total_bytes == sum(len(published.files[w.filename]) for w in p.wheels)


def test_no_wheel_for_this_computer_is_one_sentence(published: Index, tmp_path: Path) -> None:
    with pytest.raises(CudaFetchError, match=r"no nvidia-cuda-runtime~=13.0 wheel"):
        plan_fetch(
            REQS,
            folder=tmp_path,
            index_url=f"{published.url}/pypi",
            tags=[Tag("py3", "none", "macosx_14_0_arm64")],
        )


def test_fetch_keeps_the_libraries_reports_progress_and_preloads_them(
    published: Index, tmp_path: Path
) -> None:
    p = plan(published, tmp_path / "cuda" / "cu13" / "lib")
    seen: list[FetchProgress] = []
    folder = cuda_fetch.fetch_runtime(p, progress=seen.append, cancel=threading.Event())
    assert sorted(f.name for f in folder.iterdir()) == [
        "installed.json",
        "libcublas.so.13",
        "libcudart.so.13",
        "libcudnn.so.9",
    ]
    assert cuda_user_libs.is_installed(folder)
    done = [s.done_bytes for s in seen]
    assert done == sorted(done) and done[-1] == p.total_bytes and len(done) > len(p.wheels)
    assert not list(folder.parent.glob(".*incomplete"))

    calls: list[dict[str, object]] = []
    assert cuda_user_libs.preload_from(folder, preload=lambda **kw: calls.append(kw)) == (
        True,
        None,
    )
    assert calls == [{"cuda": True, "cudnn": True, "msvc": True, "directory": str(folder)}]

    def broken(**_kw: object) -> None:
        raise OSError("libcudart.so.13: wrong ELF class")

    ok, error = cuda_user_libs.preload_from(folder, preload=broken)
    assert not ok and error == "OSError: libcudart.so.13: wrong ELF class"


def test_cancel_and_damage_leave_nothing_behind(published: Index, tmp_path: Path) -> None:
    folder = tmp_path / "cuda" / "cu13" / "lib"
    cancel = threading.Event()

    def stop_after_first_chunk(_p: FetchProgress) -> None:
        cancel.set()

    with pytest.raises(Cancelled):
        cuda_fetch.fetch_runtime(
            plan(published, folder), progress=stop_after_first_chunk, cancel=cancel
        )
    assert not folder.exists() and not list(folder.parent.iterdir())

    published.damage.add("nvidia_cublas-13.0.0-py3-none-manylinux_2_17_x86_64.whl")
    with pytest.raises(CudaFetchError, match=r"nvidia_cublas-13\.0\.0.* arrived damaged"):
        cuda_fetch.fetch_runtime(
            plan(published, folder), progress=lambda _p: None, cancel=threading.Event()
        )
    assert not folder.exists() and not list(folder.parent.iterdir())


def test_the_offer_is_made_only_where_it_helps(tmp_path: Path) -> None:
    folder = tmp_path / "cu13"

    def need(**kw: Any) -> str | None:
        args: dict[str, Any] = {
            "driver": DRIVER,
            "build_cuda": "13.0",
            "wheels": {},
            "folder": folder,
            "load": _absent,
        }
        return cuda_fetch.cuda_runtime_need(**{**args, **kw})

    sentence = need()
    assert sentence is not None
    assert sentence.startswith("RTX 4090 can run the model with CUDA, but the CUDA 13 runtime")
    assert need(driver=DriverInfo(present=False, reason="no NVIDIA driver")) is None
    assert need(build_cuda=None) is None  # a CPU-only onnxruntime
    old = DriverInfo(present=True, driver_version="550.1", max_cuda="12.4", gpus=DRIVER.gpus)
    assert need(driver=old) is None  # the driver must be updated first; fetching won't help
    assert need(wheels={"nvidia-cuda-runtime": "13.0.96"}) is None
    assert need(load=lambda name: name) is None  # a system CUDA loads
    folder.mkdir()
    (folder / cuda_user_libs.MARKER_FILE).write_text("{}")
    assert need() is None  # fetched already


def test_the_requirements_are_onnxruntime_gpus_own() -> None:
    reqs = cuda_fetch.runtime_requirements()
    if not reqs:
        pytest.skip("onnxruntime-gpu is not installed here (no CUDA extras to read)")
    names = {r.name for r in reqs}
    assert "nvidia-cuda-runtime" in names or any(n.startswith("nvidia-cuda-runtime") for n in names)
    assert any(n.startswith("nvidia-cudnn") for n in names)
    assert all(n.startswith("nvidia-") for n in names)


def test_doctor_shows_the_offer() -> None:
    from runtime.commands.doctor_report import format_cuda

    offer = "RTX 4090 can run the model with CUDA, but the CUDA 13 runtime is not installed"
    cuda = {
        "driver": {"present": True, "driver_version": "580.65", "max_cuda": "13.0"},
        "build_cuda": "13.0",
        "wheels": {},
        "fetch_offer": offer,
    }
    assert f"  {offer}" in format_cuda(cuda)
    assert not any("CUDA 13 runtime" in line for line in format_cuda({**cuda, "fetch_offer": None}))
