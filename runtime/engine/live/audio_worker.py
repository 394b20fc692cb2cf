"""The local audio-driven worker (`live-worker` thread): the microphone or a file in, through the
timeline, and the one hop scheduler (`runtime.engine.live.hop_scheduler`) making the pictures. The
capture's own threads (PortAudio's callback, `audio-watchdog`) are `runtime.media.audio_capture`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from runtime.core.timing import wait_on
from runtime.engine.live.hop import Graph
from runtime.engine.live.hop_scheduler import HopScheduler
from runtime.engine.live.local_compute import local_scheduler
from runtime.engine.live.types import EventKind, FileInput, MicrophoneInput
from runtime.engine.live.worker import (
    WorkerContext,
    WorkerInputs,
    audio_input,
    local_avatar,
    show_idle,
)
from runtime.media.audio_capture import AudioCapture, CaptureState
from runtime.model.execution.sessions import ModelSet

logger = logging.getLogger(__name__)


class LocalAudioWorker:
    def __init__(
        self, *, ctx: WorkerContext, models: ModelSet, graph: Callable[[str], Graph]
    ) -> None:
        source = ctx.source
        if not isinstance(source, FileInput | MicrophoneInput):
            raise TypeError("the audio worker takes a microphone or a file")
        self._ctx, self._source, self._models, self._graph = ctx, source, models, graph
        self._scheduler: HopScheduler | None = None
        self._capture: AudioCapture | None = None

    def inputs(self) -> WorkerInputs:
        return WorkerInputs(capture=self._capture, scheduler=self._scheduler)

    def run(self) -> None:
        ctx = self._ctx
        renderer = self._graph("renderer")
        scheduler = local_scheduler(
            models=self._models,
            config=ctx.config,
            source=self._source,
            graph=self._graph,
            renderer=renderer,
            pacer=ctx.pacer,
            monitor=ctx.monitor,
            clock=ctx.clock,
            controls=ctx.controls(),
            emit=ctx.emit,
            on_hop=ctx.on_hop,
        )
        self._scheduler = scheduler  # (its plan is known now: from a bench, before any hop)
        avatar, _ = ctx.take_avatar()
        show_idle(ctx, renderer, avatar)
        capture, feed = audio_input(ctx, self._source, scheduler.timeline)
        self._capture = capture
        if ctx.stop.is_set():
            return
        capture.start()
        ended = False  # the finite input ended and its last hop was made
        ctx.pacer.set_streaming(True)
        try:
            while not ctx.stop.is_set():
                # ENDED is only set after the last block arrived: a read that follows it takes
                # in the rest of the file.
                ending = not ended and capture.state is CaptureState.ENDED
                feed.pull(ended)
                if ending:
                    self._hop(scheduler, renderer, ended=True)  # silence follows: idling on
                    ended = True
                    ctx.audio_ended.set()
                    ctx.emit(EventKind.AUDIO_ENDED, "the audio file has been played")
                elif not self._hop(scheduler, renderer, ended=False):
                    wait_on(ctx.stop, 0.005, ctx.clock)
        finally:
            # What was captured during the last hop still goes to the recording (a slow
            # machine's hop lasts seconds); a failing input must not hide why the loop ended.
            try:
                feed.pull(ended)
            except Exception:
                logger.exception("could not take the last audio in")

    def _hop(self, scheduler: HopScheduler, renderer: Graph, *, ended: bool) -> bool:
        """One hop of the scheduler, if one is due; True if it ran."""
        ctx = self._ctx
        avatar = local_avatar(ctx, renderer)
        done = scheduler.step(
            controls=ctx.controls(), avatar=avatar, ended=ended, silence_follows=True
        )
        if done is None:
            return False
        ctx.vmic_update()
        return True
