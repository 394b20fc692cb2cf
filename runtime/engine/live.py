"""The live engine: microphone (or a file, or a webcam) in, a talking avatar out, steadily.

Threads (all started by `start`, all joined by `stop`):
- audio: PortAudio's callback thread copies blocks into a ring buffer, the `audio-watchdog`
  thread reopens a lost device (`runtime.media.audio_capture`); or `webcam` reads camera frames;
- `live-worker` (inference): pulls audio into the 16 kHz timeline, and every hop of H frames
  encodes a sliding window of audio, samples motion for those frames, retimes it to the output
  rate, renders it against the cached avatar and hands the frames to the pacer;
- `pacer`: publishes one frame per deadline to the sinks (`runtime.engine.pacer`);
- `recorder`: encodes the MP4 when recording;
- the virtual microphone's output callback (PortAudio's thread) plays the captured audio,
  delayed by the measured latency (`runtime.media.virtual_mic`); the capture callback feeds it.

Mute and push-to-talk (`engine.mic`) act in the capture callback; the noise gate
(`engine.gate`) on the worker, on what joins the timeline (the model's input only).

The public methods are called from any thread (GUI or CLI main thread). Listener callbacks run
on the engine's threads and must not block; the GUI wraps them in queued Qt signals.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from runtime.core.timing import Clock, FrameTiming
from runtime.engine.audio_timeline import AudioTimeline
from runtime.engine.features import encoder_from_session, utterance_features, window_features
from runtime.engine.latency import LatencyMonitor
from runtime.engine.live_avatar import LiveAvatar, image_to_source, render, to_uint8
from runtime.engine.live_generator import LiveGenerator
from runtime.engine.motion_sampler import (
    NoiseFn,
    conditioner_from_session,
    fixed_noise,
    random_noise,
    velocity_from_session,
)
from runtime.engine.pacer import MotionRetimer, Pacer, PacerConfig
from runtime.engine.types import (
    EngineConfig,
    EngineEvent,
    EngineListener,
    EngineState,
    EngineStats,
    FileInput,
    Gaze,
    HeadPose,
    HopRecord,
    LiveControls,
    MicrophoneInput,
    Source,
    WebcamInput,
)
from runtime.media.audio_capture import (
    AudioCapture,
    CaptureState,
    CaptureStatus,
    SoundDeviceLike,
)
from runtime.media.audio_gate import MicSwitch, NoiseGate
from runtime.media.audio_playback import FilePlayback
from runtime.media.virtual_mic import VirtualMic
from runtime.media.virtual_mic_device import VirtualMicUnavailable
from runtime.media.webcam import WebcamSource, WebcamState
from runtime.model.contract import CLIP_FRAMES, FPS, MOTION_DIM, SAMPLE_RATE, SAMPLES_PER_FRAME
from runtime.model.sessions import GraphSession, ModelSet
from runtime.sinks import AudioSink, Sink, SinkSet
from runtime.sinks.frame import LiveFrame

logger = logging.getLogger(__name__)

__all__ = [
    "EngineConfig",
    "EngineEvent",
    "EngineListener",
    "EngineState",
    "EngineStats",
    "FileInput",
    "Gaze",
    "HeadPose",
    "HopRecord",
    "LiveControls",
    "LiveEngine",
    "MicrophoneInput",
    "Source",
    "WebcamInput",
]

Array = npt.NDArray[np.float32]

QUALITY_HOP = CLIP_FRAMES


class _Stopped(Exception):
    """The engine is stopping: abandon the hop in flight."""


class _Graph:
    """A session whose runs end promptly when the engine stops (ORT run termination)."""

    def __init__(self, session: GraphSession, options: ort.RunOptions, stop: threading.Event):
        self._session, self._options, self._stop = session, options, stop

    def run(self, inputs: Mapping[str, npt.NDArray[np.generic]]) -> dict[str, Array]:
        if self._stop.is_set():
            raise _Stopped
        try:
            return self._session.run(inputs, run_options=self._options)
        except Exception:
            if self._stop.is_set():
                raise _Stopped from None
            raise


# -- the engine ------------------------------------------------------------------------------


class LiveEngine:
    def __init__(
        self,
        *,
        models: ModelSet,
        source: Source,
        config: EngineConfig | None = None,
        sinks: Sequence[Sink] = (),
        listener: EngineListener | None = None,
        clock: Clock = time.perf_counter,
        virtual_mic: VirtualMic | None = None,
    ) -> None:
        self._models = models
        self.source = source
        self.config = config if config is not None else EngineConfig()
        self._listener = listener if listener is not None else EngineListener()
        self._clock = clock
        self._sinks = SinkSet(sinks, on_error=lambda n, m: self._emit("sink", f"{n}: {m}"))
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
        self._webcam: WebcamSource | None = None
        self._run_options: ort.RunOptions | None = None
        self._hops = 0
        self._skipped = 0
        self._audio_ended = threading.Event()
        # Sinks that also take the audio (the recorder, meters): `add_audio(first, samples)`.
        self._audio_sinks: list[AudioSink] = [s for s in sinks if isinstance(s, AudioSink)]
        self.mic = MicSwitch()
        self.gate = NoiseGate(self.config.gate, rate=SAMPLE_RATE)
        self.virtual_mic = virtual_mic
        self._vmic_open = False

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
        self._hops = self._skipped = 0
        self.monitor.reset()
        self._run_options = ort.RunOptions()
        self._sinks.open_all(fps=self.config.fps)
        self._pacer = Pacer(
            config=PacerConfig(
                fps=float(self.config.fps),
                max_queue=self.config.max_queue,
                playout_delay_s=self.config.playout_delay_s,
            ),
            publish=self._sinks.send,
            monitor=self.monitor,
            clock=self._clock,
        )
        self._open_virtual_mic()
        self._state = EngineState.RUNNING
        target = self._video_worker if isinstance(self.source, WebcamInput) else self._audio_worker
        self._worker = threading.Thread(target=self._guard(target), name="live-worker", daemon=True)
        self._pacer.start()
        self._worker.start()
        self._emit("started", f"live at {self.config.fps} fps")

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
        if self._capture is not None:
            ok &= self._capture.stop(timeout=max(0.05, t_end - self._clock() - 0.25))
            self._capture = None
        if self._webcam is not None:
            ok &= self._webcam.stop(timeout=max(0.05, t_end - self._clock() - 0.25))
            self._webcam = None
        if self._pacer is not None:
            ok &= self._pacer.stop(timeout=max(0.05, t_end - self._clock() - 0.2))
        self._sinks.close_all(timeout=max(0.05, t_end - self._clock()))
        if self.virtual_mic is not None and self._vmic_open:
            self._vmic_open = False
            self.virtual_mic.close()
        was = self._state
        if self._state is EngineState.RUNNING:
            self._state = EngineState.STOPPED
        if was is not EngineState.STOPPED:
            self._emit("stopped", "stopped" if ok else "stopped (a thread did not end in time)")
        return ok

    def wait_audio_ended(self, timeout: float | None = None) -> bool:
        """For a file input: wait until its last frame has been generated."""
        return self._audio_ended.wait(timeout)

    def stats(self) -> EngineStats:
        capture = self._capture
        webcam = self._webcam
        pacer = self._pacer
        with self._lock:
            controls, avatar = self._controls, self._avatar
        return EngineStats(
            state=self._state,
            latency=self.monitor.snapshot(),
            playout_delay_ms=(pacer.delay_s * 1e3) if pacer is not None else math.nan,
            audio=capture.status() if capture is not None else None,
            webcam=None if webcam is None else webcam.state.value,
            sinks=self._sinks.statuses(),
            hops=self._hops,
            skipped_frames=self._skipped,
            controls=controls,
            avatar=avatar.name if avatar is not None else "",
            virtual_mic=None if self.virtual_mic is None else self.virtual_mic.status(),
        )

    # -- virtual microphone ------------------------------------------------------------------

    def _open_virtual_mic(self) -> None:
        vmic = self.virtual_mic
        if vmic is None:
            return
        if isinstance(self.source, WebcamInput):
            self._emit("virtual_mic", "no virtual microphone: the webcam source has no audio")
            return
        try:
            vmic.open()
        except VirtualMicUnavailable as exc:
            self._emit("virtual_mic", f"virtual microphone unavailable: {exc}")
            return
        self._vmic_open = True
        self._emit("virtual_mic", f"virtual microphone: {vmic.status().device}")

    def _update_virtual_mic(self) -> None:
        """Hand the measured latency to the virtual microphone (worker, once per hop)."""
        if self.virtual_mic is None or not self._vmic_open:
            return
        p50 = self.monitor.snapshot().latency_p50_ms
        self.virtual_mic.set_latency(p50 / 1e3 if math.isfinite(p50) else None)

    # -- shared worker helpers ---------------------------------------------------------------

    def _guard(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except _Stopped:
                pass
            except Exception as exc:
                if self._stop.is_set():
                    return
                logger.exception("the live engine failed")
                self._state = EngineState.FAILED
                self._emit("error", f"{type(exc).__name__}: {exc}")

        return run

    def _emit(self, kind: str, message: str) -> None:
        logger.debug("%s: %s", kind, message)
        callback = self._listener.on_event
        if callback is None:
            return
        try:
            callback(EngineEvent(kind=kind, message=message, when=self._clock()))
        except Exception:
            logger.exception("engine event listener failed")

    def _graph(self, name: str) -> _Graph:
        assert self._run_options is not None
        return _Graph(self._models[name], self._run_options, self._stop)

    def _take_avatar(self, renderer: _Graph) -> LiveAvatar:
        """The avatar for this hop; a pending switch takes effect here (idle frame too)."""
        with self._lock:
            pending, self._pending_avatar = self._pending_avatar, None
            if pending is not None:
                self._avatar = pending
            avatar = self._avatar
        assert avatar is not None
        if pending is not None:
            self._set_idle(renderer, avatar)
            self._emit("avatar", f"avatar {avatar.name}")
        return avatar

    def _set_idle(self, renderer: _Graph, avatar: LiveAvatar) -> None:
        assert self._pacer is not None
        idle = to_uint8(render(renderer, avatar, avatar.source_motion[None]))[0]
        self._pacer.set_idle(idle)

    # -- audio-driven worker -----------------------------------------------------------------

    def _audio_worker(self) -> None:
        cfg = self.config
        assert self._pacer is not None
        renderer = self._graph("renderer")
        encode = encoder_from_session(self._graph("audio_encoder"))
        noise: NoiseFn = (
            fixed_noise(cfg.seed) if cfg.seed is not None else random_noise(np.random.default_rng())
        )
        generator = LiveGenerator(
            velocity=velocity_from_session(self._graph("velocity")),
            conditioner=conditioner_from_session(self._graph("conditioner")),
            noise=noise,
        )
        avatar = self._take_avatar(renderer)
        self._set_idle(renderer, avatar)
        precomputed: Array | None = None
        source = self.source
        if isinstance(source, FileInput):
            playback = FilePlayback(source.audio, source.rate, name=source.name, clock=self._clock)
            sd: SoundDeviceLike = playback
            capture_cfg = replace(cfg.capture, finite=True, device=None)
            if cfg.quality:
                audio16k = source.audio
                if source.rate != SAMPLE_RATE:
                    import soxr

                    audio16k = soxr.resample(source.audio, source.rate, SAMPLE_RATE, "HQ")
                precomputed = utterance_features(encode, np.asarray(audio16k, np.float32))
        else:
            assert isinstance(source, MicrophoneInput)
            sd = source.sd
            capture_cfg = replace(cfg.capture, device=source.device)
        timeline = AudioTimeline(keep_seconds=max(12.0, cfg.context_s + 4 * cfg.max_backlog_s))
        retimer = MotionRetimer(source_fps=FPS, output_fps=cfg.fps)
        capture = AudioCapture(
            sd=sd,
            config=capture_cfg,
            clock=self._clock,
            on_status=self._on_capture,
            switch=self.mic,
            tap=self.virtual_mic.tap if self._vmic_open and self.virtual_mic else None,
        )
        self.gate.reset()
        self._capture = capture
        if self._stop.is_set():
            return
        capture.start()
        started = self._clock()
        next_frame = 0
        ended = False  # the finite input ended and its last frames were generated
        self._pacer.set_streaming(True)
        while not self._stop.is_set():
            # ENDED is only set after the last block arrived: a read that follows it and
            # finds nothing new means the whole file is in the timeline.
            ending = not ended and capture.state is CaptureState.ENDED
            got = self._pull_audio(capture, timeline, started, ended)
            controls = self.controls
            hop = QUALITY_HOP if cfg.quality else controls.hop
            look = 0 if cfg.quality else cfg.lookahead
            if ending and not got:
                timeline.pad_last_frame()
                final = timeline.frames
                while next_frame < final and not self._stop.is_set():
                    controls = self.controls
                    hop = QUALITY_HOP if cfg.quality else controls.hop
                    real = min(hop + look, final - next_frame)
                    emit = min(hop, real)
                    avatar = self._take_avatar(renderer)
                    self._hop(
                        next_frame,
                        emit,
                        real,
                        0,
                        timeline,
                        encode,
                        precomputed,
                        generator,
                        retimer,
                        avatar,
                        renderer,
                        controls,
                    )
                    next_frame += emit
                ended = True
                self._audio_ended.set()
                self._emit("audio_ended", "the audio file has been played")
                continue
            available = timeline.frames
            if available < next_frame + hop + look:
                self._stop.wait(0.005)
                continue
            skipped = 0
            backlog = available - (next_frame + hop + look)
            limit = round(cfg.max_backlog_s * FPS)
            oldest_usable = -(-timeline.oldest // SAMPLES_PER_FRAME)
            if (not cfg.quality and backlog > limit) or next_frame < oldest_usable:
                skipped = max(backlog, oldest_usable - next_frame)
                next_frame += skipped
                self._skipped += skipped
                self.monitor.count("skipped_frames", skipped)
            avatar = self._take_avatar(renderer)
            self._hop(
                next_frame,
                hop,
                hop + look,
                skipped,
                timeline,
                encode,
                precomputed,
                generator,
                retimer,
                avatar,
                renderer,
                controls,
            )
            next_frame += hop

    def _pull_audio(
        self, capture: AudioCapture, timeline: AudioTimeline, started: float, ended: bool
    ) -> bool:
        """Move new input into the timeline; True if there was any."""
        got = capture.read()
        if got.samples.size:
            gated = self.gate.process(got.samples)
            first = timeline.append(gated, got.end_time, new_segment=got.restarted)
            self._feed_audio(first, got.samples)
            return True
        state = capture.state
        if state in (CaptureState.RUNNING, CaptureState.STARTING):
            return False
        if state is CaptureState.ENDED and not ended:
            return False  # the last frames of the file come first
        # No input (lost, no device, the file is over): keep time moving with silence so the
        # avatar idles on and the frame clock holds.
        now = self._clock()
        end = timeline.end_time if timeline.total else started
        step = self.config.silence_fill_s
        if now - end >= step:
            n = int((now - end) * SAMPLE_RATE) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME
            first = timeline.append_silence(n, end + n / SAMPLE_RATE)
            self._feed_audio(first, np.zeros(n, np.float32))
        return False

    def _feed_audio(self, first: int, samples: Array) -> None:
        for sink in self._audio_sinks:
            try:
                sink.add_audio(first, samples)
            except Exception as exc:  # a sink never stops the engine
                self.monitor.count("audio_sink_errors")
                if self.monitor.counter("audio_sink_errors") == 1:
                    logger.exception("a sink failed to take audio")
                    self._emit("sink", f"{type(exc).__name__}: {exc}")

    def _features(
        self,
        first: int,
        real: int,
        timeline: AudioTimeline,
        encode: Callable[[Array], Array],
        precomputed: Array | None,
    ) -> Array:
        if precomputed is not None and first + real <= precomputed.shape[0]:
            return precomputed[first : first + real]
        stop = first + real
        start = max(first - round(self.config.context_s * FPS), 0)
        start = max(start, -(-timeline.oldest // SAMPLES_PER_FRAME))
        window = timeline.samples(start * SAMPLES_PER_FRAME, stop * SAMPLES_PER_FRAME)
        return window_features(encode, window, last_frames=real)

    def _hop(
        self,
        first: int,
        emit: int,
        real: int,
        skipped: int,
        timeline: AudioTimeline,
        encode: Callable[[Array], Array],
        precomputed: Array | None,
        generator: LiveGenerator,
        retimer: MotionRetimer,
        avatar: LiveAvatar,
        renderer: _Graph,
        controls: LiveControls,
    ) -> None:
        assert self._pacer is not None
        t0 = self._clock()
        features = self._features(first, real, timeline, encode, precomputed)
        t_feat = self._clock()
        raw = controls.raw_conditions(real)
        out = generator.step(
            features=features,
            raw=raw,
            emit=emit,
            ref_motion=avatar.source_motion,
            cfg_scale=controls.cfg_for(self._models.version),
            nfe=controls.nfe,
        )
        t_motion = self._clock()
        capture = np.array(
            [timeline.frame_capture_time(k) for k in range(first, first + emit)], np.float64
        )
        retimed = retimer.push(first, out.motion, capture)
        frames = self._render_frames(renderer, avatar, retimed.motion)
        t_pix = self._clock()
        self._pacer.submit(
            [
                LiveFrame(
                    index=int(j),
                    image=frames[i],
                    timing=FrameTiming(
                        capture=float(retimed.capture[i]),
                        features=t_feat,
                        motion=t_motion,
                        pixels=t_pix,
                    ),
                )
                for i, j in enumerate(retimed.indices)
            ]
        )
        self.monitor.record_compute("features", t_feat - t0)
        self.monitor.record_compute("motion", t_motion - t_feat)
        self.monitor.record_compute("render", t_pix - t_motion)
        self.monitor.record_compute("hop", t_pix - t0)
        self.monitor.record_media(emit / FPS)
        self._hops += 1
        self._update_virtual_mic()
        if self._listener.on_hop is not None:
            record = HopRecord(
                first_frame=first,
                emitted=emit,
                real_frames=real,
                skipped_before=skipped,
                features=features,
                raw=raw,
                controls=controls,
                avatar=avatar.name,
                motion=out.motion,
                capture=capture,
                started=t0,
                finished=t_pix,
            )
            try:
                self._listener.on_hop(record)
            except Exception:
                logger.exception("hop listener failed")

    def _render_frames(self, renderer: _Graph, avatar: LiveAvatar, motion: Array) -> Any:
        if motion.shape[0] == 0:
            return np.zeros((0, 1, 1, 3), np.uint8)
        step = self.config.render_batch or (motion.shape[0] if self._on_gpu() else 1)
        parts = [
            to_uint8(render(renderer, avatar, motion[i : i + step]))
            for i in range(0, motion.shape[0], step)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _on_gpu(self) -> bool:
        try:
            return self._models.providers[0] != "CPUExecutionProvider"
        except (AttributeError, IndexError):  # sessions without provider information
            return False

    def _on_capture(self, status: CaptureStatus) -> None:
        text = status.state.value
        if status.error:
            text += f": {status.error}"
        self._emit("audio", text)

    # -- video-driven worker -----------------------------------------------------------------

    def _video_worker(self) -> None:
        source = self.source
        assert isinstance(source, WebcamInput) and self._pacer is not None
        renderer = self._graph("renderer")
        encoder = self._graph("motion_encoder")
        avatar = self._take_avatar(renderer)
        self._set_idle(renderer, avatar)
        if source.cropper is not None:
            cropper = source.cropper()
        else:
            from runtime.media.face_crop import FaceTracker

            cropper = FaceTracker(output_size=self._models.source_size)
        webcam = WebcamSource(
            cv2=source.cv2,
            config=source.config,
            clock=self._clock,
            on_state=lambda s, e: self._emit("webcam", s.value + (f": {e}" if e else "")),
        )
        self._webcam = webcam
        if self._stop.is_set():
            return
        webcam.start()
        self._pacer.set_streaming(True)
        last = 0
        while not self._stop.is_set():
            grab = webcam.latest(after=last, timeout=0.1)
            if grab is None:
                self._pacer.set_streaming(webcam.state is WebcamState.RUNNING)
                continue
            last = grab.seq
            avatar = self._take_avatar(renderer)
            t0 = self._clock()
            crop = cropper.update(grab.rgb)
            image = image_to_source(np.asarray(crop, np.uint8), self._models.source_size)
            motion = encoder.run({"image": image})["motion"]
            t_motion = self._clock()
            frame = to_uint8(render(renderer, avatar, motion.reshape(1, MOTION_DIM)))[0]
            t_pix = self._clock()
            self._pacer.submit(
                [
                    LiveFrame(
                        index=grab.seq,
                        image=frame,
                        timing=FrameTiming(
                            capture=grab.capture, features=t0, motion=t_motion, pixels=t_pix
                        ),
                    )
                ]
            )
            self.monitor.record_compute("features", 0.0)
            self.monitor.record_compute("motion", t_motion - t0)
            self.monitor.record_compute("render", t_pix - t_motion)
            self.monitor.record_compute("hop", t_pix - t0)
            self.monitor.record_media(1.0 / source.config.fps)
            self._hops += 1
