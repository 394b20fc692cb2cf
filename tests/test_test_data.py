"""The repository carries its own test data (issue 23, item 1): every file the suite reads is in
tests/data, whole, and no test, bench or model tool reaches outside the repository for it."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from tests.support import data

ROOT = Path(__file__).resolve().parents[1]


def _sums() -> dict[str, str]:
    sums: dict[str, str] = {}
    for line in data.SUMS.read_text(encoding="utf-8").splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.removeprefix("./")] = digest
    return sums


def test_every_data_file_is_present_and_whole() -> None:
    sums = _sums()
    # Both model versions, the real fixtures and the audio recipe are listed.
    for name in (
        "golden/README.md",
        "golden/renderer_golden.npz",
        "golden/v2/generator_golden.npz",
        "fixtures/imtalker/source_1.png",
        "fixtures/imtalker/driving_1.mp4",
        "fixtures/imtalker/audio_1.wav",
        "recipes/pulseaudio/up.sh",
    ):
        assert name in sums, name
    for name, digest in sums.items():
        path = data.DATA / name
        assert path.is_file(), f"{path} is missing"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} is damaged"


def test_every_data_file_is_listed() -> None:
    """A file added without its sum would go unchecked."""
    listed = set(_sums())
    present = {
        p.relative_to(data.DATA).as_posix()
        for p in data.DATA.rglob("*")
        if p.is_file() and p.name != "SHA256SUMS" and p != data.DATA / "README.md"
    }
    assert present == listed


def test_the_data_is_tracked_by_git() -> None:
    """A clone gets only what git tracks: an untracked golden file would pass here and fail in
    every fresh clone."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(
        ["git", "ls-files", "tests/data"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    tracked = {line.removeprefix("tests/data/") for line in done.stdout.splitlines()}
    assert set(_sums()) | {"README.md", "SHA256SUMS"} <= tracked


SHARED = re.compile(
    r"""["'/]\.\./shared|parent\s*/\s*["']shared["']|IMTALKER_SHARED|/work/shared"""
)


def test_nothing_reads_the_old_shared_folder() -> None:
    """The inputs once came from ../shared beside the checkout; a path to it anywhere in the
    code, tests, benches or scripts would fail only in a clone that lacks it."""
    offenders = []
    for folder in ("tests", "models", "runtime", "desktop_app", "packaging", ".ci"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in {".py", ".sh", ".toml", ""} or not path.is_file():
                continue
            if path == Path(__file__) or "data" in path.relative_to(ROOT).parts[:2]:
                continue
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if SHARED.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
