"""Checks of an installed imtalker-cam (a wheel in a fresh virtual environment, the PyInstaller
bundle): `doctor --json`, a render and the desktop app starting offscreen, each run as its own
process from a folder outside the checkout with an environment that cannot import it.
"""

from __future__ import annotations

import json
import os
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_DROPPED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONSAFEPATH")


@dataclass(frozen=True, kw_only=True)
class Install:
    """How to run one installed copy: its `imtalker-cam` command and a folder for its state."""

    command: tuple[str, ...]
    home: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
        env.update(
            IMTALKER_DATA_DIR=str(self.home / "data"),
            IMTALKER_CACHE_DIR=str(self.home / "cache"),
            IMTALKER_CONFIG_DIR=str(self.home / "config"),
            QT_QPA_PLATFORM="offscreen",
        )
        return env

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return self.run_program([*self.command, *args], timeout=timeout)

    def run_program(
        self, argv: Sequence[str], *, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """`argv` in the install's environment, from a folder of its own (not the checkout)."""
        cwd = self.home / "cwd"
        cwd.mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            list(argv),
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"{done.args}: exit {done.returncode}\n{done.stderr[-4000:]}"
    return done


def speech_clip(src: Path, dst: Path, seconds: float) -> Path:
    """The first `seconds` of a WAV file (a short render)."""
    with wave.open(str(src)) as w:
        params = w.getparams()
        data = w.readframes(int(params.framerate * seconds))
    with wave.open(str(dst), "wb") as out:
        out.setparams(params)
        out.writeframes(data)
    return dst


def check_doctor(install: Install) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(ok(install.run("doctor", "--json")).stdout)
    cpu = [p for p in report["providers"] if p["name"] == "CPUExecutionProvider"]
    assert cpu and cpu[0]["initialises"], report["providers"]
    return report


def check_render(install: Install, *, avatar: Path, speech: Path, extra: Sequence[str]) -> Path:
    out = install.home / "out.mp4"
    ok(
        install.run(
            "render", "--avatar", str(avatar), "--audio", str(speech), "--out", str(out), *extra
        )
    )
    assert out.stat().st_size > 1000
    return out


def check_app(install: Install) -> str:
    """The desktop app opens its window offscreen and quits; the built-in sample avatar (a
    packaged resource) is in the gallery after this first start."""
    done = ok(install.run("--check-startup", timeout=120))
    assert "the desktop app started" in done.stderr, done.stderr
    avatars = install.home / "data" / "avatars"
    assert any(avatars.rglob("*.png")), f"no sample avatar in {avatars}: {done.stderr}"
    return done.stderr
