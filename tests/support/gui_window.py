"""The real main window over the runtime engine with hardware fakes, for GUI tests (pytest
fixtures: import them into a test module)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from desktop_app.app import build_window
from desktop_app.main_window import MainWindow
from desktop_app.runtime_services import runtime_backend
from desktop_app.runtime_services.cuda import CudaSystem
from runtime.media.audio_file import load_audio
from tests.support.fakes import virtual_camera as fakecam
from tests.support.fakes.camera import FakeCv2
from tests.support.fakes.sound_device import FakeSoundDevice
from tests.support.pypi_index import NO_DRIVER
from tests.support.stub_graphs import write_stub_graphs

__all__ = ["app_dirs", "graphs", "hops", "make_window", "window"]  # fixtures for `import *`

ENGINE_THREADS = ("live-worker", "pacer", "audio-watchdog", "fake-mic", "recorder", "webcam")
ENGINE_END_MS = 120_000  # a bound only a leaked thread reaches


@dataclass
class Hops:
    """Every hop the engine made, with when it was recorded (engine thread -> test)."""

    records: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, record: Any) -> None:
        with self.lock:
            self.records.append(record)

    def since(self, t: float) -> list[Any]:
        with self.lock:
            return [h for h in self.records if h.started > t]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_stub_graphs(tmp_path_factory.mktemp("graphs"))


@pytest.fixture
def app_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CONFIG", "DATA", "CACHE"):
        monkeypatch.setenv(f"IMTALKER_{name}_DIR", str(tmp_path / name.lower()))
    return tmp_path


@pytest.fixture
def hops() -> Hops:
    return Hops()


WindowFactory = Callable[..., MainWindow]


@pytest.fixture
def make_window(
    qtbot: QtBot, app_dirs: Path, graphs: Path, fixtures_dir: Path, hops: Hops
) -> Iterator[WindowFactory]:
    """Build the real window over the runtime with hardware fakes; closed after the test."""
    fakecam.register()
    speech = load_audio(fixtures_dir / "audio_1.wav")
    made: list[MainWindow] = []

    def make(
        *,
        vcam_backend: str = "fake",
        sound: Any = None,
        camera: Any = None,
        on_hop: Callable[[Any], None] | None = None,
        graphs_dir: Path | None = None,
        cuda: CudaSystem | None = None,
    ) -> MainWindow:
        backend = runtime_backend(
            graphs_dir=graphs_dir or graphs,
            sound_device=sound or FakeSoundDevice(speech, 16_000, name="Fake USB Mic", loop=True),
            camera_module=camera or FakeCv2(),
            webcam_lister=lambda: ["0: Fake Camera"],
            vcam_backend=vcam_backend,
            on_hop=on_hop or hops,
            cuda=cuda or CudaSystem(driver=lambda: NO_DRIVER),
        )
        win = build_window(backend)
        qtbot.addWidget(win)
        win.show()
        activate(qtbot, win)
        made.append(win)
        return win

    yield make
    for win in made:
        win.close()

    # Closing stops the engine with a short budget; on a loaded machine a thread can end a
    # little after it (and a stopped one takes a moment to leave `threading.enumerate()`),
    # a leaked one never does.
    def ended() -> None:
        alive = [t.name for t in threading.enumerate() if t.name in ENGINE_THREADS]
        assert not alive, f"engine threads {alive} outlived the window"

    qtbot.waitUntil(ended, timeout=ENGINE_END_MS)


@pytest.fixture
def window(make_window: WindowFactory) -> MainWindow:
    return make_window()


def activate(qtbot: QtBot, win: MainWindow) -> None:
    """Make `win` the active window: shortcuts (number keys, F5) only reach that one.
    Offscreen, activation does not come back by itself after a dialog closes."""
    handle = win.windowHandle()
    assert handle is not None
    handle.requestActivate()
    qtbot.waitUntil(win.isActiveWindow)
