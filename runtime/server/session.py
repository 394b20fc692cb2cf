"""One client's session on a render server: its avatar (in memory only), its controls, its own
16 kHz audio timeline, and the engine's hop scheduler run on the replica's graphs.

Threads: `add_audio`, `set_controls` and `finish` are called from the connection's event loop
(they only queue or swap values); `set_avatar` and `step` run on the session's compute thread
(one at a time: the transport awaits each). The hops are the local engine's own
(`runtime.engine.live.hop_scheduler`: one assembly of the compute, one scheduler for planning,
skipping ahead, the end of the input and Auto), so a remote session's frames are the local
engine's frames for the same audio and controls.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from runtime.core.timing import Clock, FrameTiming
from runtime.engine.live.audio_timeline import AudioTimeline
from runtime.engine.live.avatar import (
    LiveAvatar,
    encode_avatar,
    image_to_source,
    render,
    to_uint8,
)
from runtime.engine.live.hop import Graph
from runtime.engine.live.hop_scheduler import HopScheduler, hop_scheduler
from runtime.engine.live.latency import LatencyMonitor
from runtime.engine.live.types import (
    EngineConfig,
    EventDetail,
    EventKind,
    Gaze,
    HeadPose,
    LiveControls,
)
from runtime.model.contract import MOTION_DIM
from runtime.model.execution.sessions import ModelSet
from runtime.remote.codec import decode_photo, float_from_pcm
from runtime.remote.protocol import (
    BAD_AUDIO,
    MALFORMED,
    AudioPacket,
    CropPacket,
    Hello,
    ProtocolError,
    WireControls,
)
from runtime.sinks.frame import LiveFrame

logger = logging.getLogger(__name__)

Image8 = npt.NDArray[np.uint8]

MAX_INBOX_PACKETS = 500
"""Audio packets (10 s) queued for the compute thread; a client sending faster than real time
for longer than that is refused rather than buffered without end."""


@dataclass(frozen=True, kw_only=True)
class HopOutput:
    frames: Sequence[LiveFrame]  # index on the client's output timeline
    compute_s: float
    skipped: int
    first: int
    emitted: int = 0
    """Frames of motion the hop made (in a slideshow, more than it rendered)."""


class _Collector:
    """Stands in for the pacer: the hop's frames, taken by the transport."""

    def __init__(self) -> None:
        self.frames: list[LiveFrame] = []

    def submit(self, frames: Sequence[LiveFrame]) -> None:
        self.frames.extend(frames)

    def take(self) -> list[LiveFrame]:
        out, self.frames = self.frames, []
        return out


def controls_from_wire(wire: WireControls) -> LiveControls:
    pose = None if wire.pose is None else HeadPose(*wire.pose)
    gaze = None if wire.gaze is None else Gaze(*wire.gaze)
    return LiveControls(pose=pose, gaze=gaze, cfg_scale=wire.cfg, nfe=wire.nfe, hop=wire.hop)


class ServerSession:
    def __init__(
        self,
        *,
        models: ModelSet,
        hello: Hello,
        clock: Clock = time.perf_counter,
        on_gpu: bool = False,
    ) -> None:
        self._models = models
        self._clock = clock
        self.hello = hello
        self.config = EngineConfig(fps=hello.fps, lookahead=hello.lookahead, seed=hello.seed)
        self._stop = threading.Event()
        self._options = ort.RunOptions()
        self._avatar_encoder = self._graph("avatar_encoder")
        self._motion_encoder: Graph | None = None  # webcam mode, opened on the first crop
        self._crop: CropPacket | None = None  # the newest face crop not yet rendered
        self._last_crop_seq = -1
        self.crops_dropped = 0
        self._renderer = self._graph("renderer")
        self._collector = _Collector()
        self.monitor = LatencyMonitor(window_s=self.config.stats_window_s, clock=clock)
        self._scheduler: HopScheduler = hop_scheduler(
            config=self.config,
            graph=self._graph,
            renderer=self._renderer,
            frames=self._collector,
            monitor=self.monitor,
            controls=LiveControls(),
            emit=self._log_event,
            model_version=models.version,
            on_gpu=on_gpu,
            clock=clock,
        )
        self._lock = threading.Lock()
        self._inbox: deque[AudioPacket] = deque()
        self._controls = LiveControls()
        self._avatar: LiveAvatar | None = None
        self._last_seq = -1
        self._ending = False
        self._done = False
        self._index_offset = hello.start_frame * hello.fps // 25
        self._webcam_hops = 0

    def _graph(self, name: str) -> Graph:
        return Graph(self._models[name], self._options, self._stop)

    def _log_event(self, kind: EventKind, message: str, detail: EventDetail = None) -> None:
        logger.info("session: %s: %s", kind, message)

    @property
    def timeline(self) -> AudioTimeline:
        return self._scheduler.timeline

    @property
    def hops(self) -> int:
        return self._scheduler.hops + self._webcam_hops

    @property
    def skipped_frames(self) -> int:
        return self._scheduler.skipped_frames

    @property
    def skipped_hops(self) -> int:
        return self._scheduler.skipped_hops

    # -- event loop --------------------------------------------------------------------------

    def add_audio(self, packet: AudioPacket) -> None:
        """Queue a checked packet; sequence numbers must increase (refused otherwise)."""
        if packet.seq <= self._last_seq:
            raise ProtocolError(
                MALFORMED, f"audio packet {packet.seq} after {self._last_seq}: out of order"
            )
        if self._ending:
            raise ProtocolError(BAD_AUDIO, "audio after 'end'")
        with self._lock:
            if len(self._inbox) >= MAX_INBOX_PACKETS:
                raise ProtocolError(
                    BAD_AUDIO, "audio arrives faster than real time for over 10 s; refused"
                )
            self._inbox.append(packet)
        self._last_seq = packet.seq

    def add_crop(self, packet: CropPacket) -> None:
        """Webcam mode: keep the newest face crop (an older one not yet rendered is dropped:
        the picture follows the face now, not a queue)."""
        if packet.seq <= self._last_crop_seq:
            raise ProtocolError(
                MALFORMED, f"face crop {packet.seq} after {self._last_crop_seq}: out of order"
            )
        self._last_crop_seq = packet.seq
        with self._lock:
            if self._crop is not None:
                self.crops_dropped += 1
            self._crop = packet

    def set_controls(self, wire: WireControls) -> None:
        controls = controls_from_wire(wire)
        with self._lock:
            self._controls = controls

    def finish(self) -> None:
        """The client's input is over: the remaining frames are made, then `done`."""
        self._ending = True

    def close(self) -> None:
        """Ends a hop in flight (ORT run termination) and drops the avatar."""
        self._stop.set()
        self._options.terminate = True
        self._avatar = None

    @property
    def done(self) -> bool:
        return self._done

    @property
    def controls(self) -> LiveControls:
        with self._lock:
            return self._controls

    @property
    def avatar(self) -> LiveAvatar | None:
        return self._avatar

    # -- compute thread ----------------------------------------------------------------------

    def set_avatar(self, photo: bytes, name: str) -> Image8:
        """Decode and encode the avatar (memory only); returns its idle picture."""
        size = self._models.source_size
        image = decode_photo(photo, size=size)
        avatar = encode_avatar(self._avatar_encoder, image, size=size, name=name)
        self._avatar = avatar
        idle: Image8 = to_uint8(render(self._renderer, avatar, avatar.source_motion[None]))[0]
        return idle

    def _drain(self) -> None:
        with self._lock:
            packets = list(self._inbox)
            self._inbox.clear()
        for p in packets:
            self.timeline.append(float_from_pcm(p.pcm), p.capture_end)

    def step(self) -> HopOutput | None:
        """Run at most one hop on the audio in: None when a hop is not ready yet (or the
        session has no avatar, or is done)."""
        avatar = self._avatar
        if avatar is None or self._done:
            return None
        with self._lock:
            crop, self._crop = self._crop, None
        if crop is not None:
            return self._webcam_step(avatar, crop)
        self._drain()
        with self._lock:
            ending = self._ending and not self._inbox
        done = self._scheduler.step(controls=self.controls, avatar=avatar, ended=ending)
        self._done = ending  # the end of the input gets one last hop
        if done is None:
            return None
        offset = self._index_offset
        frames = [
            LiveFrame(index=f.index + offset, image=f.image, timing=f.timing)
            for f in self._collector.take()
        ]
        return HopOutput(
            frames=frames,
            compute_s=done.cost.fixed_s + done.cost.render_s,
            skipped=done.skipped,
            first=done.first,
            emitted=done.emitted,
        )

    def _webcam_step(self, avatar: LiveAvatar, crop: CropPacket) -> HopOutput:
        """One picture from one face crop: motion encoder -> renderer (the local webcam
        worker's steps, `runtime.engine.live.webcam`)."""
        t0 = self._clock()
        size = self._models.source_size
        image = image_to_source(decode_photo(crop.jpeg, size=size), size)
        if self._motion_encoder is None:
            self._motion_encoder = self._graph("motion_encoder")
        motion = self._motion_encoder.run({"image": image})["motion"].reshape(1, MOTION_DIM)
        frame = to_uint8(render(self._renderer, avatar, motion))[0]
        self._webcam_hops += 1
        return HopOutput(
            frames=[
                LiveFrame(index=crop.index, image=frame, timing=FrameTiming(capture=crop.capture))
            ],
            compute_s=self._clock() - t0,
            skipped=0,
            first=crop.index,
        )
