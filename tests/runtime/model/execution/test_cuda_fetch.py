"""The CUDA runtime fetched on first use (issue 23, item 5): when it is offered, which wheels a
plan takes and how big they are, the download with progress, cancel and a damaged file, and
the preload from the per-user folder.

The package index is a loopback server speaking PyPI's JSON API with small stand-in wheels;
the driver (`DriverInfo`), the system library loader and ONNX Runtime's `preload_dlls` are the
GPU-side fakes."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.tags import Tag

from runtime.model.execution import cuda_fetch
from runtime.model.execution.cuda_env import DriverInfo, Gpu
from runtime.model.execution.cuda_fetch import CudaFetchError, FetchProgress, plan_fetch
from runtime.model.store.errors import Cancelled

LINUX = [Tag("py3", "none", "manylinux_2_28_x86_64"), Tag("py3", "none", "manylinux_2_17_x86_64")]


def wheel_bytes(name: str, version: str, libs: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("nvidia/__init__.py", "")
        for path, data in libs.items():
            z.writestr(path, data)
        z.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", f"Name: {name}\n")
    return buf.getvalue()


@dataclass
class Index:
    """PyPI's JSON API on 127.0.0.1: `/pypi/<name>/json`, `/pypi/<name>/<version>/json` and
    the files. `damage` flips a byte of the named file as it is served."""

    files: dict[str, bytes] = field(default_factory=dict)
    releases: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    requires: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    damage: set[str] = field(default_factory=set)
    url: str = ""

    def add(
        self,
        name: str,
        version: str,
        filename: str,
        data: bytes,
        *,
        requires: list[str] | None = None,
        yanked: bool = False,
    ) -> None:
        self.files[filename] = data
        self.releases.setdefault(name, {}).setdefault(version, []).append(
            {
                "filename": filename,
                "url": f"{self.url}/files/{filename}",
                "size": len(data),
                "digests": {"sha256": hashlib.sha256(data).hexdigest()},
                "yanked": yanked,
            }
        )
        self.requires[(name, version)] = requires or []


@pytest.fixture
def index() -> Iterator[Index]:
    state = Index()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            parts = self.path.strip("/").split("/")
            if parts[0] == "files" and parts[1] in state.files:
                body = bytearray(state.files[parts[1]])
                if parts[1] in state.damage:
                    body[len(body) // 2] ^= 0xFF
                self._send(bytes(body), "application/octet-stream")
            elif parts[0] == "pypi" and len(parts) == 3 and parts[1] in state.releases:
                self._send(json.dumps({"releases": state.releases[parts[1]]}).encode())
            elif parts[0] == "pypi" and len(parts) == 4 and parts[1] in state.releases:
                deps = state.requires.get((parts[1], parts[2]), [])
                self._send(json.dumps({"info": {"requires_dist": deps}}).encode())
            else:
                self.send_error(404)

        def _send(self, body: bytes, kind: str = "application/json") -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def published(index: Index) -> Index:
    """cuda-runtime 13.0.1 (and an older 13.0.0, a yanked 13.1.0, a Windows-only 13.0.2),
    cudnn 9.1.0 which needs cublas; 3 MB of runtime so a download takes several chunks."""
    big = bytes(range(256)) * (3 * 4096)
    rt = "nvidia_cuda_runtime-{}-py3-none-manylinux_2_28_x86_64.whl"
    index.add("nvidia-cuda-runtime", "13.0.0", rt.format("13.0.0"), wheel_bytes("rt", "0", {}))
    libs = {"nvidia/cu13/lib/libcudart.so.13": big, "nvidia/cu13/include/cuda.h": b"//"}
    index.add("nvidia-cuda-runtime", "13.0.1", rt.format("13.0.1"), wheel_bytes("rt", "1", libs))
    index.add(
        "nvidia-cuda-runtime",
        "13.0.2",
        "nvidia_cuda_runtime-13.0.2-py3-none-win_amd64.whl",
        wheel_bytes("rt", "2", {"nvidia/cu13/bin/cudart64_13.dll": b"w"}),
    )
    index.add(
        "nvidia-cuda-runtime",
        "13.1.0",
        rt.format("13.1.0"),
        wheel_bytes("rt", "3", {}),
        yanked=True,
    )
    index.add(
        "nvidia-cudnn-cu13",
        "9.1.0",
        "nvidia_cudnn_cu13-9.1.0-py3-none-manylinux_2_17_x86_64.whl",
        wheel_bytes("cudnn", "9", {"nvidia/cudnn/lib/libcudnn.so.9": b"cudnn"}),
        requires=["nvidia-cublas", 'nvidia-nccl; sys_platform == "win32"', "numpy"],
    )
    index.add(
        "nvidia-cublas",
        "13.0.0",
        "nvidia_cublas-13.0.0-py3-none-manylinux_2_17_x86_64.whl",
        wheel_bytes("cublas", "13", {"nvidia/cu13/lib/libcublas.so.13": b"cublas"}),
    )
    return index


REQS = [Requirement("nvidia-cuda-runtime~=13.0"), Requirement("nvidia-cudnn-cu13~=9.0")]
LINUX_ENV = {"sys_platform": "linux", "platform_machine": "x86_64", "extra": ""}


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
    assert cuda_fetch.is_installed(folder)
    done = [s.done_bytes for s in seen]
    assert done == sorted(done) and done[-1] == p.total_bytes and len(done) > len(p.wheels)
    assert not list(folder.parent.glob(".*incomplete"))

    calls: list[dict[str, object]] = []
    assert cuda_fetch.preload_from(folder, preload=lambda **kw: calls.append(kw)) == (True, None)
    assert calls == [{"cuda": True, "cudnn": True, "msvc": True, "directory": str(folder)}]

    def broken(**_kw: object) -> None:
        raise OSError("libcudart.so.13: wrong ELF class")

    ok, error = cuda_fetch.preload_from(folder, preload=broken)
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


DRIVER = DriverInfo(
    present=True,
    driver_version="580.65",
    max_cuda="13.0",
    gpus=(Gpu(name="RTX 4090", memory_mib=24564),),
)


def _absent(name: str) -> object:
    raise OSError(f"{name}: cannot open shared object file")


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
    (folder / cuda_fetch.MARKER_FILE).write_text("{}")
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
