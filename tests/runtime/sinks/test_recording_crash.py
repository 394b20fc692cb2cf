"""A live recording survives its process being killed (the next start saves what it held and
says where), and a second session cannot record to a file a live one is recording to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from runtime.sinks import SinkUnavailable
from runtime.sinks.frame import FrameTiming, LiveFrame
from runtime.sinks.recorder import RecorderConfig, RecorderSink
from runtime.sinks.recording_journal import part_path, recover

ROOT = Path(__file__).resolve().parents[3]

CHILD = """
import sys, time
import numpy as np
from pathlib import Path
from runtime.sinks.frame import FrameTiming, LiveFrame
from runtime.sinks.recorder import RecorderConfig, RecorderSink
rec = RecorderSink(RecorderConfig(path=Path(sys.argv[1]), journal=Path(sys.argv[2])))
rec.open(fps=25)
rng = np.random.default_rng(0)
rec.add_audio(0, (0.1 * rng.standard_normal(16000 * 4)).astype(np.float32))
for i in range(100):  # 4 s of media time, sent at once: the writer takes them in turn
    image = np.full((128, 128, 3), (i * 2) % 256, np.uint8)
    rec.send(LiveFrame(index=i, image=image, timing=FrameTiming(capture=0.0)), False)
while rec.frames_written < 100:
    time.sleep(0.01)
print("recorded", flush=True)
time.sleep(60)
"""


def frame(index: int) -> LiveFrame:
    image = np.zeros((64, 64, 3), np.uint8)
    return LiveFrame(index=index, image=image, timing=FrameTiming(capture=0.0))


def test_a_killed_recording_is_saved_by_the_next_start(tmp_path: Path) -> None:
    out, journal = tmp_path / "talk.mp4", tmp_path / "journal"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out), str(journal)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "recorded"
        assert recover(journal=journal) == []  # a live session's recording is its own
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert not out.exists() and part_path(out).exists()
    found = recover(journal=journal)
    assert len(found) == 1 and found[0].saved_as == out
    assert "were saved as" in found[0].describe() and str(out) in found[0].describe()
    # Fragments are cut at each second's keyframe: all but the last second is kept.
    assert found[0].seconds >= 2.9
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        assert container.streams.audio
    assert frames >= 70
    assert not part_path(out).exists() and list(journal.iterdir()) == []
    assert recover(journal=journal) == []


def test_a_leftover_at_the_same_file_is_saved_aside_when_the_file_exists(tmp_path: Path) -> None:
    out, journal = tmp_path / "talk.mp4", tmp_path / "journal"
    out.write_bytes(b"an earlier recording")
    part_path(out).write_bytes(b"not a video at all")
    rec = RecorderSink(RecorderConfig(path=out, journal=journal))
    rec.claim()
    assert rec.recovered is not None and rec.recovered.saved_as is None
    assert out.read_bytes() == b"an earlier recording"
    rec.close()
    assert not part_path(out).exists()


def test_a_second_session_to_the_same_file_is_refused(tmp_path: Path) -> None:
    out, journal = tmp_path / "talk.mp4", tmp_path / "journal"
    first = RecorderSink(RecorderConfig(path=out, journal=journal))
    first.open(fps=25)
    second = RecorderSink(RecorderConfig(path=out, journal=journal))
    with pytest.raises(SinkUnavailable, match="already recording to"):
        second.open(fps=25)
    for i in range(3):
        first.send(frame(i), False)
    first.close(timeout=5)
    assert first.wait_finished(5) and first.error is None and out.is_file()
    third = RecorderSink(RecorderConfig(path=out, journal=journal))
    third.open(fps=25)  # free again once the first has finished
    third.close(timeout=5)
    assert third.wait_finished(5)
