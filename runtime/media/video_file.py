"""MP4 output and driving-video input with PyAV (runs on the caller's thread).

:class:`Mp4Writer` and :class:`VideoReader` hold an open file; use each from one thread (the
render job's worker thread, or the CLI's main thread). Nothing here is shared between threads.

The writer is atomic: frames go to a hidden temporary file next to the destination, which is
moved into place only when the ``with`` block ends without an exception. Any exception,
including KeyboardInterrupt or a full disk, deletes the temporary file, so the destination path
never holds a half-written video. The temporary file is held while it is written
(`runtime.core.leftovers`), so the one a killed render left is removed by the next render to the
same destination; its name fits NAME_MAX whatever the destination's. Without `overwrite` the
final move never replaces a file, not even one that appeared while the video was written.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

import av
import av.error
import numpy as np
import numpy.typing as npt
import soxr

from runtime.core.files import fit_name
from runtime.core.leftovers import Removed, hold, remove_abandoned
from runtime.core.signals import deferred_stop_signals
from runtime.core.validate import ValidationError, check_input_file

logger = logging.getLogger(__name__)

#: Video encoders tried in order. libx264 ships in PyAV's wheels; the platform H.264 encoders
#: follow; MPEG-4 Part 2 is the last resort (plays in desktop players, not in browsers).
DEFAULT_VIDEO_CODECS: Final = ("libx264", "libopenh264", "h264_mf", "h264_videotoolbox", "mpeg4")
_H264_CODECS: Final = frozenset({"libx264", "libopenh264", "h264_mf", "h264_videotoolbox"})
SUPPORTED_FPS: Final = (25, 30)
#: Sample rates AAC encodes natively; other rates are resampled to 48 kHz first.
_AAC_RATES: Final = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
_AAC_FALLBACK_RATE: Final = 48_000
_AAC_FRAME: Final = 1024
_AUDIO_BIT_RATE: Final = 96_000
_FALLBACK_BIT_RATE: Final = 4_000_000
_O_BINARY: Final = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


class VideoFileError(Exception):
    """Base class of this module's errors."""


class OutputPathError(VideoFileError):
    """The output file cannot be created where the user asked (folder missing, read-only...)."""


class DiskFullError(VideoFileError):
    """The disk filled up while writing; no partial file was left behind."""


class OutputAppearedError(OutputPathError):
    """A file appeared at the destination while the video was written (no `overwrite`): it
    was left alone and the video saved under `saved_as` (None: not saved)."""

    def __init__(self, message: str, saved_as: Path | None) -> None:
        super().__init__(message)
        self.saved_as = saved_as


class VideoEncoderError(VideoFileError):
    """No usable video encoder in this FFmpeg build."""


class VideoReadError(VideoFileError):
    """A driving video cannot be read (missing, not a video, corrupt, no video track)."""


class VideoTooLongError(VideoReadError):
    """A driving video is longer, or has more frames, than the caller's limit."""


class Mp4Writer:
    """Write uint8 RGB frames (and an optional mono audio track) to an MP4 file, atomically.

    Usage::

        with Mp4Writer(path, width=512, height=512, fps=25, audio=samples, audio_rate=16000) as w:
            for frame in frames:
                w.write(frame)

    The destination folder is checked when the writer is created (:class:`OutputPathError`).
    H.264 (libx264) in yuv420p is used when available; see :data:`DEFAULT_VIDEO_CODECS`.
    Audio (float32 mono in [-1, 1]) is encoded as AAC and interleaved with the video as frames
    arrive; audio beyond the last frame is written when the block ends.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        fps: int = 25,
        audio: npt.NDArray[np.float32] | None = None,
        audio_rate: int = 16_000,
        crf: int = 18,
        preset: str = "medium",
        codecs: Sequence[str] = DEFAULT_VIDEO_CODECS,
        overwrite: bool = False,
    ) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(
                f"frame size must be positive and even (yuv420p), got {width}x{height}"
            )
        if fps not in SUPPORTED_FPS:
            raise ValueError(f"fps must be one of {SUPPORTED_FPS}, got {fps}")
        self.path = Path(path)
        self.width = width
        self.height = height
        self.fps = fps
        self._crf = crf
        self._preset = preset
        self._codecs = tuple(codecs)
        self._overwrite = overwrite
        self._audio, self._audio_rate = _prepare_audio(audio, audio_rate)
        self._audio_sent = 0
        check_destination(self.path)
        self.codec_name: str | None = None
        self.frames_written = 0
        self._tmp_path: Path | None = None
        self._file: IO[bytes] | None = None
        self._container: av.container.OutputContainer | None = None
        self._video: av.VideoStream | None = None
        self._audio_stream: av.AudioStream | None = None

    def __enter__(self) -> Mp4Writer:
        try:
            self._open()
        except BaseException:
            self._discard()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard()
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise self._disk_full(exc) from exc
            return
        try:
            self._finish()
        except OSError as err:
            self._discard()
            if err.errno == errno.ENOSPC:
                raise self._disk_full(err) from err
            raise
        except BaseException:
            self._discard()
            raise

    def write(self, frame: npt.NDArray[np.uint8]) -> None:
        """Append one (height, width, 3) uint8 RGB frame."""
        if self._container is None or self._video is None:
            raise RuntimeError("Mp4Writer.write() called outside its `with` block")
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"expected a uint8 frame of shape {(self.height, self.width, 3)}, "
                f"got {frame.dtype} {frame.shape}"
            )
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.frames_written
        self._mux(self._video.encode(video_frame))
        self.frames_written += 1
        # Keep audio level with the video so that the file is interleaved.
        self._send_audio(until_seconds=self.frames_written / self.fps)

    # -- internals -------------------------------------------------------------------------

    def _open(self) -> None:
        # A stop signal between creating the file and recording its name would orphan it.
        with deferred_stop_signals():
            self._tmp_path, self._file = _open_temp_output(self.path)
        container = av.open(self._file, mode="w", format="mp4", options={"movflags": "+faststart"})
        self._container = container
        self._video, self.codec_name = self._add_video_stream(container)
        if self._audio is not None:
            stream = container.add_stream("aac", rate=self._audio_rate)
            stream.layout = "mono"
            stream.bit_rate = _AUDIO_BIT_RATE
            self._audio_stream = stream

    def _add_video_stream(
        self, container: av.container.OutputContainer
    ) -> tuple[av.VideoStream, str]:
        tried: list[str] = []
        for name in self._codecs:
            problem = _encoder_problem(name, width=self.width, height=self.height, fps=self.fps)
            if problem is not None:
                tried.append(f"{name} ({problem})")
                continue
            stream = container.add_stream(name, rate=self.fps)
            if not isinstance(stream, av.VideoStream):
                raise VideoEncoderError(f"{name} is not a video encoder")
            stream.width = self.width
            stream.height = self.height
            stream.pix_fmt = "yuv420p"
            stream.time_base = Fraction(1, self.fps)
            stream.codec_context.time_base = Fraction(1, self.fps)
            if name == "libx264":
                stream.options = {"crf": str(self._crf), "preset": self._preset}
            elif name not in _H264_CODECS:
                stream.bit_rate = _FALLBACK_BIT_RATE
            if name not in _H264_CODECS:
                logger.warning(
                    "no H.264 encoder available (tried %s); writing %s video, which some "
                    "players (web browsers) cannot play",
                    ", ".join(tried) or "none",
                    name,
                )
            return stream, name
        raise VideoEncoderError(
            "no usable video encoder in this FFmpeg build; tried " + (", ".join(tried) or "none")
        )

    def _send_audio(self, *, until_seconds: float | None) -> None:
        if self._audio is None or self._audio_stream is None:
            return
        total = self._audio.shape[0]
        end = total if until_seconds is None else min(total, int(until_seconds * self._audio_rate))
        # Whole AAC frames only, except for the very end of the track.
        if until_seconds is not None:
            end = self._audio_sent + (end - self._audio_sent) // _AAC_FRAME * _AAC_FRAME
        while self._audio_sent < end:
            stop = min(end, self._audio_sent + _AAC_FRAME)
            chunk = self._audio[self._audio_sent : stop]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate = self._audio_rate
            frame.pts = self._audio_sent
            frame.time_base = Fraction(1, self._audio_rate)
            self._mux(self._audio_stream.encode(frame))
            self._audio_sent = stop

    def _finish(self) -> None:
        if self._container is None or self._video is None:
            raise RuntimeError("Mp4Writer was not opened")
        if self.frames_written == 0:
            raise VideoFileError(f"no frames were written; {self.path} was not created")
        self._mux(self._video.encode(None))
        if self._audio_stream is not None:
            self._send_audio(until_seconds=None)
            self._mux(self._audio_stream.encode(None))
        container, self._container = self._container, None
        container.close()
        assert self._tmp_path is not None
        try:
            if self._overwrite:
                os.replace(self._tmp_path, self.path)
            else:
                self._place_new(self._tmp_path)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
            raise OutputPathError(
                f"cannot save the video as {self.path}: {exc.strerror or exc}"
            ) from exc
        finally:
            self._close_file()  # after the move: the file stays held until it is in place
        self._tmp_path = None
        logger.info(
            "wrote %s: %d frames at %d fps, %s%s",
            self.path,
            self.frames_written,
            self.fps,
            self.codec_name,
            " + AAC audio" if self._audio is not None else "",
        )

    def _place_new(self, tmp: Path) -> None:
        """Move `tmp` to the destination only where no file is (a link fails on an existing
        name, atomically); when one appeared meanwhile, save beside it under a free name."""
        if _link_new(tmp, self.path):
            _unlink_if_there(tmp)
            return
        stem, suffix = self.path.stem, self.path.suffix
        for n in range(1, 100):
            other = self.path.with_name(fit_name(f"{stem}-{n}", extra=len(suffix)) + suffix)
            if _link_new(tmp, other):
                _unlink_if_there(tmp)
                raise OutputAppearedError(
                    f"{self.path} appeared while the video was being written and was left as "
                    f"it was (use --overwrite to replace it); the video was saved as {other}",
                    other,
                )
        raise OutputAppearedError(
            f"{self.path} appeared while the video was being written and was left as it was; "
            "the video was not saved",
            None,
        )

    def _mux(self, packets: list[av.Packet[Any]]) -> None:
        assert self._container is not None
        for packet in packets:
            self._container.mux(packet)

    def _close_file(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def _discard(self) -> None:
        """Close everything and delete the temporary file; never raises."""
        if self._container is not None:
            container, self._container = self._container, None
            with contextlib.suppress(Exception):
                container.close()
        with contextlib.suppress(Exception):
            self._close_file()
        if self._tmp_path is not None:
            tmp, self._tmp_path = self._tmp_path, None
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _disk_full(self, exc: OSError) -> DiskFullError:
        return DiskFullError(
            f"the disk is full: not enough space to write {self.path}. Free some space or "
            f"choose another folder; no partial file was left behind ({exc.strerror or exc})"
        )


def _prepare_audio(
    audio: npt.NDArray[np.float32] | None, rate: int
) -> tuple[npt.NDArray[np.float32] | None, int]:
    if audio is None:
        return None, rate
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"audio must be mono samples (N,), got shape {samples.shape}")
    if rate <= 0:
        raise ValueError(f"audio_rate must be positive, got {rate}")
    if samples.size == 0:
        return None, rate
    if rate not in _AAC_RATES:
        samples = soxr.resample(samples, rate, _AAC_FALLBACK_RATE, quality="HQ")
        rate = _AAC_FALLBACK_RATE
    return np.ascontiguousarray(np.clip(samples, -1.0, 1.0), dtype=np.float32), rate


def _encoder_problem(name: str, *, width: int, height: int, fps: int) -> str | None:
    """Why encoder ``name`` cannot be used here, or None when a trial open succeeds.

    Hardware encoders can be compiled in yet fail to start (no driver, no device), so
    existence is not enough: open a throwaway context with the real settings.
    """
    try:
        context = av.CodecContext.create(name, "w")
    except (av.error.FFmpegError, ValueError):
        return "not in this FFmpeg build"
    if not isinstance(context, av.VideoCodecContext):
        return "not a video encoder"
    try:
        context.width = width
        context.height = height
        context.pix_fmt = "yuv420p"
        context.time_base = Fraction(1, fps)
        context.framerate = Fraction(fps, 1)
        context.open()
    except (av.error.FFmpegError, ValueError) as exc:
        return f"failed to start: {exc}"
    return None


def check_destination(path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputPathError(f"{path} is a folder; give a file name such as {path / 'out.mp4'}")
    if not folder.exists():
        raise OutputPathError(f"the output folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputPathError(f"{folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"the output folder {folder} is not writable")


def _link_new(src: Path, dst: Path) -> bool:
    """Give `src` the name `dst` unless `dst` exists (False then), never replacing it."""
    try:
        os.link(src, dst)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # No hard links here (FAT, some network shares): the narrow check-then-rename; on
        # Windows the rename itself refuses an existing name.
        if dst.exists():
            return False
        if os.name == "nt":
            try:
                os.rename(src, dst)
            except FileExistsError:
                return False
        else:
            os.rename(src, dst)
    return True


def _unlink_if_there(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


_PART_SUFFIX_LEN = len(".12345678.part")


def _part_prefix(path: Path) -> str:
    return f".{fit_name(path.name, extra=1 + _PART_SUFFIX_LEN)}."


def remove_leftovers(path: Path) -> Removed:
    """Delete the temporary files that killed renders to `path` left beside it (none that a
    running render holds)."""
    folder = path.parent if str(path.parent) else Path(".")
    prefix = _part_prefix(path)
    pattern = re.compile(re.escape(prefix) + r"[0-9a-f]{8}\.part")
    try:
        names = [e.name for e in os.scandir(folder) if pattern.fullmatch(e.name)]
    except OSError:
        return Removed()
    return remove_abandoned(folder / name for name in names)


def _open_temp_output(path: Path) -> tuple[Path, IO[bytes]]:
    """Create the hidden temporary file next to ``path`` and open it for the muxer."""
    folder = path.parent if str(path.parent) else Path(".")
    for _ in range(100):
        tmp = folder / f"{_part_prefix(path)}{secrets.token_hex(4)}.part"
        try:
            # Mode 0o666 filtered by the umask, so the final file gets ordinary permissions
            # (mkstemp would make it owner-only).
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
            raise OutputPathError(
                f"cannot create a file in {folder}: {exc.strerror or exc}"
            ) from exc
        os.close(fd)
        # Unbuffered and opened by name: the faststart pass of the MP4 muxer re-opens the file
        # by its name to move the index to the front, so every byte must already be on disk.
        file = open(tmp, "r+b", buffering=0)  # noqa: SIM115 (returned to the caller, held)
        try:
            hold(file.fileno())  # released when the file is closed, or the process ends
        except OSError:
            file.close()
            raise
        return tmp, file
    raise OutputPathError(f"cannot create a temporary file in {folder}")


@dataclass(frozen=True)
class VideoInfo:
    """What a driving video contains (frame_count/duration may be unknown: None)."""

    width: int
    height: int
    fps: float
    frame_count: int | None
    duration: float | None


class VideoReader:
    """Iterate the RGB frames of a video file: ``with VideoReader(p) as r: for f in r: ...``.

    Frames are uint8 (H, W, 3) arrays, upright (rotation metadata from phones is applied).
    Opening raises :class:`VideoReadError` for a missing, unreadable or corrupt file or one
    without a video track; corruption found while decoding raises it too. With `max_seconds`,
    a video longer than that by its header (duration, frame count) is refused when opened
    (:class:`VideoTooLongError`), and one whose header says nothing is stopped when its frames
    or their timestamps pass the limit, so no file can make the work unbounded.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_seconds: float | None = None) -> None:
        self.path = Path(path)
        self.max_seconds = max_seconds
        if not self.path.exists():
            raise VideoReadError(f"video file not found: {self.path}")
        if self.path.is_dir():
            raise VideoReadError(f"{self.path} is a folder, not a video file")
        try:
            # A FIFO would block FFmpeg's open forever; devices and sockets are no videos.
            check_input_file(self.path, label="video file")
        except ValidationError as exc:
            raise VideoReadError(str(exc)) from None
        try:
            self._container: av.container.InputContainer = av.open(str(self.path), mode="r")
        except av.error.FFmpegError as exc:
            raise VideoReadError(
                f"{self.path.name} is not a video FFmpeg can read, or it is corrupt ({exc})"
            ) from None
        except OSError as exc:
            raise VideoReadError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            self.info = self._probe()
            self._check_length()
        except BaseException:
            self._container.close()
            raise

    @property
    def max_frames(self) -> int | None:
        """The most frames read before the video counts as too long (a second of slack)."""
        if self.max_seconds is None:
            return None
        return int((self.max_seconds + 1.0) * self.info.fps)

    def _too_long(self, what: str) -> VideoTooLongError:
        assert self.max_seconds is not None
        return VideoTooLongError(
            f"{self.path.name} is too long: {what}; the limit is {self.max_seconds:.0f} s "
            f"({self.max_frames} frames at {self.info.fps:g} fps)"
        )

    def _check_length(self) -> None:
        info, limit = self.info, self.max_frames
        if self.max_seconds is None or limit is None:
            return
        if info.duration is not None and info.duration > self.max_seconds + 1.0:
            raise self._too_long(f"{info.duration:.0f} s by its timestamps")
        if info.frame_count is not None and info.frame_count > limit:
            raise self._too_long(f"{info.frame_count} frames")

    def _probe(self) -> VideoInfo:
        if not self._container.streams.video:
            raise VideoReadError(f"{self.path.name} has no video track")
        stream = self._container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if rate is None or rate <= 0:
            raise VideoReadError(f"{self.path.name} does not say its frame rate")
        duration: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            duration = self._container.duration / 1e6
        width = stream.codec_context.width
        height = stream.codec_context.height
        if width <= 0 or height <= 0:
            raise VideoReadError(f"{self.path.name} has a video track without a frame size")
        return VideoInfo(
            width=width,
            height=height,
            fps=float(rate),
            frame_count=stream.frames or None,
            duration=duration,
        )

    @property
    def fps(self) -> float:
        return self.info.fps

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def __iter__(self) -> Iterator[npt.NDArray[np.uint8]]:
        stream = self._container.streams.video[0]
        produced = 0
        limit, seconds = self.max_frames, self.max_seconds
        try:
            for frame in self._container.decode(stream):
                if limit is not None and produced >= limit:
                    raise self._too_long(f"more than {limit} frames")
                if seconds is not None and frame.time is not None and frame.time > seconds + 1:
                    raise self._too_long(f"a frame at {frame.time:.0f} s")
                rgb: npt.NDArray[np.uint8] = np.asarray(
                    frame.to_ndarray(format="rgb24"), dtype=np.uint8
                )
                rotation = frame.rotation
                if rotation:
                    # PyAV reports the display matrix as degrees counter-clockwise.
                    rgb = np.ascontiguousarray(np.rot90(rgb, k=round(rotation / 90) % 4))
                produced += 1
                yield rgb
        except av.error.FFmpegError as exc:
            raise VideoReadError(
                f"{self.path.name} is corrupt: decoding stopped after {produced} frames ({exc})"
            ) from None
        if produced == 0:
            raise VideoReadError(f"{self.path.name} contains no decodable video frames")


def read_video_frames(
    path: str | os.PathLike[str],
) -> tuple[float, Iterator[npt.NDArray[np.uint8]]]:
    """Open ``path`` and return (fps, iterator over RGB frames); the file closes at the end."""
    reader = VideoReader(path)

    def frames() -> Iterator[npt.NDArray[np.uint8]]:
        with reader:
            yield from reader

    return reader.fps, frames()
