"""The real app under Xvfb: the `imtalker-cam` command on a first run (model set-up dialog),
and the app with hardware fakes and stub graphs, idle and live. Screenshots land in
tests/output/ at 1280x800 and 1920x1080."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from tests.support.waiting import WaitTimeout, wait_until
from tests.support.xvfb import grab_screen, xvfb

ROOT = Path(__file__).resolve().parents[2]
SIZES = [(1280, 800), (1920, 1080)]


def _env(display: str, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DISPLAY": display,
        "QT_QPA_PLATFORM": "xcb",
        "IMTALKER_CONFIG_DIR": str(home / "config"),
        "IMTALKER_DATA_DIR": str(home / "data"),
        "IMTALKER_CACHE_DIR": str(home / "cache"),
    }


def _windows(env: dict[str, str]) -> str:
    return subprocess.run(
        ["xwininfo", "-root", "-tree"], env=env, capture_output=True, text=True, check=False
    ).stdout


class _App:
    """A child process whose stdout lines are collected by a reader thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,  # (gui_app --quit-when-live closes on a line from the test)
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.rstrip())
            self.lines.put(line.rstrip())

    def wait_for(self, prefix: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.proc.poll() is None, "app exited:\n" + "\n".join(self.log)
                continue
            if line.startswith(prefix):
                return line
        pytest.fail(f"no {prefix!r} from the app:\n" + "\n".join(self.log))


@contextmanager
def _running(args: list[str], env: dict[str, str]) -> Iterator[_App]:
    app = _App(args, env)
    try:
        yield app
    finally:
        app.proc.terminate()
        app.proc.wait(timeout=20)


def _wait_for_window(env: dict[str, str], title: str, app: _App, timeout: float = 60) -> None:
    def shown() -> bool:
        if f'"{title}"' in _windows(env):
            return True
        assert app.proc.poll() is None, "app exited:\n" + "\n".join(app.log)
        return False

    try:
        wait_until(shown, timeout, poll_s=0.1)
    except WaitTimeout:
        pytest.fail(f"no window titled {title!r} appeared:\n" + "\n".join(app.log))


def _grab_when_painted(display: str, shot: Path, width: int, height: int) -> None:
    """Grab the screen into `shot` until it shows painted windows (bounded), not after a fixed
    pause that a loaded machine may outlast."""

    def painted() -> bool:
        grab_screen(display, shot)
        try:
            _check_painted(shot, width, height)
        except AssertionError:
            return False
        return True

    wait_until(painted, 60.0, poll_s=0.1, what="painted windows")


def _check_painted(shot: Path, width: int, height: int) -> None:
    image = QImage(str(shot))
    assert (image.width(), image.height()) == (width, height)
    # A painted window covers most of the (black) root window and shows more than a flat fill.
    samples = [image.pixel(x, y) for x in range(0, width, 8) for y in range(0, height, 8)]
    root_black = 0xFF000000
    assert sum(p != root_black for p in samples) * 64 > 900 * 600
    assert len(set(samples)) >= 20


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_first_run_opens_the_model_setup_under_xvfb(
    output_dir: Path, tmp_path: Path, width: int, height: int
) -> None:
    """`imtalker-cam` (no weights yet): the main window, then the guided model set-up."""
    shot = output_dir / f"model_setup_{width}x{height}.png"
    with xvfb(width, height) as display:
        env = _env(display, tmp_path)
        with _running([sys.executable, "-m", "runtime.commands.cli"], env) as app:
            _wait_for_window(env, "imtalker-cam", app)
            # Qt adds the app's name to a dialog's title on X11.
            _wait_for_window(env, "Set up the model — imtalker-cam", app)
            _grab_when_painted(display, shot, width, height)
    _check_painted(shot, width, height)
    # The first run also left the built-in sample avatar in the gallery.
    avatars = list((tmp_path / "data" / "avatars").glob("*/avatar.png"))
    assert len(avatars) == 1


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_main_window_idle_under_xvfb(
    output_dir: Path, tmp_path: Path, width: int, height: int
) -> None:
    from tests.support.stub_graphs import write_stub_graphs

    graphs = write_stub_graphs(tmp_path / "graphs")
    shot = output_dir / f"main_window_idle_{width}x{height}.png"
    args = [
        sys.executable,
        "-m",
        "tests.support.gui_app",
        "--graphs",
        str(graphs),
        "--size",
        f"{width}x{height}",
    ]
    with xvfb(width, height) as display:
        env = _env(display, tmp_path)
        with _running(args, env) as app:
            app.wait_for("ready")
            _wait_for_window(env, "imtalker-cam", app)
            _grab_when_painted(display, shot, width, height)
            assert "Set up the model" not in _windows(env)  # graphs are there: no set-up
    _check_painted(shot, width, height)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_main_window_live_under_xvfb(
    output_dir: Path, tmp_path: Path, fixtures_dir: Path, width: int, height: int
) -> None:
    """Live with stub graphs and fixture speech; closing the window mid-inference exits 0
    without Qt thread warnings."""
    from tests.support.stub_graphs import write_stub_graphs

    graphs = write_stub_graphs(tmp_path / "graphs")
    shot = output_dir / f"main_window_live_{width}x{height}.png"
    args = [
        sys.executable,
        "-m",
        "tests.support.gui_app",
        "--graphs",
        str(graphs),
        "--size",
        f"{width}x{height}",
        "--audio",
        str(fixtures_dir / "audio_1.wav"),
        "--go-live",
        "--quit-when-live",
    ]
    with xvfb(width, height) as display:
        env = _env(display, tmp_path)
        with _running(args, env) as app:
            app.wait_for("live")
            _grab_when_painted(display, shot, width, height)
            assert app.proc.stdin is not None
            app.proc.stdin.write("quit\n")  # close the window now, mid-inference
            app.proc.stdin.flush()
            code = app.proc.wait(timeout=30)
    _check_painted(shot, width, height)
    log = "\n".join(app.log)
    assert code == 0, log
    for warning in ("QThread", "Destroyed while", "QObject::", "Traceback"):
        assert warning not in log, log
