"""The CUDA runtime's offer in the app (issue 23, item 5): offered once at start-up only where
an NVIDIA driver answers and no CUDA runtime is there, unless the user said "Don't ask again";
the download shows its size, progress and time left; Cancel and a damaged file leave nothing;
a fetched runtime is loaded and the next Go Live asks ONNX Runtime for CUDA.

The real window, runtime services and `cuda_fetch` over the loopback stand-in for PyPI
(`tests.support.pypi_index`); the NVIDIA driver, the system library loader, ONNX Runtime's
`preload_dlls` and whether the CUDA provider initialises are the GPU-side fakes (the CUDA
provider answers once the fetched libraries were preloaded)."""

from __future__ import annotations

import itertools
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from desktop_app import cuda_dialog, cuda_offer
from desktop_app.cuda_dialog import CudaFetchDialog
from desktop_app.live_bridge import LiveState
from desktop_app.main_window import MainWindow
from desktop_app.runtime_services import live as live_services
from desktop_app.runtime_services.cuda import CudaSystem
from runtime.core import paths
from runtime.model.execution import providers
from runtime.model.execution.providers import CPU, CUDA, ProviderProbe
from tests.support.gui_window import *  # noqa: F403 (the window fixtures)
from tests.support.gui_window import WindowFactory
from tests.support.pypi_index import *  # noqa: F403 (the index fixtures)
from tests.support.pypi_index import DRIVER, LINUX, LINUX_ENV, REQS, Index, absent

RUNTIME_WHEEL = "nvidia_cuda_runtime-13.0.1-py3-none-manylinux_2_28_x86_64.whl"
CHOSEN = (  # what the plan takes from `published` for Linux x86_64
    RUNTIME_WHEEL,
    "nvidia_cudnn_cu13-9.1.0-py3-none-manylinux_2_17_x86_64.whl",
    "nvidia_cublas-13.0.0-py3-none-manylinux_2_17_x86_64.whl",
)


@dataclass
class FakeGpu:
    """ONNX Runtime's `preload_dlls` and the CUDA provider's probe: the provider initialises
    only once the fetched libraries were preloaded."""

    preloaded: list[str] = field(default_factory=list)

    def preload(self, **kw: Any) -> None:
        self.preloaded.append(str(kw["directory"]))

    def probe(self, name: str) -> ProviderProbe:
        if name == CUDA and self.preloaded:
            return ProviderProbe(name, True, (CUDA, CPU), "ok")
        if name == CUDA:
            return ProviderProbe(name, False, (CPU,), "falls back to CPU: libcudart.so.13 missing")
        return ProviderProbe(name, True, (name,), "ok")


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGpu]:
    fake = FakeGpu()
    providers.reset_probes()
    monkeypatch.setattr(providers, "compiled_providers", lambda: (CUDA, CPU))
    monkeypatch.setattr(providers, "_probe", fake.probe)
    yield fake
    providers.reset_probes()


@dataclass
class Gate:
    """The network between the app and the index: holds the download after `after` chunks
    of the runtime wheel until `release` (so Cancel lands mid-download, whatever the speed)."""

    after: int | None = None
    released: threading.Event = field(default_factory=threading.Event)

    def open(self, url: str) -> Any:
        response = urllib.request.urlopen(url, timeout=10)
        if self.after is None or not url.endswith(RUNTIME_WHEEL):
            return response
        gate, chunks = self, itertools.count()

        class Held:
            def __enter__(self) -> Held:
                return self

            def __exit__(self, *exc: object) -> None:
                response.close()

            def read(self, n: int) -> bytes:
                if next(chunks) == gate.after:
                    assert gate.released.wait(10), "the test never released the download"
                data: bytes = response.read(n)
                return data

        return Held()


def system(index: Index, gpu: FakeGpu, gate: Gate, **changes: Any) -> CudaSystem:
    ticks = itertools.count()  # one second per reading: the time left is known after 2 chunks
    options: dict[str, Any] = {
        "driver": lambda: DRIVER,
        "build_cuda": lambda: "13.0",
        "wheels": lambda: {},
        "requirements": lambda: tuple(REQS),
        "load": absent,
        "preload": gpu.preload,
        "index_url": f"{index.url}/pypi",
        "opener": gate.open,
        "tags": tuple(LINUX),
        "environment": LINUX_ENV,
        "clock": lambda: float(next(ticks)),
    }
    return CudaSystem(**{**options, **changes})


def cuda_root() -> Path:
    return paths.data_dir() / "cuda"


def offered(qtbot: QtBot, window: MainWindow) -> CudaFetchDialog | None:
    window.check_models()  # what the app does once its window is up
    qtbot.waitUntil(lambda: not window.cuda_offer.looking, timeout=10_000)
    return window.cuda_offer.dialog


def test_offered_only_where_it_helps_and_only_once(
    qtbot: QtBot, make_window: WindowFactory, published: Index, gpu: FakeGpu
) -> None:
    assert offered(qtbot, make_window()) is None  # no NVIDIA driver (the default fake)
    wheels_there = system(published, gpu, Gate(), wheels=lambda: {"nvidia-cuda-runtime": "13"})
    assert offered(qtbot, make_window(cuda=wheels_there)) is None
    cpu_build = system(published, gpu, Gate(), build_cuda=lambda: None)
    assert offered(qtbot, make_window(cuda=cpu_build)) is None

    window = make_window(cuda=system(published, gpu, Gate()))
    dialog = offered(qtbot, window)
    assert dialog is not None and dialog.isVisible()
    assert dialog.offer.total_bytes == sum(len(published.files[f]) for f in CHOSEN)
    text = dialog.summary.text()
    assert text.startswith("RTX 4090 can run the model with CUDA, but the CUDA 13 runtime")
    assert f"Download: {cuda_dialog.human_bytes(dialog.offer.total_bytes)} (3 packages" in text
    dialog.reject()
    qtbot.waitUntil(lambda: window.cuda_offer.dialog is None)
    assert offered(qtbot, window) is None  # once per start
    assert not window.settings.cuda_offer_declined


@pytest.fixture
def gate() -> Iterator[Gate]:
    held = Gate(after=2)
    yield held
    held.released.set()  # a failed test must not leave the worker waiting


def test_progress_with_time_left_then_cancel_leaves_nothing(
    qtbot: QtBot, make_window: WindowFactory, published: Index, gpu: FakeGpu, gate: Gate
) -> None:
    window = make_window(cuda=system(published, gpu, gate))
    dialog = offered(qtbot, window)
    assert dialog is not None
    qtbot.mouseClick(dialog.fetch_button, Qt.MouseButton.LeftButton)
    assert dialog.working and dialog.cancel_button.isVisible()
    assert not dialog.fetch_button.isVisible()
    qtbot.waitUntil(lambda: "MB/s" in dialog.detail.text(), timeout=10_000)
    detail = dialog.detail.text()
    total = cuda_dialog.human_bytes(dialog.offer.total_bytes)
    # Two 1 MB chunks read, one (fake) second apart: 1 MB/s and the rest's time.
    assert detail.startswith(f"2.1 MB of {total}") and "1.0 MB/s" in detail, detail
    assert "about 1s left" in detail, detail
    assert 0 < dialog.progress.value() < 1000
    assert list(cuda_root().rglob("*.whl"))  # mid-download: the partial wheel is on disk

    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    gate.released.set()
    qtbot.waitUntil(lambda: not dialog.working, timeout=10_000)
    assert dialog.detail.text() == cuda_dialog.CANCELLED_TEXT
    assert [p for p in cuda_root().rglob("*")] == [cuda_root() / "cu13"]  # nothing kept
    assert gpu.preloaded == []
    assert dialog.fetch_button.isVisible() and dialog.fetch_button.text() == "&Fetch"


def test_closing_mid_download_cancels_it_and_ends_the_worker(
    qtbot: QtBot, make_window: WindowFactory, published: Index, gpu: FakeGpu, gate: Gate
) -> None:
    window = make_window(cuda=system(published, gpu, gate))
    dialog = offered(qtbot, window)
    assert dialog is not None
    dialog.start()
    qtbot.waitUntil(lambda: "MB/s" in dialog.detail.text(), timeout=10_000)  # held mid-wheel
    flag = dialog._tasks._flag  # the running download's cancel flag

    def release_once_cancelled() -> None:
        # close() blocks the GUI thread until the worker ends, so the held network is let go
        # from here, and only after the close has asked the download to stop.
        if flag.wait(10):
            gate.released.set()

    releaser = threading.Thread(target=release_once_cancelled, daemon=True)
    releaser.start()
    dialog.close()  # closeEvent, not Cancel
    releaser.join(10)
    assert gate.released.is_set()
    assert not dialog._tasks.runner._thread.is_alive()
    assert [p for p in cuda_root().rglob("*")] == [cuda_root() / "cu13"]  # nothing kept
    assert gpu.preloaded == []
    assert not window.settings.cuda_offer_declined


def test_a_damaged_download_is_one_sentence_and_leaves_nothing(
    qtbot: QtBot, make_window: WindowFactory, published: Index, gpu: FakeGpu
) -> None:
    published.damage.add(CHOSEN[2])
    window = make_window(cuda=system(published, gpu, Gate()))
    dialog = offered(qtbot, window)
    assert dialog is not None
    dialog.start()
    qtbot.waitUntil(lambda: not dialog.working, timeout=10_000)
    message = dialog.detail.text()
    assert message == (
        f"The CUDA runtime could not be fetched: {CHOSEN[2]} arrived damaged "
        "(its SHA-256 differs); try again."
    )
    assert dialog.fetch_button.text() == "&Try again"
    assert not any(p.is_file() for p in cuda_root().rglob("*"))
    assert gpu.preloaded == []


def requested_on_open(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The providers each opening of the model set asks ONNX Runtime for (the renderer's)."""
    opened: list[list[str]] = []
    real = live_services.open_model_set

    def spy(graph_dir: Path, **kw: Any) -> Any:
        models = real(graph_dir, **kw)
        opened.append(list(models["renderer"].requested))
        return models

    monkeypatch.setattr(live_services, "open_model_set", spy)
    return opened


def go_live_and_stop(qtbot: QtBot, window: MainWindow) -> None:
    assert window.live.go_live()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.LIVE, timeout=20_000)
    window.live.toggle()
    qtbot.waitUntil(lambda: window.bridge.state == LiveState.IDLE, timeout=10_000)


def test_a_fetched_runtime_is_loaded_and_the_next_go_live_asks_for_cuda(
    qtbot: QtBot,
    make_window: WindowFactory,
    published: Index,
    gpu: FakeGpu,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = requested_on_open(monkeypatch)
    window = make_window(cuda=system(published, gpu, Gate()))
    go_live_and_stop(qtbot, window)
    assert opened == [[CPU]]  # the CUDA libraries are missing: the probe fails

    dialog = offered(qtbot, window)
    assert dialog is not None
    dialog.start()
    qtbot.waitUntil(lambda: dialog.done_ok, timeout=10_000)
    assert dialog.detail.text() == cuda_dialog.DONE_TEXT
    folder = cuda_root() / "cu13" / "lib"
    assert gpu.preloaded == [str(folder)]
    assert sorted(p.name for p in folder.iterdir()) == [
        "installed.json",
        "libcublas.so.13",
        "libcudart.so.13",
        "libcudnn.so.9",
    ]
    assert dialog.close_button.text() == "&Close" and not dialog.fetch_button.isVisible()
    dialog.accept()

    go_live_and_stop(qtbot, window)
    assert opened == [[CPU], [CUDA, CPU]]  # reopened, asking for CUDA first
    assert offered(qtbot, window) is None  # nothing more to offer


def test_dont_ask_again_is_kept_and_help_still_offers(
    qtbot: QtBot, make_window: WindowFactory, published: Index, gpu: FakeGpu
) -> None:
    first = make_window(cuda=system(published, gpu, Gate()))
    dialog = offered(qtbot, first)
    assert dialog is not None
    dialog.dont_ask.setChecked(True)
    qtbot.mouseClick(dialog.close_button, Qt.MouseButton.LeftButton)
    assert first.settings.cuda_offer_declined
    first.close()

    again = make_window(cuda=system(published, gpu, Gate()))
    assert again.settings.cuda_offer_declined
    assert offered(qtbot, again) is None
    assert again.menus.actions.cuda.isVisible()
    again.menus.actions.cuda.trigger()
    qtbot.waitUntil(lambda: again.cuda_offer.dialog is not None, timeout=10_000)


def test_help_says_why_there_is_nothing_to_fetch(qtbot: QtBot, make_window: WindowFactory) -> None:
    window = make_window()  # no NVIDIA driver
    window.menus.actions.cuda.trigger()
    qtbot.waitUntil(lambda: bool(answers(window)), timeout=10_000)
    assert [box.text() for box in answers(window)] == [cuda_offer.NOTHING_TO_FETCH]
    assert window.cuda_offer.dialog is None


def answers(window: MainWindow) -> list[QMessageBox]:
    return [b for b in window.findChildren(QMessageBox) if b.isVisible()]
