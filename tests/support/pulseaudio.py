"""A real, user-space PulseAudio server for the live-audio tests (the recipe in
tests/data/recipes/pulseaudio: a null sink whose monitor is the default input)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.data import PULSEAUDIO_RECIPE

CLIENT_VARIABLES = ("HOME", "XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH", "PULSE_SERVER")


@contextmanager
def pulseaudio_server(base: Path, *, tools: Sequence[str]) -> Iterator[dict[str, str]]:
    """Start the recipe's server with its state in `base`; yield the variables its clients
    need (`CLIENT_VARIABLES`); stop it on exit. Skips the test when one of `tools`, the recipe
    or the server itself is missing."""
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not installed (packaging/bootstrap.sh installs PulseAudio)")
    recipe = PULSEAUDIO_RECIPE
    if not (recipe / "up.sh").is_file():
        pytest.fail(f"the PulseAudio recipe is missing from {recipe}")
    source = 'source "$1" "$2" >/dev/null 2>&1 && env -0'
    up = subprocess.run(
        ["bash", "-c", source, "_", str(recipe / "up.sh"), str(base)],
        capture_output=True,
        timeout=60,
    )
    try:
        if up.returncode != 0:
            pytest.skip(f"PulseAudio did not start: {up.stderr.decode(errors='replace')[-300:]}")
        env: dict[str, str] = {}
        for item in up.stdout.split(b"\0"):
            key, _, value = item.decode().partition("=")
            if key in CLIENT_VARIABLES:
                env[key] = value
        yield env
    finally:
        subprocess.run(["bash", str(recipe / "down.sh"), str(base)], check=False, timeout=30)
