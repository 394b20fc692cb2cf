"""The shared validators: ranges, finite checks, path kinds and output-vs-input aliasing."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

from runtime.core import validate as v
from runtime.core.validate import ValidationError


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, float("nan")])
def test_non_finite_is_refused_with_range(bad: float) -> None:
    with pytest.raises(ValidationError, match=r"cfg must be a finite number in 1\.\.5"):
        v.CFG.check(bad)


@pytest.mark.parametrize(
    ("rng", "value", "text"),
    [
        (v.CFG, -5.0, r"cfg -5 is out of range: allowed 1\.\.5"),
        (v.YAW, 1e9, r"yaw 1000000000 is out of range: allowed -30\.\.30 degrees"),
        (v.PITCH, 20.5, r"allowed -20\.\.20 degrees"),
        (v.GAZE_X, -1.01, r"gaze-x .* allowed -1\.\.1"),
        (v.SEED, -2, r"seed -2 is out of range: allowed -1\.\.4294967295"),
        (v.NFE, 1_000_000, r"nfe 1000000 is out of range: allowed 2\.\.50"),
        (v.BATCH, 0, r"batch 0 is out of range"),
        (v.HOP, 51, r"hop 51 is out of range: allowed 1\.\.50 frames"),
    ],
)
def test_out_of_range_names_value_and_range(rng: v.Range, value: float, text: str) -> None:
    with pytest.raises(ValidationError, match=text) as info:
        rng.check(value)
    assert info.value.subject == rng.name


def test_limits_are_inclusive_and_values_come_back() -> None:
    assert v.CFG.check(1.0) == 1.0 and v.CFG.check(5) == 5.0
    assert v.YAW.check(-30) == -30.0
    assert v.SEED.check(2**32 - 1) == 2**32 - 1
    assert v.NFE.check(10) == 10


def test_integer_ranges_refuse_fractions_and_label_overrides() -> None:
    with pytest.raises(ValidationError, match=r"--nfe must be a whole number"):
        v.NFE.check(2.5, label="--nfe")


def test_every_range_is_documented_and_ordered() -> None:
    names = [r.name for r in v.ALL_RANGES]
    assert len(names) == len(set(names))
    for r in v.ALL_RANGES:
        assert r.lo < r.hi and math.isfinite(r.lo) and math.isfinite(r.hi)


def test_frame_size_and_choices() -> None:
    assert v.check_frame_size(1280, 720) == (1280, 720)
    with pytest.raises(ValidationError, match="even"):
        v.check_frame_size(641, 480)
    with pytest.raises(ValidationError, match=r"64\.\.4096 pixels"):
        v.check_frame_size(100000, 720)
    with pytest.raises(ValidationError, match="one of 25, 30"):
        v.check_choice(24, v.FPS_CHOICES, label="--fps")


def test_memory_check_refuses_before_allocating() -> None:
    v.check_memory(10, what="--batch 4", available=100)
    with pytest.raises(ValidationError, match=r"--batch 1000 needs about 1\.0 GiB .* 0\.5 GiB"):
        v.check_memory(2**30, what="--batch 1000", available=2**29)
    assert (v.available_memory() or 1) > 0


# -- paths --------------------------------------------------------------------------------


def test_input_must_be_a_regular_readable_file(tmp_path: Path) -> None:
    f = tmp_path / "a.wav"
    f.write_bytes(b"x")
    assert v.check_input_file(f, label="--audio") == f
    with pytest.raises(ValidationError, match="file not found"):
        v.check_input_file(tmp_path / "missing.wav", label="--audio")
    with pytest.raises(ValidationError, match="is a folder; a regular file is needed"):
        v.check_input_file(tmp_path, label="--audio")
    with pytest.raises(ValidationError, match="a part of the path is a file"):
        v.check_input_file(f / "x.wav", label="--audio")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "talk.mp4"
    os.mkfifo(fifo)
    # Opening a FIFO with no writer blocks forever; stat-only checking returns at once.
    with pytest.raises(ValidationError, match=r"--driving .* is a named pipe \(FIFO\)"):
        v.check_input_file(fifo, label="--driving")


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="POSIX permissions")
def test_unreadable_input_and_unwritable_folder(tmp_path: Path) -> None:
    f = tmp_path / "a.png"
    f.write_bytes(b"x")
    f.chmod(0)
    with pytest.raises(ValidationError, match="permission denied"):
        v.check_input_file(f, label="--avatar")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ValidationError, match="not writable"):
            v.check_output_file(ro / "out.mp4", label="--out")
    finally:
        ro.chmod(0o700)


def test_output_aliasing_an_input_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "talk.mp4"
    src.write_bytes(b"video")
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.mp4"
    link.symlink_to(src)
    hard = tmp_path / "hard.mp4"
    os.link(src, hard)
    aliases = [src, tmp_path / "sub" / ".." / "talk.mp4", link, hard, Path(os.path.relpath(src))]
    for alias in aliases:
        with pytest.raises(ValidationError, match="same file as --driving"):
            v.check_output_file(alias, label="--out", inputs=[("--driving", src)], overwrite=True)
    assert src.read_bytes() == b"video"


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    assert v.check_output_file(out, label="--out") == out
    out.write_bytes(b"keep")
    with pytest.raises(ValidationError, match="already exists; add --overwrite"):
        v.check_output_file(out, label="--out")
    assert v.check_output_file(out, label="--out", overwrite=True) == out
    with pytest.raises(ValidationError, match="already exists; ask first"):
        v.check_output_file(out, label="Recording", overwrite_hint="ask first")


def test_output_folder_and_kind(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"--record folder .* does not exist"):
        v.check_output_file(tmp_path / "nope" / "r.mp4", label="--record")
    with pytest.raises(ValidationError, match=r"must name a \.mp4 file"):
        v.check_output_file(tmp_path / "r.avi", label="--out", suffix=".mp4")
    (tmp_path / "d.mp4").mkdir()
    with pytest.raises(ValidationError, match="exists and is a folder"):
        v.check_output_file(tmp_path / "d.mp4", label="--out", overwrite=True)
    f = tmp_path / "file"
    f.write_bytes(b"")
    with pytest.raises(ValidationError, match=r"--out folder .* is a file, not a folder"):
        v.check_output_file(f / "r.mp4", label="--out")


def test_same_file_is_not_fooled_by_case_on_a_case_sensitive_fs(tmp_path: Path) -> None:
    a = tmp_path / "a.mp4"
    a.write_bytes(b"1")
    b = tmp_path / "A.mp4"
    b.write_bytes(b"2")
    assert not v.same_file(a, b)
    assert v.same_file(a, tmp_path / "." / "a.mp4")
