"""MP4 writing (round trip, atomicity, full disk, bad folders) and driving-video reading."""

from __future__ import annotations

import errno
import io
import logging
import os
from pathlib import Path
from typing import IO

import av
import numpy as np
import numpy.typing as npt
import pytest

import runtime.media.video_file as video_file
from runtime.media.video_file import (
    DiskFullError,
    Mp4Writer,
    OutputPathError,
    VideoEncoderError,
    VideoFileError,
    VideoReader,
    VideoReadError,
    read_video_frames,
)


def _frames(n: int, width: int = 64, height: int = 48) -> list[npt.NDArray[np.uint8]]:
    """Smooth, distinct frames (lossy H.264 keeps them close)."""
    ys, xs = np.mgrid[0:height, 0:width]
    out = []
    for i in range(n):
        r = (xs * 255 // max(1, width - 1) + 5 * i) % 256
        g = (ys * 255 // max(1, height - 1)).astype(np.int64)
        b = np.full_like(xs, (40 + 7 * i) % 256)
        out.append(np.stack([r, g, b], axis=2).astype(np.uint8))
    return out


def _probe(path: Path) -> dict[str, object]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info: dict[str, object] = {
            "codec": video.codec_context.name,
            "pix_fmt": video.codec_context.pix_fmt,
            "size": (video.codec_context.width, video.codec_context.height),
            "fps": float(video.average_rate) if video.average_rate else None,
        }
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
        info["frames"] = frames
    with av.open(str(path)) as container:
        if container.streams.audio:
            audio = container.streams.audio[0]
            info["audio_codec"] = audio.codec_context.name
            info["audio_rate"] = audio.codec_context.sample_rate
            samples = [f.to_ndarray() for f in container.decode(audio)]
            decoded = np.concatenate(samples, axis=1)
            info["audio"] = decoded
            assert audio.duration is not None
            info["audio_duration"] = float(audio.duration * audio.time_base)
    return info


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


# -- writer: round trip --------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [25, 30])
def test_round_trip_with_audio(tmp_path: Path, fps: int) -> None:
    path = tmp_path / "talk.mp4"
    n, rate = 40, 16_000
    audio_seconds = n / fps - 0.01  # slightly shorter than the video, as padded speech is
    t = np.arange(round(audio_seconds * rate)) / rate
    speech = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    frames = _frames(n)
    with Mp4Writer(path, width=64, height=48, fps=fps, audio=speech, audio_rate=rate) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.codec_name == "libx264"
    assert _leftovers(tmp_path) == []

    info = _probe(path)
    assert info["codec"] == "h264"
    assert info["pix_fmt"] == "yuv420p"
    assert info["size"] == (64, 48)
    assert info["fps"] == pytest.approx(fps)
    decoded = info["frames"]
    assert isinstance(decoded, list) and len(decoded) == n
    for got, sent in zip(decoded, frames, strict=True):
        assert np.abs(got.astype(int) - sent).mean() < 6
    assert info["audio_codec"] == "aac"
    assert info["audio_rate"] == rate
    assert abs(float(info["audio_duration"]) - audio_seconds) < 1 / fps  # type: ignore[arg-type]
    decoded_audio = info["audio"]
    assert isinstance(decoded_audio, np.ndarray)
    middle = decoded_audio[0, rate // 4 : rate // 2]
    assert float(np.sqrt(np.mean(middle**2))) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_audio_at_an_odd_rate_is_resampled_for_aac(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    speech = (0.3 * np.sin(np.arange(12_345) / 7)).astype(np.float32)  # 1 s at 12345 Hz
    with Mp4Writer(path, width=32, height=32, fps=25, audio=speech, audio_rate=12_345) as w:
        for frame in _frames(25, 32, 32):
            w.write(frame)
    info = _probe(path)
    assert info["audio_rate"] == 48_000
    assert abs(float(info["audio_duration"]) - 1.0) < 0.04  # type: ignore[arg-type]


def test_video_only_and_faststart(tmp_path: Path) -> None:
    path = tmp_path / "mute.mp4"
    with Mp4Writer(path, width=64, height=48) as writer:
        for frame in _frames(10):
            writer.write(frame)
    info = _probe(path)
    assert "audio_codec" not in info
    assert len(info["frames"]) == 10  # type: ignore[arg-type]
    head = path.read_bytes()[:64]
    assert head.index(b"moov") < 64  # index first: plays while downloading
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # ordinary, umask-based permissions


def test_overwrites_existing_file_only_on_success(tmp_path: Path) -> None:
    """With `overwrite` (the render's --overwrite); without it an existing file is never
    replaced (tests/runtime/commands/test_output_files.py)."""
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous render")
    with (
        pytest.raises(RuntimeError),
        Mp4Writer(path, width=64, height=48, overwrite=True) as writer,
    ):
        writer.write(_frames(1)[0])
        raise RuntimeError("render failed")
    assert path.read_bytes() == b"previous render"
    with Mp4Writer(path, width=64, height=48, overwrite=True) as writer:
        writer.write(_frames(1)[0])
    assert path.read_bytes()[4:8] == b"ftyp"


# -- writer: atomicity -----------------------------------------------------------------------


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError])
def test_interrupt_mid_write_leaves_nothing(tmp_path: Path, error: type[BaseException]) -> None:
    path = tmp_path / "never.mp4"
    audio = np.zeros(16_000, np.float32) + 0.1
    with pytest.raises(error), Mp4Writer(path, width=64, height=48, audio=audio) as writer:
        for i, frame in enumerate(_frames(20)):
            writer.write(frame)
            if i == 10:
                assert _leftovers(tmp_path)  # really writing, to a temporary file
                raise error()
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_frame_aborts_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "bad.mp4"
    with pytest.raises(ValueError, match="shape"), Mp4Writer(path, width=64, height=48) as w:
        w.write(_frames(1)[0])
        w.write(np.zeros((48, 64, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_no_frames_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    with pytest.raises(VideoFileError, match="no frames"), Mp4Writer(path, width=64, height=48):
        pass
    assert list(tmp_path.iterdir()) == []


def test_odd_size_and_fps_are_rejected_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        Mp4Writer(tmp_path / "a.mp4", width=63, height=48)
    with pytest.raises(ValueError, match="fps"):
        Mp4Writer(tmp_path / "a.mp4", width=64, height=48, fps=24)


# -- writer: destination problems ---------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="does not exist"):
        Mp4Writer(tmp_path / "no" / "such" / "out.mp4", width=64, height=48)


def test_path_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="is a folder"):
        Mp4Writer(tmp_path, width=64, height=48)


def test_parent_is_a_file(tmp_path: Path) -> None:
    parent = tmp_path / "file.txt"
    parent.write_text("x")
    with pytest.raises(OutputPathError, match="not a folder"):
        Mp4Writer(parent / "out.mp4", width=64, height=48)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_unwritable_folder(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: permission bits do not stop writes")
        with pytest.raises(OutputPathError, match="not writable"):
            Mp4Writer(folder / "out.mp4", width=64, height=48)
    finally:
        folder.chmod(0o755)


class _NearlyFullDisk(io.FileIO):
    """The temporary file on a disk with ``space`` bytes left: then ENOSPC, like the kernel."""

    def __init__(self, path: Path, space: int) -> None:
        super().__init__(path, "r+")
        self.space = space

    def write(self, data: object) -> int:
        size = memoryview(data).nbytes  # type: ignore[arg-type]
        if size > self.space:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.space -= size
        return super().write(data)  # type: ignore[arg-type]


@pytest.mark.parametrize("space", [100, 60_000])
def test_full_disk_gives_specific_error_and_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, space: int
) -> None:
    real_open = video_file._open_temp_output

    def open_on_full_disk(path: Path) -> tuple[Path, IO[bytes]]:
        tmp, handle = real_open(path)
        handle.close()
        return tmp, _NearlyFullDisk(tmp, space)

    monkeypatch.setattr(video_file, "_open_temp_output", open_on_full_disk)
    path = tmp_path / "big.mp4"
    rng = np.random.default_rng(5)
    with (
        pytest.raises(DiskFullError, match="disk is full") as info,
        Mp4Writer(path, width=128, height=96, crf=0, preset="ultrafast") as writer,
    ):
        for _ in range(30):  # noise at crf 0: far more than 60 kB
            writer.write(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    assert "no partial file" in str(info.value)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_disk_filling_up_while_finishing_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = _frames(3)
    reference = tmp_path / "reference.mp4"
    with Mp4Writer(reference, width=64, height=48) as writer:
        for frame in frames:
            writer.write(frame)
    size = reference.stat().st_size
    reference.unlink()

    real_open = video_file._open_temp_output
    devices: list[_NearlyFullDisk] = []

    def open_on_full_disk(path: Path) -> tuple[Path, IO[bytes]]:
        tmp, handle = real_open(path)
        handle.close()
        devices.append(_NearlyFullDisk(tmp, size - 200))  # the index no longer fits
        return tmp, devices[-1]

    monkeypatch.setattr(video_file, "_open_temp_output", open_on_full_disk)
    path = tmp_path / "out.mp4"
    writer = Mp4Writer(path, width=64, height=48)
    with pytest.raises(DiskFullError), writer:
        for frame in frames:
            writer.write(frame)
        written_before_close = size - 200 - devices[0].space
    assert written_before_close < size - 200  # so the failure came from finishing the file
    assert list(tmp_path.iterdir()) == []


# -- encoder choice ------------------------------------------------------------------------


def test_falls_back_to_mpeg4_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "fallback.mp4"
    with (
        caplog.at_level(logging.WARNING, logger="runtime.media.video_file"),
        Mp4Writer(path, width=64, height=48, codecs=("no_such_h264", "mpeg4")) as writer,
    ):
        for frame in _frames(5):
            writer.write(frame)
    assert writer.codec_name == "mpeg4"
    assert "no H.264 encoder" in caplog.text
    assert _probe(path)["codec"] == "mpeg4"


def test_no_encoder_at_all_is_clear(tmp_path: Path) -> None:
    with (
        pytest.raises(VideoEncoderError, match=r"no usable video encoder.*no_such_h264"),
        Mp4Writer(tmp_path / "x.mp4", width=64, height=48, codecs=("no_such_h264",)),
    ):
        pass
    assert list(tmp_path.iterdir()) == []


# -- reader --------------------------------------------------------------------------------


def test_reads_driving_fixture(fixtures_dir: Path) -> None:
    with VideoReader(fixtures_dir / "driving_1.mp4") as reader:
        assert reader.fps == 25.0
        assert (reader.info.width, reader.info.height) == (512, 512)
        assert reader.info.frame_count == 100
        assert reader.info.duration == pytest.approx(4.0)
        frames = list(reader)
    assert len(frames) == 100
    assert frames[0].shape == (512, 512, 3) and frames[0].dtype == np.uint8


def test_read_video_frames_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rt.mp4"
    sent = _frames(12)
    with Mp4Writer(path, width=64, height=48, fps=30) as writer:
        for frame in sent:
            writer.write(frame)
    fps, frames = read_video_frames(path)
    got = list(frames)
    assert fps == 30.0 and len(got) == 12
    assert np.abs(got[5].astype(int) - sent[5]).mean() < 6


def test_reader_errors(tmp_path: Path, fixtures_dir: Path) -> None:
    with pytest.raises(VideoReadError, match="not found"):
        VideoReader(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(6).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match="not a video"):
        VideoReader(junk)
    with pytest.raises(VideoReadError, match="no video track"):
        VideoReader(fixtures_dir / "audio_1.wav")
    # The fixture keeps its index at the end, so half a file has no index at all.
    data = (fixtures_dir / "driving_1.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError), VideoReader(cut) as reader:
        list(reader)
