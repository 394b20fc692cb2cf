"""The CUDA runtime fetched on first use, for the GUI (`offer` and `fetch` run on the offer
dialog's worker thread; `runtime.model.execution.cuda_fetch` does the work).

After a fetch the libraries are loaded into this process (`preload_dlls`), the cached provider
probes are forgotten (CUDA failed its probe before) and the engine is told to reopen its open
model set, so the next Go Live asks for CUDA without restarting the app. At the next start
`cuda_env` loads the fetched folder itself. Nothing here touches Qt.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.tags import Tag

from desktop_app.services import Cancelled, CudaOffer, Progress, ProgressFn, UserError
from runtime.model.execution import cuda_fetch, cuda_user_libs, providers
from runtime.model.execution.cuda_env import (
    DriverInfo,
    build_cuda_version,
    nvidia_wheels,
    read_driver,
)
from runtime.model.store.errors import Cancelled as StoreCancelled

logger = logging.getLogger(__name__)

INDEX_TIMEOUT_S = 30.0  # a stalled connection ends the look-up (and lets the window close)


def _open(url: str) -> Any:
    return urllib.request.urlopen(url, timeout=INDEX_TIMEOUT_S)


@dataclass(frozen=True, kw_only=True)
class CudaSystem:
    """Where the driver, the libraries and the packages come from. The defaults are this
    computer and PyPI; tests pass a fake driver and loader, a loopback index and a folder."""

    driver: Callable[[], DriverInfo] = read_driver
    build_cuda: Callable[[], str | None] = build_cuda_version
    wheels: Callable[[], Mapping[str, str]] = nvidia_wheels
    requirements: Callable[[], tuple[Requirement, ...]] = cuda_fetch.runtime_requirements
    load: cuda_fetch.Loader = ctypes.CDLL
    preload: Callable[..., object] | None = None  # None: ONNX Runtime's preload_dlls
    index_url: str = cuda_fetch.INDEX_URL
    opener: cuda_fetch.Fetcher = _open
    tags: tuple[Tag, ...] | None = None  # None: this interpreter's
    environment: Mapping[str, str] | None = None  # None: this interpreter's markers
    folder: Path | None = None  # None: `cuda_user_libs.user_library_dir` for the build
    clock: Callable[[], float] = time.monotonic


class Rate:
    """Speed and time left of a download, from the bytes done since the first report."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._start: tuple[float, int] | None = None

    def update(self, done: int, total: int) -> tuple[float | None, float | None]:
        now = self._clock()
        if self._start is None:
            self._start = (now, done)
            return None, None
        elapsed, moved = now - self._start[0], done - self._start[1]
        if elapsed <= 0 or moved <= 0:
            return None, None
        speed = moved / elapsed
        return speed, max(0, total - done) / speed


class RuntimeCuda:
    def __init__(
        self,
        *,
        system: CudaSystem | None = None,
        on_installed: Callable[[], None] | None = None,
    ) -> None:
        self.system = system or CudaSystem()
        self._on_installed = on_installed  # the engine: reopen the model at the next Go Live
        self._lock = threading.Lock()
        self._plan: cuda_fetch.FetchPlan | None = None

    def _folder(self) -> Path | None:
        s = self.system
        return s.folder if s.folder is not None else cuda_user_libs.user_library_dir(s.build_cuda())

    def offer(self) -> CudaOffer | None:
        s = self.system
        folder = self._folder()
        reason = cuda_fetch.cuda_runtime_need(
            driver=s.driver(),
            build_cuda=s.build_cuda(),
            wheels=s.wheels(),
            folder=folder,
            load=s.load,
        )
        if reason is None or folder is None:
            return None
        requirements = s.requirements()
        if not requirements:
            logger.info("no CUDA runtime requirements to read (onnxruntime-gpu not installed)")
            return None
        try:
            plan = cuda_fetch.plan_fetch(
                requirements,
                folder=folder,
                index_url=s.index_url,
                opener=s.opener,
                tags=s.tags,
                environment=s.environment,
            )
        except cuda_fetch.CudaFetchError as exc:
            raise UserError(_sentence(exc)) from None
        with self._lock:
            self._plan = plan
        return CudaOffer(reason=reason, total_bytes=plan.total_bytes, files=len(plan.wheels))

    def fetch(self, *, progress: ProgressFn, cancel: threading.Event) -> None:
        with self._lock:
            plan = self._plan
        if plan is None:
            if self.offer() is None:
                return  # nothing to fetch (any more)
            with self._lock:
                plan = self._plan
            assert plan is not None
        rate = Rate(self.system.clock)

        def report(p: cuda_fetch.FetchProgress) -> None:
            speed, eta = rate.update(p.done_bytes, p.total_bytes)
            fraction = p.done_bytes / p.total_bytes if p.total_bytes else None
            progress(Progress("download", p.wheel, fraction, speed=speed, eta=eta))

        try:
            folder = cuda_fetch.fetch_runtime(
                plan, progress=report, cancel=cancel, opener=self.system.opener
            )
        except StoreCancelled:
            raise Cancelled("Fetching the CUDA runtime was cancelled; nothing was kept.") from None
        except cuda_fetch.CudaFetchError as exc:
            raise UserError(_sentence(exc)) from None
        except OSError as exc:  # the user's folder: disk full, no permission
            where = plan.folder
            raise UserError(f"The CUDA runtime could not be kept in {where}: {exc}.") from None
        with self._lock:
            self._plan = None
        loaded, error = cuda_user_libs.preload_from(folder, preload=self.system.preload)
        if not loaded:
            raise UserError(
                f"The CUDA runtime was fetched into {folder} but does not load"
                + (f" ({error})." if error else ".")
            )
        # CUDA failed its probe when the first session opened; ask again with the libraries in.
        providers.reset_probes()
        if self._on_installed is not None:
            self._on_installed()
        logger.info("CUDA runtime loaded from %s; the next session asks for CUDA", folder)


def _sentence(exc: Exception) -> str:
    """The runtime's words in one sentence (they may start with a file name: case is kept)."""
    return f"The CUDA runtime could not be fetched: {str(exc).rstrip('.')}."
