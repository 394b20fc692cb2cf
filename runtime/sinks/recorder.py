"""MP4 recorder of the live output with the microphone audio muxed in (own writer thread).

`send` (pacer thread) and `add_audio` (inference worker) only queue; a writer thread encodes
with PyAV (H.264 when available). Frames are placed by the media time they depict, not by when
they were published, so lips stay in sync in the file whatever the live latency was: video
frame `index` (output rate) and 16 kHz audio sample `s` of the engine's timeline land at
`index / fps` and `s / 16000`.

The file holds the whole session at the output rate, whatever the compute: it starts with the
first audio (the idle picture, the avatar at rest, until the first frame), a frame the engine
did not make anew (a slideshow, a skipped hop) is the previous picture again, and at the end the
last picture stays until the audio ends.

A crash loses at most the last second: the file is fragmented MP4 (`runtime.media.remux`),
a keyframe and a self-contained fragment every second, written under a held temporary name
and, when the recording closes cleanly, copied (no re-encoding) into an ordinary MP4 at its
path. What a killed session left is saved by the next start
(`runtime.sinks.recording_journal`), which says where; a second session asked to record to
the same file is refused at open.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from runtime.core.files import hidden_temp_name
from runtime.media.remux import FRAGMENTED, RemuxError, remux
from runtime.model.contract import SAMPLE_RATE
from runtime.sinks import SinkUnavailable
from runtime.sinks import recording_journal as journal
from runtime.sinks.frame import LiveFrame

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]

AAC_FRAME = 1024
VIDEO_CODECS = ("libx264", "libopenh264", "h264_mf", "h264_videotoolbox", "mpeg4")


@dataclass(frozen=True)
class RecorderConfig:
    path: Path
    audio: bool = True
    max_queue: int = 100  # frames waiting for the encoder; beyond that new ones are dropped
    crf: int = 20
    preset: str = "veryfast"
    encoder_threads: int = 1  # leave the cores to inference
    audio_buffer_s: float = 60.0
    """Audio kept until the first frame arrives (a slow machine's first picture can take
    seconds; the file starts with the audio, on the idle picture)."""
    journal: Path | None = None
    """Where recordings in progress are noted (None: `<data dir>/recordings`)."""


_STOP = object()


class RecorderSink:
    def __init__(self, config: RecorderConfig) -> None:
        self.config = config
        self._queue: queue.Queue[Any] = queue.Queue()
        self._pending = 0  # video frames queued
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing: threading.Thread | None = None  # the writer finishing after close()
        self._idle: object = None  # the idle picture last queued (pacer thread)
        self.fps = 25
        self.frames_written = 0
        self.frames_dropped = 0
        self.audio_written = 0
        self.error: str | None = None
        self.codec: str | None = None
        self.finished_path: Path | None = None
        self.recovered: journal.Recovered | None = None
        self._claim: journal.RecordingClaim | None = None

    @property
    def name(self) -> str:
        return "recorder"

    def open(self, *, fps: float) -> None:
        path = self.config.path
        if not path.parent.is_dir():
            raise SinkUnavailable(f"cannot record to {path}: folder {path.parent} does not exist")
        if not os.access(path.parent, os.W_OK):
            raise SinkUnavailable(f"cannot record to {path}: folder is not writable")
        if abs(fps - round(fps)) > 1e-6:
            raise SinkUnavailable(f"cannot record at {fps} fps (whole frame rates only)")
        self.fps = round(fps)
        claim, self._claim = self.claim(), None  # the writer's now: it finishes it
        self._writer = _Writer(self, claim)
        self._thread = threading.Thread(target=self._writer.run, name="recorder", daemon=True)
        self._thread.start()

    def claim(self) -> journal.RecordingClaim:
        """Hold the file for this session (SinkUnavailable when another session records to
        it), saving first what crashed recordings left; `open` claims it if not done before."""
        if self._claim is not None:
            return self._claim
        path = self.config.path
        for earlier in journal.recover(journal=self.config.journal):
            self.recovered = earlier
        try:
            self._claim, found = journal.claim(path, journal=self.config.journal)
        except journal.RecordingBusy as exc:
            raise SinkUnavailable(str(exc)) from None
        except OSError as exc:
            raise SinkUnavailable(f"cannot record to {path}: {exc.strerror or exc}") from None
        self.recovered = found or self.recovered
        return self._claim

    def send(self, frame: LiveFrame, repeat: bool) -> None:
        if frame.index < 0:  # the idle picture: what the file shows before the first frame
            if frame.image is not self._idle:
                self._idle = frame.image
                self._queue.put(("idle", -1, frame.image))
            return
        if repeat:
            return
        with self._lock:
            if self._pending >= self.config.max_queue:
                self.frames_dropped += 1
                return
            self._pending += 1
        self._queue.put(("video", frame.index, frame.image))

    def add_audio(self, first_sample: int, samples: Array) -> None:
        """16 kHz samples starting at `first_sample` of the engine's audio timeline."""
        if self.config.audio and self._thread is not None and samples.size:
            self._queue.put(("audio", first_sample, samples.copy()))

    def close(self, timeout: float = 1.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            if self._claim is not None:  # claimed, never opened
                self._claim.finish(remove_part=True)
                self._claim = None
            return
        self._closing = thread
        self._queue.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("recorder still finishing %s after %.1f s", self.config.path, timeout)

    def wait_finished(self, timeout: float) -> bool:
        """After `close`: wait for the file to be written (a busy machine may need longer than
        the engine's stop budget); True when the writer has ended."""
        thread = self._closing
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _took(self) -> None:
        with self._lock:
            self._pending -= 1


class _Writer:
    """Runs on the recorder thread; owns the PyAV container."""

    def __init__(self, sink: RecorderSink, claim: journal.RecordingClaim) -> None:
        self.sink = sink
        self.cfg = sink.config
        self.claim = claim
        self.tmp = claim.part
        self.container: Any = None
        self.video: Any = None
        self.audio: Any = None
        self.first_index: int | None = None
        self.last_pts = -1
        self.audio_origin = 0  # timeline sample at pts 0
        self.audio_next = 0  # next timeline sample to encode
        self.audio_buf: deque[tuple[int, Array]] = deque()
        self.audio_buffered = 0  # samples in `audio_buf`
        self.audio_pending = np.zeros(0, np.float32)
        self.idle: npt.NDArray[np.uint8] | None = None
        self.shown: npt.NDArray[np.uint8] | None = None  # the picture at `last_pts`

    def run(self) -> None:
        try:
            while True:
                item = self.sink._queue.get()
                if item is _STOP:
                    break
                kind, index, data = item
                if kind == "video":
                    self.sink._took()
                    self._video(index, data)
                elif kind == "idle":
                    self.idle = data
                else:
                    self._audio(index, data)
            self._finish()
        except Exception as exc:
            self.sink.error = f"{type(exc).__name__}: {exc}"
            logger.exception("recording to %s failed", self.cfg.path)
            self._discard()

    def _open(self, image: npt.NDArray[np.uint8]) -> None:
        fps = self.sink.fps
        options = {**FRAGMENTED, "flush_packets": "1"}
        self.container = av.open(self.claim.file, mode="w", format="mp4", options=options)
        height, width = image.shape[:2]
        errors = []
        for name in VIDEO_CODECS:
            try:
                stream = self.container.add_stream(name, rate=fps)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.time_base = Fraction(1, fps)
                stream.codec_context.time_base = Fraction(1, fps)
                stream.codec_context.gop_size = fps  # a fragment a second: what a crash costs
                if name == "libx264":
                    stream.options = {
                        "crf": str(self.cfg.crf),
                        "preset": self.cfg.preset,
                        "threads": str(self.cfg.encoder_threads),
                    }
                stream.codec_context.open()
            except Exception as exc:
                errors.append(f"{name}: {exc}")
                continue
            self.video, self.sink.codec = stream, name
            break
        if self.video is None:
            raise SinkUnavailable("no usable video encoder: " + "; ".join(errors))
        if self.cfg.audio:
            audio = self.container.add_stream("aac", rate=SAMPLE_RATE)
            audio.layout = "mono"
            self.audio = audio

    def _video(self, index: int, image: npt.NDArray[np.uint8]) -> None:
        if self.container is None:
            self._open(image)
            start = index
            if self.idle is not None and self.audio_buf:
                # The file starts with the audio, on the idle picture.
                start = min(index, self.audio_buf[0][0] * self.sink.fps // SAMPLE_RATE)
            self.first_index = start
            self.audio_origin = round(start * SAMPLE_RATE / self.sink.fps)
            self.audio_next = self.audio_origin
            self.shown = self.idle
            buffered = list(self.audio_buf)
            self.audio_buf.clear()
            for first, samples in buffered:
                self._audio(first, samples)
        assert self.first_index is not None
        pts = index - self.first_index
        if pts <= self.last_pts:
            return
        self._hold(pts - 1)
        self._write(image, pts)
        if self.audio is not None:
            self._encode_audio(final=False)

    def _hold(self, until_pts: int) -> None:
        """The picture shown so far, again, for every frame up to `until_pts` (the output rate
        holds: what the camera repeated, the file repeats)."""
        if self.shown is None:
            return
        for pts in range(self.last_pts + 1, until_pts + 1):
            self._write(self.shown, pts)

    def _write(self, image: npt.NDArray[np.uint8], pts: int) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = pts
        self._mux(self.video.encode(frame))
        self.last_pts = pts
        self.shown = image
        self.sink.frames_written += 1

    def _audio(self, first: int, samples: Array) -> None:
        if self.audio is None:
            if self.container is None:  # no frame yet: keep the recent audio
                self.audio_buf.append((first, samples))
                self.audio_buffered += samples.size
                keep = self.cfg.audio_buffer_s * SAMPLE_RATE
                while self.audio_buffered > keep:
                    self.audio_buffered -= self.audio_buf.popleft()[1].size
            return
        end = first + samples.size
        if end <= self.audio_next:
            return
        if first > self.audio_next:  # a gap in the timeline: fill it with silence
            samples = np.concatenate([np.zeros(first - self.audio_next, np.float32), samples])
        else:
            samples = samples[self.audio_next - first :]
        self.audio_next = end
        self.audio_pending = np.concatenate([self.audio_pending, samples])
        self._encode_audio(final=False)

    def _video_end_sample(self) -> int:
        """Timeline sample where the last written frame ends."""
        return self.audio_origin + round((self.last_pts + 1) * SAMPLE_RATE / self.sink.fps)

    def _encode_audio(self, *, final: bool) -> None:
        """Encode pending audio, never beyond the end of the video written so far (the file
        then ends with both tracks together); whole AAC frames except when `final`."""
        pending = self.audio_pending
        pending_start = self.audio_next - pending.size
        usable = max(0, min(pending.size, self._video_end_sample() - pending_start))
        whole = usable if final else usable // AAC_FRAME * AAC_FRAME
        start_pts = pending_start - self.audio_origin
        for off in range(0, whole, AAC_FRAME):
            chunk = np.clip(pending[off : min(whole, off + AAC_FRAME)], -1.0, 1.0).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start_pts + off
            frame.time_base = Fraction(1, SAMPLE_RATE)
            self._mux(self.audio.encode(frame))
            self.sink.audio_written += chunk.shape[1]
        self.audio_pending = pending[whole:]

    def _finish(self) -> None:
        if self.container is None:
            logger.warning("nothing was recorded; %s not written", self.cfg.path)
            self.claim.finish(remove_part=True)
            return
        if self.audio is not None:
            # The last picture stays until the audio ends.
            assert self.first_index is not None
            end = -(-(self.audio_next - self.audio_origin) * self.sink.fps // SAMPLE_RATE)
            self._hold(end - 1)
        self._mux(self.video.encode(None))
        if self.audio is not None:
            self._encode_audio(final=True)
            self._mux(self.audio.encode(None))
        container, self.container = self.container, None
        container.close()
        self._place()
        self.sink.finished_path = self.cfg.path
        logger.info(
            "recorded %s: %d frames, %.1f s of audio",
            self.cfg.path,
            self.sink.frames_written,
            self.sink.audio_written / SAMPLE_RATE,
        )

    def _place(self) -> None:
        """The finished recording into place as an ordinary MP4 (stream copy: players then
        know its duration and frame count); the fragmented file itself if that fails."""
        final = self.cfg.path.with_name(hidden_temp_name(self.cfg.path.name, journal.FINAL_SUFFIX))
        try:
            remux(self.tmp, final)
        except RemuxError as exc:
            logger.warning("keeping %s fragmented: %s", self.cfg.path, exc)
            os.replace(self.tmp, self.cfg.path)
            self.claim.finish(remove_part=False)
            return
        os.replace(final, self.cfg.path)
        self.claim.finish(remove_part=True)

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self.container.mux(packet)

    def _discard(self) -> None:
        if self.container is not None:
            container, self.container = self.container, None
            with contextlib.suppress(Exception):
                container.close()
        self.claim.finish(remove_part=True)
