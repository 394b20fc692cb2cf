"""The live engine: microphone (or a file, or a webcam) in, a talking avatar out, steadily.

Threads (all started by `start`, all joined by `stop`):
- audio: PortAudio's callback thread copies blocks into a ring buffer, the `audio-watchdog`
  thread reopens a lost device (`runtime.media.audio_capture`); or `webcam` reads camera frames;
- `live-worker` (inference): pulls audio into the 16 kHz timeline, and every hop of H frames
  encodes a sliding window of audio, samples motion for those frames, retimes it to the output
  rate, renders it against the cached avatar and hands the frames to the pacer
  (`runtime.engine.live_hop`; the webcam worker is `runtime.engine.live_webcam`);
- `pacer`: publishes one frame per deadline to the sinks (`runtime.engine.pacer`);
- `recorder`: encodes the MP4 when recording;
- the virtual microphone's output callback (PortAudio's thread) plays the captured audio,
  delayed by the measured latency (`runtime.media.virtual_mic`); the capture callback feeds it.

Mute and push-to-talk (`engine.mic`) act in the capture callback; the noise gate
(`engine.gate`) on the worker, on what joins the timeline (the model's input only).

The public methods are called from any thread (GUI or CLI main thread). Listener callbacks run
on the engine's threads and must not block; the GUI wraps them in queued Qt signals.

Live stays live: when compute falls behind, the worker skips whole hops to the newest audio
instead of queueing (the generator's motion context is held across the gap), so latency stays
within the structural latency plus a hop's compute and a hop, whatever the real-time factor.
With hop "Auto" (`LiveControls.hop is None`) the hop follows the measured compute
(`runtime.engine.hop_choice`); where no hop is real time it renders only the newest frame of
each step (a slideshow that keeps up, reported as such).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from runtime.core.timing import Clock, wait_on
from runtime.engine.hop_choice import HopPlan, describe_plan
from runtime.engine.hop_scheduler import HopScheduler
from runtime.engine.latency import LatencyMonitor
from runtime.engine.live_avatar import LiveAvatar, render, to_uint8
from runtime.engine.live_hop import Graph, Stopped
from runtime.engine.live_input import AudioFeed, open_capture
from runtime.engine.live_local import local_scheduler
from runtime.engine.live_remote import (
    RemoteCompute,
    RemoteWebcamWorker,
    RemoteWorker,
    WorkerHooks,
    remote_worker,
)
from runtime.engine.live_vmic import VirtualMicLink
from runtime.engine.live_webcam import WebcamWorker
from runtime.engine.pacer import Pacer, PacerConfig
from runtime.engine.types import (
    DEFAULT_MIN_NFE,
    EngineConfig,
    EngineEvent,
    EngineListener,
    EngineState,
    EngineStats,
    EventDetail,
    EventKind,
    FileInput,
    Gaze,
    HeadPose,
    HopRecord,
    LiveControls,
    MicEvent,
    MicrophoneInput,
    Source,
    WebcamInput,
)
from runtime.media.audio_capture import AudioCapture, CaptureState, CaptureStatus
from runtime.media.audio_gate import MicSwitch, NoiseGate
from runtime.media.virtual_mic import VirtualMic
from runtime.model.contract import SAMPLE_RATE
from runtime.model.sessions import ModelSet
from runtime.sinks import AudioSink, Sink, SinkSet

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MIN_NFE",
    "EngineConfig",
    "EngineEvent",
    "EngineListener",
    "EngineState",
    "EngineStats",
    "EventKind",
    "FileInput",
    "Gaze",
    "HeadPose",
    "HopRecord",
    "LiveControls",
    "LiveEngine",
    "MicEvent",
    "MicrophoneInput",
    "RemoteCompute",
    "Source",
    "WebcamInput",
]

Array = npt.NDArray[np.float32]


# -- the engine ------------------------------------------------------------------------------


class LiveEngine:
    def __init__(
        self,
        *,
        models: ModelSet | None,
        source: Source,
        config: EngineConfig | None = None,
        sinks: Sequence[Sink] = (),
        listener: EngineListener | None = None,
        clock: Clock = time.perf_counter,
        virtual_mic: VirtualMic | None = None,
        compute: RemoteCompute | None = None,
    ) -> None:
        """`compute`: render on a server (`runtime.engine.live_remote`); else `models` here."""
        if compute is None and models is None:
            raise ValueError("local compute needs the models")
        self._models = models
        self.compute = compute
        self._remote: RemoteWorker | RemoteWebcamWorker | None = None
        self.source = source
        self.config = config if config is not None else EngineConfig()
        self._listener = listener if listener is not None else EngineListener()
        self._clock = clock
        self._sinks = SinkSet(sinks, on_error=lambda n, m: self._emit(EventKind.SINK, f"{n}: {m}"))
        self.monitor = LatencyMonitor(window_s=self.config.stats_window_s, clock=clock)
        self._lock = threading.Lock()
        self._controls = LiveControls()
        self._avatar: LiveAvatar | None = None
        self._pending_avatar: LiveAvatar | None = None
        self._state = EngineState.STOPPED
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._pacer: Pacer | None = None
        self._capture: AudioCapture | None = None
        self._webcam: WebcamWorker | None = None
        self._scheduler: HopScheduler | None = None
        self._run_options: ort.RunOptions | None = None
        self._hops = 0  # webcam pictures (audio hops: the scheduler's)
        self._audio_ended = threading.Event()
        # Sinks that also take the audio (the recorder, meters): `add_audio(first, samples)`.
        self._audio_sinks: list[AudioSink] = [s for s in sinks if isinstance(s, AudioSink)]
        self.mic = MicSwitch()
        self.gate = NoiseGate(self.config.gate, rate=SAMPLE_RATE)
        self.virtual_mic = virtual_mic
        self._vmic = VirtualMicLink(virtual_mic, monitor=self.monitor, emit=self._emit)

    # -- public API (any thread) -------------------------------------------------------------

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def running(self) -> bool:
        return self._state is EngineState.RUNNING

    @property
    def controls(self) -> LiveControls:
        with self._lock:
            return self._controls

    def set_controls(self, controls: LiveControls) -> None:
        """Pose/gaze/cam, expressiveness, steps, hop: taken by the next hop."""
        with self._lock:
            self._controls = controls

    def set_avatar(self, avatar: LiveAvatar) -> None:
        """Switch avatar while live (from the next hop), or set the one `start` will use."""
        with self._lock:
            if self._state is EngineState.RUNNING:
                self._pending_avatar = avatar
            else:
                self._avatar = avatar

    def start(self, avatar: LiveAvatar | None = None, controls: LiveControls | None = None) -> None:
        if self._state is EngineState.RUNNING:
            raise RuntimeError("the engine is already running")
        with self._lock:
            if avatar is not None:
                self._avatar = avatar
            if controls is not None:
                self._controls = controls
            if self._avatar is None:
                raise ValueError("no avatar: pass one to start() or call set_avatar() first")
            self._pending_avatar = None
        self._stop.clear()
        self._audio_ended.clear()
        self._hops = 0
        self._scheduler = None
        self.monitor.reset()
        self._run_options = ort.RunOptions()
        self._sinks.open_all(fps=self.config.fps)
        self._pacer = Pacer(
            config=PacerConfig(
                fps=float(self.config.fps),
                max_queue=self.config.max_queue,
                playout_delay_s=self.config.playout_delay_s,
                phase_lock=not isinstance(self.source, WebcamInput),
                # Rounding the delay up to a whole period from wherever the ticks fall costs
                # 0 to 40 ms at random; moving the ticks onto the frames costs nothing.
                align_ticks=(
                    not isinstance(self.source, WebcamInput)
                    if self.config.align_ticks is None
                    else self.config.align_ticks
                ),
            ),
            publish=self._sinks.send,
            monitor=self.monitor,
            clock=self._clock,
        )
        self._vmic.open(has_audio=not isinstance(self.source, WebcamInput))
        self._state = EngineState.RUNNING
        target = self._video_worker if isinstance(self.source, WebcamInput) else self._audio_worker
        if self.compute is not None:
            target = self._remote_worker
        self._worker = threading.Thread(target=self._guard(target), name="live-worker", daemon=True)
        self._pacer.start()
        self._worker.start()
        self._emit(EventKind.STARTED, f"live at {self.config.fps} fps")

    def stop(self) -> bool:
        """Stop everything; True when every thread ended within `stop_timeout_s` (1 s)."""
        t_end = self._clock() + self.config.stop_timeout_s
        self._stop.set()
        if self._run_options is not None:
            self._run_options.terminate = True
        ok = True
        worker, self._worker = self._worker, None
        if worker is not None and worker is not threading.current_thread():
            worker.join(max(0.0, t_end - self._clock() - 0.3))
            ok &= not worker.is_alive()
        remote, self._remote = self._remote, None
        if isinstance(remote, RemoteWorker) and remote.capture is not None:
            self._capture = remote.capture
        if self._capture is not None:
            ok &= self._capture.stop(timeout=max(0.05, t_end - self._clock() - 0.25))
            self._capture = None
        cam = None if self._webcam is None else self._webcam.webcam
        if isinstance(remote, RemoteWebcamWorker):
            cam = remote.webcam
        if cam is not None:
            ok &= cam.stop(timeout=max(0.05, t_end - self._clock() - 0.25))
        self._webcam = None
        if self._pacer is not None:
            ok &= self._pacer.stop(timeout=max(0.05, t_end - self._clock() - 0.2))
        self._sinks.close_all(timeout=max(0.05, t_end - self._clock()))
        self._vmic.close()
        was = self._state
        if self._state is EngineState.RUNNING:
            self._state = EngineState.STOPPED
        if was is not EngineState.STOPPED:
            self._emit(
                EventKind.STOPPED, "stopped" if ok else "stopped (a thread did not end in time)"
            )
        return ok

    def wait_audio_ended(self, timeout: float | None = None) -> bool:
        """For a file input: wait until its last frame has been generated."""
        return self._audio_ended.wait(timeout)

    def stats(self) -> EngineStats:
        remote = self._remote
        capture = remote.capture if isinstance(remote, RemoteWorker) else self._capture
        webcam = None if self._webcam is None else self._webcam.webcam
        if isinstance(remote, RemoteWebcamWorker):
            webcam = remote.webcam
        pacer = self._pacer
        scheduler = self._scheduler
        plan = HopPlan(hop=0, real_time=True, picture_interval_s=math.nan, measured=False, nfe=0)
        if scheduler is not None:
            plan = scheduler.plan
        with self._lock:
            controls, avatar = self._controls, self._avatar
        latency = self.monitor.snapshot()
        hops = self._hops if scheduler is None else scheduler.hops
        phase, status = self._phase(plan, made=hops > 0 or latency.frames_unique > 0)
        vmic = self._vmic.status()
        if vmic is not None and vmic.open and vmic.out_of_sync is not None:
            status += f"; {vmic.out_of_sync}"
        return EngineStats(
            state=self._state,
            latency=latency,
            playout_delay_ms=(pacer.delay_s * 1e3) if pacer is not None else math.nan,
            audio=capture.status() if capture is not None else None,
            webcam=None if webcam is None else webcam.state.value,
            sinks=self._sinks.statuses(),
            hops=hops,
            skipped_frames=0 if scheduler is None else scheduler.skipped_frames,
            skipped_hops=0 if scheduler is None else scheduler.skipped_hops,
            hop=plan.hop,
            auto_hop=controls.hop is None and not self.config.quality,
            real_time=plan.real_time,
            picture_interval_s=plan.picture_interval_s,
            nfe=plan.nfe,
            controls=controls,
            avatar=avatar.name if avatar is not None else "",
            virtual_mic=vmic,
            remote=None if remote is None else remote.state.value,
            phase=phase,
            status=status,
            **({} if remote is None or remote.link is None else remote.link.stats()),
        )

    def _phase(self, plan: HopPlan, *, made: bool) -> tuple[str, str]:
        """(phase, status) for the stats: what the session is doing, in words."""
        state = self._state
        if state is not EngineState.RUNNING:
            return state.value, state.value
        if plan.measured and not plan.real_time:  # known at once from a bench of these graphs
            return "not_real_time", describe_plan(plan, auto=True, nfe=self.controls.nfe)
        if not made:
            if self.compute is not None:
                return "starting", "starting: waiting for the render server's first picture"
            return "starting", "starting: making the first picture"
        if plan.hop == 0:  # a webcam, or remote compute: no hop plan here
            return "live", "live"
        return "live", "live: " + describe_plan(
            plan, auto=self.controls.hop is None, nfe=self.controls.nfe
        )

    # -- shared worker helpers ---------------------------------------------------------------

    def _guard(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except Stopped:
                pass
            except Exception as exc:
                if self._stop.is_set():
                    return
                logger.exception("the live engine failed")
                self._state = EngineState.FAILED
                self._emit(EventKind.ERROR, f"{type(exc).__name__}: {exc}")

        return run

    def _emit(self, kind: EventKind, message: str, detail: EventDetail = None) -> None:
        logger.debug("%s: %s", kind, message)
        callback = self._listener.on_event
        if callback is None:
            return
        try:
            callback(EngineEvent(kind=kind, message=message, when=self._clock(), detail=detail))
        except Exception:
            logger.exception("engine event listener failed")

    def _graph(self, name: str) -> Graph:
        assert self._run_options is not None and self._models is not None
        return Graph(self._models[name], self._run_options, self._stop)

    def _swap_avatar(self) -> tuple[LiveAvatar, bool]:
        """The avatar for this hop, and whether a pending switch took effect now."""
        with self._lock:
            pending, self._pending_avatar = self._pending_avatar, None
            if pending is not None:
                self._avatar = pending
            avatar = self._avatar
        assert avatar is not None
        return avatar, pending is not None

    def _take_avatar(self, renderer: Graph) -> LiveAvatar:
        """The avatar for this hop; a pending switch takes effect here (idle frame too)."""
        avatar, changed = self._swap_avatar()
        if changed:
            self._set_idle(renderer, avatar)
            self._emit(EventKind.AVATAR, f"avatar {avatar.name}")
        return avatar

    def _set_idle(self, renderer: Graph, avatar: LiveAvatar) -> None:
        assert self._pacer is not None
        idle = to_uint8(render(renderer, avatar, avatar.source_motion[None]))[0]
        self._pacer.set_idle(idle)

    # -- audio-driven worker -----------------------------------------------------------------

    def _remote_worker(self) -> None:
        source, compute, pacer = self.source, self.compute, self._pacer
        assert pacer is not None and compute is not None
        self.gate.reset()
        hooks = WorkerHooks(
            take_avatar=self._swap_avatar,
            controls=lambda: self.controls,
            emit=self._emit,
            on_capture=self._on_capture,
            vmic_tap=self._vmic.tap,
            vmic_update=self._vmic.update,
            audio_ended=self._audio_ended,
            gate=self.gate.process,
        )
        worker = remote_worker(
            compute=compute,
            config=self.config,
            source=source,
            pacer=pacer,
            monitor=self.monitor,
            clock=self._clock,
            stop=self._stop,
            mic=self.mic,
            audio_sinks=self._audio_sinks,
            hooks=hooks,
        )
        self._remote = worker
        worker.run()

    def _audio_worker(self) -> None:
        cfg, pacer, models, source = self.config, self._pacer, self._models, self.source
        assert pacer is not None and models is not None
        assert isinstance(source, FileInput | MicrophoneInput)
        renderer = self._graph("renderer")
        scheduler = local_scheduler(
            models=models,
            config=cfg,
            source=source,
            graph=self._graph,
            renderer=renderer,
            pacer=pacer,
            monitor=self.monitor,
            clock=self._clock,
            controls=self.controls,
            emit=self._emit,
            on_hop=self._listener.on_hop,
        )
        self._scheduler = scheduler  # (its plan is known now: from a bench, before any hop)
        avatar = self._take_avatar(renderer)
        self._set_idle(renderer, avatar)
        capture = open_capture(
            source,
            cfg,
            clock=self._clock,
            on_status=self._on_capture,
            switch=self.mic,
            tap=self._vmic.tap,
        )
        self.gate.reset()
        self._capture = capture
        if self._stop.is_set():
            return
        capture.start()
        feed = AudioFeed(
            capture=capture,
            timeline=scheduler.timeline,
            sinks=self._audio_sinks,
            monitor=self.monitor,
            clock=self._clock,
            silence_fill_s=cfg.silence_fill_s,
            emit=self._emit,
            gate=self.gate.process,
        )
        ended = False  # the finite input ended and its last hop was made
        pacer.set_streaming(True)
        try:
            while not self._stop.is_set():
                # ENDED is only set after the last block arrived: a read that follows it takes
                # in the rest of the file.
                ending = not ended and capture.state is CaptureState.ENDED
                feed.pull(ended)
                if ending:
                    self._hop(scheduler, renderer, ended=True)  # silence follows: idling on
                    ended = True
                    self._audio_ended.set()
                    self._emit(EventKind.AUDIO_ENDED, "the audio file has been played")
                elif not self._hop(scheduler, renderer, ended=False):
                    wait_on(self._stop, 0.005, self._clock)
        finally:
            # What was captured during the last hop still goes to the recording (a slow
            # machine's hop lasts seconds); a failing input must not hide why the loop ended.
            try:
                feed.pull(ended)
            except Exception:
                logger.exception("could not take the last audio in")

    def _hop(self, scheduler: HopScheduler, renderer: Graph, *, ended: bool) -> bool:
        """One hop of the scheduler, if one is due; True if it ran."""
        avatar = self._take_avatar(renderer)
        done = scheduler.step(
            controls=self.controls, avatar=avatar, ended=ended, silence_follows=True
        )
        if done is None:
            return False
        self._vmic.update()
        return True

    def _on_capture(self, status: CaptureStatus) -> None:
        text = status.state.value
        if status.error:
            text += f": {status.error}"
        self._emit(EventKind.AUDIO, text)

    # -- video-driven worker -----------------------------------------------------------------

    def _video_worker(self) -> None:
        source = self.source
        assert isinstance(source, WebcamInput) and self._pacer is not None
        renderer = self._graph("renderer")
        avatar = self._take_avatar(renderer)
        self._set_idle(renderer, avatar)
        assert self._models is not None

        def counted() -> None:
            self._hops += 1

        worker = WebcamWorker(
            source=source,
            renderer=renderer,
            encoder=self._graph("motion_encoder"),
            pacer=self._pacer,
            monitor=self.monitor,
            clock=self._clock,
            stop=self._stop,
            emit=self._emit,
            take_avatar=lambda: self._take_avatar(renderer),
            on_hop=counted,
            source_size=self._models.source_size,
        )
        self._webcam = worker
        worker.run()
