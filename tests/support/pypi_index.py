"""A stand-in for PyPI's JSON API on 127.0.0.1 with small nvidia-* wheels, and the NVIDIA
driver and library loader as fakes: what the CUDA runtime's fetch is tested against (pytest
fixtures `index` and `published`: import them into a test module)."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.tags import Tag

from runtime.model.execution.cuda_env import DriverInfo, Gpu

__all__ = ["index", "published"]  # fixtures for `import *`

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


NO_DRIVER = DriverInfo(present=False, reason="no NVIDIA driver (nvidia-smi not found)")
"""What the GUI tests' computer has unless a test says otherwise: never a CUDA offer, so no
test asks the real package index."""

DRIVER = DriverInfo(
    present=True,
    driver_version="580.65",
    max_cuda="13.0",
    gpus=(Gpu(name="RTX 4090", memory_mib=24564),),
)


def absent(name: str) -> object:
    """A library loader on a system without CUDA."""
    raise OSError(f"{name}: cannot open shared object file")
