"""Remote compute for the live engine: the audio-driven worker that sends the microphone to a
render server and hands the frames it sends back to the local pacer (`live-worker` thread;
the link's own thread, `remote-link`, receives frames and calls back into the pacer).

Everything that touches the user's hardware stays local (capture, noise gate, mute, the
virtual microphone, pacing, sinks, recording); only features -> motion -> pixels move to the
server, which runs the engine's own hop code (`runtime.server.session`). The local timeline
still holds the audio (the recorder and the virtual microphone take it from here) and gives
each 20 ms packet its capture time; frames come back stamped with it, so the pacer and the
latency readout work as with local compute. On a new connection the last `context_s` of audio
is sent again, so the server has its context at once and skips ahead to the newest audio.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime.core.timing import FrameTiming, wait_on
from runtime.engine.live.audio_timeline import AudioTimeline
from runtime.engine.live.avatar import LiveAvatar
from runtime.engine.live.capture import AudioFeed
from runtime.engine.live.hop_scheduler import keep_seconds
from runtime.engine.live.types import (
    EventKind,
    FileInput,
    LiveControls,
    MicrophoneInput,
    WebcamInput,
)
from runtime.engine.live.webcam import NewestGrabs, open_webcam
from runtime.engine.live.worker import LiveWorker, WorkerContext, WorkerInputs, audio_input
from runtime.media.audio_capture import AudioCapture, CaptureState
from runtime.media.webcam import WebcamSource
from runtime.model.contract import FPS, MOTION_DIM, SAMPLES_PER_FRAME
from runtime.remote import protocol as P
from runtime.remote.client import (
    Connector,
    LinkCallbacks,
    LinkRefused,
    RemoteConfig,
    RemoteLink,
    websocket_connect,
)
from runtime.remote.codec import encode_crop, encode_photo, pcm_from_float
from runtime.remote.link_status import LinkState, LinkStatus
from runtime.sinks.frame import LiveFrame

logger = logging.getLogger(__name__)

Image8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, kw_only=True)
class RemoteCompute:
    """Render on a server instead of this computer (`LiveEngine(compute=...)`)."""

    config: RemoteConfig
    connect: Connector = websocket_connect


def remote_avatar(image: Image8, name: str) -> LiveAvatar:
    """An avatar for remote compute: the square crop only (the server encodes it)."""
    return LiveAvatar(
        name=name, image=image, source_motion=np.zeros(MOTION_DIM, np.float32), tensors={}
    )


def wire_controls(controls: LiveControls) -> P.WireControls:
    pose, gaze = controls.pose, controls.gaze
    return P.WireControls(
        pose=None if pose is None else (pose.yaw, pose.pitch, pose.roll),
        gaze=None if gaze is None else (gaze.x, gaze.y),
        cfg=controls.cfg_scale,
        nfe=controls.nfe,
        hop=controls.hop,
    )


class _Intake:
    """The link's callbacks into the engine (the `remote-link` thread): frames to the pacer,
    the link's state as events, the server's compute and the round trip to the monitor."""

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        self._cfg, self._pacer, self._monitor = ctx.config, ctx.pacer, ctx.monitor
        self.state = LinkState.CONNECTING
        self.status: LinkStatus | None = None

    def on_frame(self, header: P.FrameHeader, image: Image8, arrival: float) -> None:
        if header.index < 0:
            self._pacer.set_idle(image)
            return
        timing = FrameTiming(capture=header.capture, pixels=arrival)
        self._pacer.submit([LiveFrame(index=header.index, image=image, timing=timing)])
        if header.first_in_hop and math.isfinite(header.compute_s):
            self._monitor.record_compute("server", header.compute_s)
            self._monitor.record_compute("hop", header.compute_s)
        self._monitor.record_media(1.0 / self._cfg.fps)

    def on_rtt(self, seconds: float) -> None:
        self._monitor.record_compute("network", seconds)

    def on_state(self, status: LinkStatus) -> None:
        self.state, self.status = status.state, status
        if status.state is LinkState.RECONNECTING and status.attempt == 1:  # lost just now
            self._monitor.count("reconnects")
        if status.state is not LinkState.CLOSED:
            self._ctx.emit(EventKind.REMOTE, status.message, status)

    def on_ended(self) -> None:
        self._ctx.audio_ended.set()
        self._ctx.emit(EventKind.AUDIO_ENDED, "the audio file has been played")


def _inputs(link: RemoteLink | None, intake: _Intake, **kw: Any) -> WorkerInputs:
    return WorkerInputs(
        link_state=intake.state.value,
        link=intake.status,
        link_stats={} if link is None else link.stats(),
        **kw,
    )


class RemoteWorker:
    def __init__(self, *, ctx: WorkerContext, compute: RemoteCompute) -> None:
        source = ctx.source
        if not isinstance(source, FileInput | MicrophoneInput):
            raise TypeError("the remote audio worker takes a microphone or a file")
        self._ctx, self._compute, self._cfg, self._source = ctx, compute, ctx.config, source
        self._pacer, self._monitor, self._clock, self._stop = (
            ctx.pacer,
            ctx.monitor,
            ctx.clock,
            ctx.stop,
        )
        self.timeline = AudioTimeline(keep_seconds=keep_seconds(ctx.config))
        self._lock = threading.Lock()
        self._starts: dict[int, int] = {}  # connection generation -> first sample it gets
        self._next_start = 0
        self._connected: int | None = None  # the newest connection, not yet taken up
        self.link: RemoteLink | None = None
        self._intake = _Intake(ctx)
        self._capture: AudioCapture | None = None

    def inputs(self) -> WorkerInputs:
        return _inputs(self.link, self._intake, capture=self._capture)

    # -- the link's thread -------------------------------------------------------------------

    def _hello(self) -> P.Hello:
        timeline = self.timeline
        context = round(self._cfg.context_s * FPS) * SAMPLES_PER_FRAME
        start = max(timeline.oldest, timeline.total - context)
        frame = -(-start // SAMPLES_PER_FRAME)
        if self._cfg.fps == 30:  # output indices are whole only on every 5th source frame
            frame = -(-frame // 5) * 5
        with self._lock:
            self._next_start = frame * SAMPLES_PER_FRAME
        cfg = self._cfg
        return P.Hello(
            token=self._compute.config.token,
            fps=cfg.fps,
            lookahead=cfg.lookahead,
            seed=cfg.seed,
            frame_format=self._compute.config.wire_format,
            start_frame=frame,
        )

    def _on_connected(self, generation: int) -> None:
        with self._lock:
            self._starts[generation] = self._next_start
            self._connected = generation

    # -- the worker thread -------------------------------------------------------------------

    def run(self) -> None:
        ctx = self._ctx
        link = RemoteLink(
            self._compute.config,
            LinkCallbacks(
                on_frame=self._intake.on_frame,
                on_state=self._intake.on_state,
                on_rtt=self._intake.on_rtt,
                on_ended=self._intake.on_ended,
                on_connected=self._on_connected,
            ),
            hello=self._hello,
            connect=self._compute.connect,
            clock=self._clock,
        )
        self.link = link
        avatar, _ = ctx.take_avatar()
        link.set_avatar(encode_photo(avatar.image), avatar.name)
        controls = ctx.controls()
        link.set_controls(wire_controls(controls))
        capture, feed = audio_input(ctx, self._source, self.timeline)
        self._capture = capture
        link.start()
        try:
            if self._stop.is_set():
                return
            capture.start()
            self._pacer.set_streaming(True)
            self._loop(link, feed, capture, controls)
        finally:
            link.stop()

    def _loop(
        self, link: RemoteLink, feed: AudioFeed, capture: AudioCapture, controls: LiveControls
    ) -> None:
        ctx, timeline = self._ctx, self.timeline
        generation, sent = 0, 0
        ended = ending_sent = False
        next_vmic = self._clock()
        while not self._stop.is_set():
            if link.state is LinkState.FAILED:
                raise LinkRefused(link.error)
            ending = not ended and capture.state is CaptureState.ENDED
            got = feed.pull(ended)
            if ending and not got:
                ended = True
                timeline.pad_last_frame()
            avatar, changed = ctx.take_avatar()
            if changed:
                link.set_avatar(encode_photo(avatar.image), avatar.name)
                ctx.emit(EventKind.AVATAR, f"avatar {avatar.name}")
            now_controls = ctx.controls()
            if now_controls != controls:
                controls = now_controls
                link.set_controls(wire_controls(controls))
            with self._lock:
                fresh, self._connected = self._connected, None
                start = None if fresh is None else self._starts.pop(fresh)
            if fresh is not None and start is not None:
                generation, sent, ending_sent = fresh, start, False
            if not ending_sent:  # after 'end' the timeline holds only filler silence
                sent = self._send(link, generation, sent, final=ended)
            if ended and not ending_sent and sent >= timeline.total and generation:
                link.end()
                ending_sent = True
            if self._clock() >= next_vmic:
                next_vmic = self._clock() + 0.2
                ctx.vmic_update()
            wait_on(self._stop, 0.005, self._clock)

    def _send(self, link: RemoteLink, generation: int, sent: int, *, final: bool) -> int:
        """Send whole 20 ms packets from sample `sent` on; the last, partial one only when
        the input is over (zero-padded: the server pads the last frame itself)."""
        timeline = self.timeline
        if generation == 0:
            return sent
        sent = max(sent, timeline.oldest)
        while timeline.total - sent >= P.PACKET_SAMPLES or (final and sent < timeline.total):
            stop = min(sent + P.PACKET_SAMPLES, timeline.total)
            chunk = timeline.samples(sent, stop)
            if chunk.shape[0] < P.PACKET_SAMPLES:
                chunk = np.pad(chunk, (0, P.PACKET_SAMPLES - chunk.shape[0]))
            end_time = timeline.capture_time(stop - 1)
            if not link.send_audio(pcm_from_float(chunk), end_time, generation):
                return sent  # the connection went: the next one starts from fresh context
            sent += P.PACKET_SAMPLES
        return sent


REMOTE_CROP = 512
"""Side of the face crops sent in webcam mode (the server resizes to its model's size)."""


class RemoteWebcamWorker:
    """Webcam mode on a render server (`live-worker` thread): camera -> face crop here, the
    crop (not the camera picture) up, the rendered picture down to the pacer; the newest
    camera frame each time, as the local webcam worker (`runtime.engine.live.webcam`)."""

    def __init__(self, *, ctx: WorkerContext, compute: RemoteCompute) -> None:
        source = ctx.source
        if not isinstance(source, WebcamInput):
            raise TypeError("the remote webcam worker takes a webcam")
        self._ctx, self._compute, self._cfg, self._source = ctx, compute, ctx.config, source
        self._pacer, self._clock, self._stop = ctx.pacer, ctx.clock, ctx.stop
        self._intake = _Intake(ctx)
        self._generation = 0
        self.link: RemoteLink | None = None
        self._webcam: WebcamSource | None = None

    def inputs(self) -> WorkerInputs:
        return _inputs(self.link, self._intake, webcam=self._webcam)

    def _on_connected(self, generation: int) -> None:
        self._generation = generation

    def run(self) -> None:
        cfg, ctx, intake = self._cfg, self._ctx, self._intake
        link = RemoteLink(
            self._compute.config,
            LinkCallbacks(
                on_frame=intake.on_frame,
                on_state=intake.on_state,
                on_rtt=intake.on_rtt,
                on_connected=self._on_connected,
            ),
            hello=lambda: P.Hello(
                token=self._compute.config.token,
                fps=cfg.fps,
                lookahead=cfg.lookahead,
                seed=cfg.seed,
                frame_format=self._compute.config.wire_format,
            ),
            connect=self._compute.connect,
            clock=self._clock,
        )
        self.link = link
        avatar, _ = ctx.take_avatar()
        link.set_avatar(encode_photo(avatar.image), avatar.name)
        cropper, webcam = open_webcam(
            self._source, clock=self._clock, emit=ctx.emit, crop_size=REMOTE_CROP
        )
        self._webcam = webcam
        link.start()
        try:
            if self._stop.is_set():
                return
            webcam.start()
            self._loop(link, webcam, cropper)
        finally:
            link.stop()

    def _loop(self, link: RemoteLink, webcam: WebcamSource, cropper: Any) -> None:
        ctx = self._ctx
        grabs = NewestGrabs(webcam, self._pacer)
        while not self._stop.is_set():
            if link.state is LinkState.FAILED:
                raise LinkRefused(link.error)
            avatar, changed = ctx.take_avatar()
            if changed:
                link.set_avatar(encode_photo(avatar.image), avatar.name)
                ctx.emit(EventKind.AVATAR, f"avatar {avatar.name}")
            taken = grabs.next()
            if taken is None:
                continue
            grab, index = taken
            crop = np.ascontiguousarray(cropper.update(grab.rgb), np.uint8)
            link.send_crop(encode_crop(crop), index, grab.capture, self._generation)


def remote_worker(*, ctx: WorkerContext, compute: RemoteCompute) -> LiveWorker:
    """The worker for the context's source on a render server (audio, or webcam face crops)."""
    if isinstance(ctx.source, WebcamInput):
        return RemoteWebcamWorker(ctx=ctx, compute=compute)
    return RemoteWorker(ctx=ctx, compute=compute)
