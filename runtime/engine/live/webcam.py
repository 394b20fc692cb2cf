"""The webcam-driven live worker (`live-worker` thread): camera frame -> face crop -> motion
encoder -> renderer -> the pacer, one picture per camera frame, always the newest.

A picture's index is its place on the output timeline (capture time since the first frame, at
the output rate), as in the audio-driven mode: the recorder places frames by index, and a
count of frames read would run slow with a camera faster than the output and fall behind
whenever the reader misses camera frames (a busy machine).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.core.timing import Clock, FrameTiming
from runtime.engine.live.avatar import image_to_source, render, to_uint8
from runtime.engine.live.hop import Graph
from runtime.engine.live.types import Emit, EventKind, WebcamInput
from runtime.engine.live.worker import WorkerContext, WorkerInputs, local_avatar, show_idle
from runtime.media.webcam import WebcamSource, WebcamState
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
        pacer.set_streaming(True)
        last = 0
        origin: float | None = None
        fps = pacer.config.fps
        while not ctx.stop.is_set():
            grab = webcam.latest(after=last, timeout=0.1)
            if grab is None:
                pacer.set_streaming(webcam.state is WebcamState.RUNNING)
                continue
            last = grab.seq
            if origin is None:
                origin = grab.capture
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
                        index=round((grab.capture - origin) * fps),
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
