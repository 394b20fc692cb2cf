"""`imtalker-cam render` with bad input: a specific message, a non-zero exit, and nothing at OUT."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.media.video_file import Mp4Writer


def render(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "IMTALKER_DATA_DIR": str(tmp_path / "data"),
        "IMTALKER_CACHE_DIR": str(tmp_path / "cache"),
    }
    return subprocess.run(
        [sys.executable, "-m", "runtime.commands.cli", "render", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def render_job(
    tmp_path: Path, avatar: Path, audio: Path, out: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`render --avatar AVATAR --audio AUDIO --out OUT [extra...]`."""
    return render(
        tmp_path, "--avatar", str(avatar), "--audio", str(audio), "--out", str(out), *extra
    )


@pytest.fixture
def portrait(fixtures_dir: Path) -> Path:
    return fixtures_dir / "source_4.png"


@pytest.fixture
def speech(fixtures_dir: Path) -> Path:
    return fixtures_dir / "audio_1.wav"


def check_failed(done: subprocess.CompletedProcess[str], out: Path, *needles: str) -> None:
    assert done.returncode == 1, done.stderr
    message = done.stderr.lower()
    for needle in needles:
        assert needle.lower() in message, done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_not_an_image(tmp_path: Path, speech: Path) -> None:
    bogus = tmp_path / "photo.png"
    bogus.write_bytes(os.urandom(4096))
    out = tmp_path / "out.mp4"
    check_failed(
        render_job(tmp_path, bogus, speech, out),
        out,
        "photo.png",
    )


def test_missing_photo(tmp_path: Path, speech: Path) -> None:
    out = tmp_path / "out.mp4"
    done = render_job(tmp_path, tmp_path / "nope.jpg", speech, out)
    check_failed(done, out, "nope.jpg")


def test_oversized_photo(tmp_path: Path, speech: Path) -> None:
    # A real PNG whose header claims 20000 x 20000 pixels (400 MP).
    big = tmp_path / "big.png"
    Image.new("L", (20000, 20000)).save(big, optimize=False, compress_level=9)
    out = tmp_path / "out.mp4"
    check_failed(
        render_job(tmp_path, big, speech, out),
        out,
        "limit",
    )


def test_photo_without_face(tmp_path: Path, speech: Path) -> None:
    flat = tmp_path / "wall.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((400, 400, 3)) * 40 + 100).astype(np.uint8)).save(flat)
    out = tmp_path / "out.mp4"
    done = render_job(tmp_path, flat, speech, out)
    check_failed(done, out, "no face", "--no-crop")


def test_silent_audio(tmp_path: Path, portrait: Path) -> None:
    silent = tmp_path / "silence.wav"
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-c", "1", str(silent), "trim", "0", "1"], check=True
    )
    out = tmp_path / "out.mp4"
    check_failed(
        render_job(tmp_path, portrait, silent, out),
        out,
        "silent",
    )


def test_corrupt_audio(tmp_path: Path, portrait: Path) -> None:
    corrupt = tmp_path / "speech.mp3"
    corrupt.write_bytes(b"ID3" + os.urandom(2000))
    out = tmp_path / "out.mp4"
    check_failed(
        render_job(tmp_path, portrait, corrupt, out),
        out,
        "speech.mp3",
    )


def test_output_folder_missing(tmp_path: Path, portrait: Path, speech: Path) -> None:
    out = tmp_path / "no" / "such" / "dir" / "out.mp4"
    done = render_job(tmp_path, portrait, speech, out)
    assert done.returncode == 1
    assert "does not exist" in done.stderr
    assert not out.exists()


def test_output_is_a_folder(tmp_path: Path, portrait: Path, speech: Path) -> None:
    done = render_job(tmp_path, portrait, speech, tmp_path)
    assert done.returncode == 1
    assert "mp4" in done.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_unwritable_output(tmp_path: Path, portrait: Path, speech: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    out = locked / "out.mp4"
    try:
        done = render_job(tmp_path, portrait, speech, out)
    finally:
        locked.chmod(0o700)
    check_failed(done, out, "not writable")


def test_model_not_installed(tmp_path: Path, portrait: Path, speech: Path) -> None:
    out = tmp_path / "out.mp4"
    done = render_job(tmp_path, portrait, speech, out)
    check_failed(done, out, "models download")


def test_weights_folder_incomplete(tmp_path: Path, portrait: Path, speech: Path) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "renderer.ckpt").write_bytes(b"not really")
    out = tmp_path / "out.mp4"
    done = render_job(tmp_path, portrait, speech, out, "--weights", str(weights))
    check_failed(done, out, "generator.ckpt", "wav2vec2-base-960h/config.json")


@pytest.mark.slow
def test_tampered_weights(
    tmp_path: Path, portrait: Path, speech: Path, recipe_weights: Path
) -> None:
    """A checkpoint cut short (an interrupted copy) is refused at conversion, by name."""
    weights = tmp_path / "weights"
    (weights / "wav2vec2-base-960h").mkdir(parents=True)
    for name in ("renderer.ckpt", "generator.ckpt"):
        (weights / name).symlink_to(recipe_weights / name)
    for f in (recipe_weights / "wav2vec2-base-960h").iterdir():
        target = weights / "wav2vec2-base-960h" / f.name
        if f.name == "pytorch_model.bin":
            with f.open("rb") as src:
                target.write_bytes(src.read(5_000_000))
        else:
            target.write_bytes(f.read_bytes())
    out = tmp_path / "out.mp4"
    done = render_job(tmp_path, portrait, speech, out, "--weights", str(weights))
    check_failed(done, out, "pytorch_model.bin")


def test_existing_output_survives_a_failure(tmp_path: Path, speech: Path) -> None:
    out = tmp_path / "out.mp4"
    with Mp4Writer(out, width=64, height=64, fps=25) as w:
        w.write(np.zeros((64, 64, 3), np.uint8))
    before = out.read_bytes()
    bogus = tmp_path / "x.png"
    bogus.write_bytes(b"nope")
    done = render_job(tmp_path, bogus, speech, out)
    assert done.returncode == 1
    assert out.read_bytes() == before


def test_unwritable_system_folder(tmp_path: Path, portrait: Path, speech: Path) -> None:
    """Works as root too: /proc/self refuses new files for everyone."""
    out = Path("/proc/self/out.mp4")
    done = render_job(tmp_path, portrait, speech, out)
    assert done.returncode == 1
    assert "not writable" in done.stderr
