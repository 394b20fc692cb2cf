"""The live engine: microphone (or a file, or a webcam) in, a talking avatar out, steadily.

Threads (all started by `start`, all joined by `stop`):
- audio: PortAudio's callback thread copies blocks into a ring buffer, the `audio-watchdog`
  thread reopens a lost device (`runtime.media.audio_capture`); or `webcam` reads camera frames;
- `live-worker` (inference): runs the session's one worker, hosted through one protocol
  (`runtime.engine.live.worker`: a `WorkerContext` in, `WorkerInputs` out): local audio
  (`runtime.engine.live.audio_worker`: pulls audio into the 16 kHz timeline, and the hop scheduler
  encodes, samples, retimes and renders each hop for the pacer), local webcam
  (`runtime.engine.live.webcam`), or either on a render server (`runtime.engine.live.remote`);
- `pacer`: publishes one frame per deadline to the sinks (`runtime.engine.live.pacer`);
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
(`runtime.engine.live.hop_choice`); where no hop is real time it renders only the newest frame of
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

from runtime.core.timing import Clock
from runtime.engine.live.audio_worker import LocalAudioWorker
from runtime.engine.live.avatar import LiveAvatar
from runtime.engine.live.hop import Graph, Stopped
from runtime.engine.live.hop_choice import HopPlan, describe_plan
from runtime.engine.live.latency import LatencyMonitor
from runtime.engine.live.pacer import Pacer, PacerConfig
from runtime.engine.live.remote import RemoteCompute, remote_worker
from runtime.engine.live.types import (
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
from runtime.engine.live.vmic import VirtualMicLink
from runtime.engine.live.webcam import WebcamWorker
from runtime.engine.live.worker import LiveWorker, WorkerContext, WorkerInputs
from runtime.media.audio_capture import CaptureStatus
from runtime.media.audio_gate import MicSwitch, NoiseGate
from runtime.media.virtual_mic import VirtualMic
from runtime.model.contract import SAMPLE_RATE
from runtime.model.execution.sessions import ModelSet
from runtime.remote.client import LinkRefused
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
        """`compute`: render on a server (`runtime.engine.live.remote`); else `models` here."""
        if compute is None and models is None:
            raise ValueError("local compute needs the models")
        self._models = models
        self.compute = compute
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
        self._thread: threading.Thread | None = None
        self._worker: LiveWorker | None = None  # this run's (kept after stop for the counts)
        self._inputs_open = False  # the worker's inputs are reported until stop closes them
        self._pacer: Pacer | None = None
        self._run_options: ort.RunOptions | None = None
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
        self._worker = None
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
        worker = self._make_worker(self._context(self._pacer))
        self._worker, self._inputs_open = worker, True
        self._thread = threading.Thread(
            target=self._guard(worker.run), name="live-worker", daemon=True
        )
        self._pacer.start()
        self._thread.start()
        self._emit(EventKind.STARTED, f"live at {self.config.fps} fps")

    def stop(self) -> bool:
        """Stop everything; True when every thread ended within `stop_timeout_s` (1 s)."""
        t_end = self._clock() + self.config.stop_timeout_s
        self._stop.set()
        if self._run_options is not None:
            self._run_options.terminate = True
        ok = True
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, t_end - self._clock() - 0.3))
            ok &= not thread.is_alive()
        inputs = self._worker.inputs() if self._worker is not None else WorkerInputs()
        self._inputs_open = False
        if inputs.capture is not None:
            ok &= inputs.capture.stop(timeout=max(0.05, t_end - self._clock() - 0.25))
        if inputs.webcam is not None:
            ok &= inputs.webcam.stop(timeout=max(0.05, t_end - self._clock() - 0.25))
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

    def __enter__(self) -> LiveEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def worker(self) -> LiveWorker | None:
        """This run's worker (after `start`)."""
        return self._worker

    def stats(self) -> EngineStats:
        worker = self._worker
        inputs = worker.inputs() if worker is not None else WorkerInputs()
        if not self._inputs_open:  # stopped: only the counts are kept
            inputs = WorkerInputs(scheduler=inputs.scheduler, pictures=inputs.pictures)
        capture, webcam, scheduler = inputs.capture, inputs.webcam, inputs.scheduler
        pacer = self._pacer
        plan = HopPlan(hop=0, real_time=True, picture_interval_s=math.nan, measured=False, nfe=0)
        if scheduler is not None:
            plan = scheduler.plan
        with self._lock:
            controls, avatar = self._controls, self._avatar
        latency = self.monitor.snapshot()
        hops = inputs.pictures if scheduler is None else scheduler.hops
        phase, status = self._phase(plan, made=hops > 0 or latency.frames_unique > 0)
        link = inputs.link
        if phase in ("starting", "live") and link is not None and link.unreachable:
            status = link.message  # the frames stopped coming: say why, not "live"
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
            remote=inputs.link_state,
            remote_link=link,
            phase=phase,
            status=status,
            **inputs.link_stats,  # type: ignore[arg-type]
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
            except LinkRefused as exc:  # the server said no: one sentence, no traceback
                if self._stop.is_set():
                    return
                logger.debug("the render server link ended: %s", exc)  # the event says it
                self._state = EngineState.FAILED
                self._emit(EventKind.ERROR, str(exc))
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

    def _context(self, pacer: Pacer) -> WorkerContext:
        return WorkerContext(
            config=self.config,
            source=self.source,
            pacer=pacer,
            monitor=self.monitor,
            clock=self._clock,
            stop=self._stop,
            emit=self._emit,
            take_avatar=self._swap_avatar,
            controls=lambda: self.controls,
            mic=self.mic,
            gate=self.gate.process,
            on_capture=self._on_capture,
            vmic_tap=self._vmic.tap,
            vmic_update=self._vmic.update,
            audio_sinks=self._audio_sinks,
            audio_ended=self._audio_ended,
            on_hop=self._listener.on_hop,
        )

    def _make_worker(self, ctx: WorkerContext) -> LiveWorker:
        """The worker for this session: on a render server, or here for a webcam or audio."""
        if self.compute is not None:
            return remote_worker(ctx=ctx, compute=self.compute)
        models = self._models
        assert models is not None
        if isinstance(self.source, WebcamInput):
            return WebcamWorker(
                ctx=ctx,
                renderer=self._graph("renderer"),
                encoder=self._graph("motion_encoder"),
                source_size=models.source_size,
            )
        return LocalAudioWorker(ctx=ctx, models=models, graph=self._graph)

    def _on_capture(self, status: CaptureStatus) -> None:
        text = status.state.value
        if status.error:
            text += f": {status.error}"
        self._emit(EventKind.AUDIO, text)
