"""A render's output file: a file that appears at OUT meanwhile is never replaced, the temporary
file of a killed render is removed by the next one, and a long legal name works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.media.video_file import Mp4Writer, OutputAppearedError, remove_leftovers

FRAME = np.zeros((64, 64, 3), np.uint8)


def write(out: Path, **options: bool) -> None:
    with Mp4Writer(out, width=64, height=64, fps=25, preset="ultrafast", **options) as w:
        for _ in range(3):
            w.write(FRAME)


def test_a_file_that_appears_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    writer = Mp4Writer(out, width=64, height=64, fps=25, preset="ultrafast")
    with pytest.raises(OutputAppearedError) as caught, writer as w:
        w.write(FRAME)
        out.write_bytes(b"the user's own file")
    assert out.read_bytes() == b"the user's own file"
    assert caught.value.saved_as == tmp_path / "out-1.mp4"
    assert (tmp_path / "out-1.mp4").stat().st_size > 0
    assert "--overwrite" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out-1.mp4", "out.mp4"]


def test_overwrite_replaces_it(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    write(out, overwrite=True)
    assert out.read_bytes()[4:8] == b"ftyp"


def test_a_long_legal_name_works(tmp_path: Path) -> None:
    out = tmp_path / ("v" * 250 + ".mp4")  # 254 bytes: legal; the temporary name is longer
    write(out)
    assert out.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


CHILD = """
import sys, time
import numpy as np
from runtime.media.video_file import Mp4Writer
with Mp4Writer(sys.argv[1], width=64, height=64, fps=25, preset="ultrafast") as w:
    w.write(np.zeros((64, 64, 3), np.uint8))
    print("writing", flush=True)
    time.sleep(60)
"""


def test_the_temporary_file_of_a_killed_render_is_removed_next_time(tmp_path: Path) -> None:
    out = tmp_path / ("k" * 250 + ".mp4")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing"
        left = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
        assert len(left) == 1
        assert remove_leftovers(out).paths == ()  # in use: another render's work in progress
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert left[0].exists()
    removed = remove_leftovers(out)
    assert removed.paths == (left[0],)
    assert list(tmp_path.iterdir()) == []
