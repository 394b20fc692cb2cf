"""`render`'s work is bounded before it starts: a driving video or speech longer than
`--max-length` is refused with its numbers (a header that claims 900,000 s, too many frames),
and a driving video's sound is never dropped without a word."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from runtime.media.audio_file import NoAudioTrackError, TooLongError, load_audio
from runtime.media.video_file import Mp4Writer, VideoReader, VideoTooLongError


def clip(path: Path, *, frames: int, pts: list[int] | None = None) -> Path:
    """A tiny MPEG-4 video; `pts` places its frames (a header claiming any length)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 25)
        stream.codec_context.time_base = Fraction(1, 25)
        for i, t in enumerate(pts or range(frames)):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i, np.uint8), format="rgb24")
            frame.pts = t
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_a_header_claiming_900000_seconds_is_refused_when_opened(tmp_path: Path) -> None:
    video = clip(tmp_path / "liar.mkv", frames=3, pts=[0, 1, 900_000 * 25])
    with pytest.raises(VideoTooLongError, match=r"900000 s .*the limit is 600 s"):
        VideoReader(video, max_seconds=600)


def test_frames_past_the_limit_stop_the_decoding(tmp_path: Path) -> None:
    video = clip(tmp_path / "many.mp4", frames=100)  # 4 s
    with VideoReader(video, max_seconds=10) as reader:
        assert sum(1 for _ in reader) == 100
    with pytest.raises(VideoTooLongError, match="4 s by its timestamps"):
        VideoReader(video, max_seconds=2)
    reader = VideoReader(video, max_seconds=10)
    reader.max_seconds = 1.0  # as if the header had not said
    with reader, pytest.raises(VideoTooLongError, match="more than 50 frames"):
        for _ in reader:
            pass


def test_no_sound_track_is_its_own_error(tmp_path: Path) -> None:
    video = clip(tmp_path / "mute.mp4", frames=5)
    with pytest.raises(NoAudioTrackError):
        load_audio(video)


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
        timeout=300,
        env=env,
    )


def test_a_driving_video_whose_sound_is_longer_than_the_limit_is_refused(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    """2 s of picture, 4 s of sound, limit 3 s: refused with the numbers, never rendered
    silent (the sound's refusal was read as "no sound")."""
    video = tmp_path / "talk.mp4"
    rng = np.random.default_rng(0)
    sound = (0.2 * rng.standard_normal(16000 * 4)).astype(np.float32)
    with Mp4Writer(video, width=64, height=64, fps=25, audio=sound, preset="ultrafast") as w:
        for _ in range(50):
            w.write(np.zeros((64, 64, 3), np.uint8))
    out = tmp_path / "out.mp4"
    done = render(
        tmp_path,
        "--avatar", str(fixtures_dir / "source_4.png"),
        "--driving", str(video),
        "--out", str(out),
        "--max-length", "3",
        "--graphs", str(tmp_path),  # refused before any model is read
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "talk.mp4 is too long" in done.stderr and "the limit is 3 s" in done.stderr
    assert "--max-length" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_the_audio_limit_is_the_same_option(tmp_path: Path, fixtures_dir: Path) -> None:
    with pytest.raises(TooLongError):
        load_audio(fixtures_dir / "audio_1.wav", max_seconds=1)
    out = tmp_path / "out.mp4"
    done = render(
        tmp_path,
        "--avatar", str(fixtures_dir / "source_4.png"),
        "--audio", str(fixtures_dir / "audio_1.wav"),
        "--out", str(out),
        "--max-length", "1",
        "--graphs", str(tmp_path),  # refused before any model is read
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "the limit is 1 s" in done.stderr and "--max-length" in done.stderr
