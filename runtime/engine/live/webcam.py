"""The webcam-driven live worker (`live-worker` thread): camera frame -> face crop -> motion
encoder -> renderer -> the pacer, one picture per camera frame, always the newest.

A picture's index is its place on the output timeline (capture time since the first frame, at
the output rate), as in the audio-driven mode: the recorder places frames by index, and a
count of frames read would run slow with a camera faster than the output and fall behind
whenever the reader misses camera frames (a busy machine). `NewestGrabs` does that placing,
and keeps the pacer's streaming state, for this worker and the remote one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.core.timing import Clock, FrameTiming
from runtime.engine.live.avatar import image_to_source, render, to_uint8
from runtime.engine.live.hop import Graph
from runtime.engine.live.pacer import Pacer
from runtime.engine.live.types import Emit, EventKind, WebcamInput
from runtime.engine.live.worker import WorkerContext, WorkerInputs, local_avatar, show_idle
from runtime.media.webcam import Grab, WebcamSource, WebcamState
from runtime.model.contract import MOTION_DIM
from runtime.sinks.frame import LiveFrame


def open_webcam(
    source: WebcamInput, *, clock: Clock, emit: Emit, crop_size: int
) -> tuple[Any, WebcamSource]:
    """The face cropper (`source.cropper`'s, else a face tracker cropping `crop_size` squares)
    and the camera of `source`, not started; camera states go out as "webcam" events."""
    if source.cropper is not None:
        cropper = source.cropper()
    else:
        from runtime.media.face_crop import FaceTracker

        cropper = FaceTracker(output_size=crop_size)
    webcam = WebcamSource(
        cv2=source.cv2,
        config=source.config,
        clock=clock,
        on_state=lambda s, e: emit(EventKind.WEBCAM, s.value + (f": {e}" if e else "")),
    )
    return cropper, webcam


class NewestGrabs:
    """The camera's newest frames for a live worker (its thread), each with its place on the
    output timeline: capture time since the first frame taken, at the pacer's rate.

    Made when the loop starts: frames are expected from then on (`pacer.set_streaming`). While
    none comes, frames are expected only if the camera still runs, so a lost camera's missing
    frames are not counted late."""

    def __init__(self, webcam: WebcamSource, pacer: Pacer, *, timeout: float = 0.1) -> None:
        self._webcam, self._pacer, self._timeout = webcam, pacer, timeout
        self._last = 0  # the sequence number of the last frame taken
        self._origin: float | None = None  # the first frame's capture time
        pacer.set_streaming(True)

    def next(self) -> tuple[Grab, int] | None:
        """A frame newer than the last one taken and its output index; None when none came
        within the timeout."""
        grab = self._webcam.latest(after=self._last, timeout=self._timeout)
        if grab is None:
            self._pacer.set_streaming(self._webcam.state is WebcamState.RUNNING)
            return None
        self._last = grab.seq
        if self._origin is None:
            self._origin = grab.capture
        return grab, round((grab.capture - self._origin) * self._pacer.config.fps)


class WebcamWorker:
    def __init__(
        self, *, ctx: WorkerContext, renderer: Graph, encoder: Graph, source_size: int
    ) -> None:
        source = ctx.source
        if not isinstance(source, WebcamInput):
            raise TypeError("the webcam worker takes a webcam")
        self._ctx, self._source = ctx, source
        self._renderer, self._encoder = renderer, encoder
        self._source_size = source_size
        self._webcam: WebcamSource | None = None
        self._pictures = 0

    def inputs(self) -> WorkerInputs:
        return WorkerInputs(webcam=self._webcam, pictures=self._pictures)

    def run(self) -> None:
        ctx = self._ctx
        avatar, _ = ctx.take_avatar()
        show_idle(ctx, self._renderer, avatar)
        cropper, webcam = open_webcam(
            self._source, clock=ctx.clock, emit=ctx.emit, crop_size=self._source_size
        )
        self._webcam = webcam
        if ctx.stop.is_set():
            return
        webcam.start()
        pacer, mon = ctx.pacer, ctx.monitor
        grabs = NewestGrabs(webcam, pacer)
        while not ctx.stop.is_set():
            taken = grabs.next()
            if taken is None:
                continue
            grab, index = taken
            avatar = local_avatar(ctx, self._renderer)
            t0 = ctx.clock()
            crop = cropper.update(grab.rgb)
            image = image_to_source(np.asarray(crop, np.uint8), self._source_size)
            motion = self._encoder.run({"image": image})["motion"]
            t_motion = ctx.clock()
            frame = to_uint8(render(self._renderer, avatar, motion.reshape(1, MOTION_DIM)))[0]
            t_pix = ctx.clock()
            pacer.submit(
                [
                    LiveFrame(
                        index=index,
                        image=frame,
                        timing=FrameTiming(
                            capture=grab.capture, features=t0, motion=t_motion, pixels=t_pix
                        ),
                    )
                ]
            )
            mon.record_compute("features", 0.0)
            mon.record_compute("motion", t_motion - t0)
            mon.record_compute("render", t_pix - t_motion)
            mon.record_compute("hop", t_pix - t0)
            mon.record_media(1.0 / self._source.config.fps)
            self._pictures += 1
