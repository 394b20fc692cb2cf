"""The live engine for the GUI, built on `runtime/`: sessions start and stop on the bridge's
worker; callbacks arrive on runtime threads.

The app's settings are translated into the runtime's `SessionConfig` and `OutputsConfig`; a
running session is the runtime's typed `LiveSession` (the preview, virtual camera and
recordings are `runtime.sinks.outputs`). Hardware is passed in: the devices
(`runtime_services.devices`), the pyvirtualcam backend name and the virtual microphone's device
maker (fakes in tests). Nothing here touches Qt.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt

from desktop_app.images import RGB
from desktop_app.runtime_services.checked_file import CheckedFile
from desktop_app.runtime_services.devices import (
    RuntimeDevices,
    audio_level,
    webcam_index,
)
from desktop_app.runtime_services.expectation import expectation_text, from_bench, short_provider
from desktop_app.runtime_services.outputs import camera_config
from desktop_app.services import (
    AudioLevel,
    LiveCallbacks,
    LiveConfig,
    LiveStats,
    ModelLoadFailed,
    Models,
    SourceHealth,
    SourceState,
    SourceUnavailable,
    UserError,
    VirtualCameraInfo,
    VirtualMicInfo,
)
from desktop_app.services import LiveSession as AppLiveSession
from desktop_app.settings import CallAudio, Output, Pose, Quality, SourceKind
from runtime.core import paths
from runtime.engine.backend_options import session_choice, session_options
from runtime.engine.bench import result_of
from runtime.engine.live.engine import LiveEngine
from runtime.engine.live.remote import RemoteCompute
from runtime.engine.live.session import (
    AvatarSizeError,
    LiveSession,
    LocalCompute,
    SessionConfig,
    start_session,
)
from runtime.engine.live.types import (
    DEFAULT_MIN_NFE,
    EngineConfig,
    EngineEvent,
    EngineListener,
    EventKind,
    FileInput,
    Gaze,
    HeadPose,
    HopRecord,
    LiveControls,
    MicrophoneInput,
    Source,
    WebcamInput,
)
from runtime.media.audio_capture import CaptureStatus
from runtime.media.audio_file import load_audio
from runtime.media.audio_gate import GateConfig
from runtime.media.level_meter import LevelMeter, MeteredSoundDevice
from runtime.media.virtual_mic import VirtualMic, VirtualMicConfig, VirtualMicStatus
from runtime.media.virtual_mic_device import default_device
from runtime.media.webcam import WebcamConfig
from runtime.model.execution.backends import BackendChoice, openvino_installed
from runtime.model.execution.model_set import open_model_set
from runtime.model.execution.sessions import OPENVINO, ModelSet, SessionOptions
from runtime.remote.client import RemoteConfig
from runtime.remote.link_status import LinkStatus
from runtime.sinks import SinkUnavailable, recording_journal
from runtime.sinks.composed import RecordingFailed
from runtime.sinks.outputs import OutputsConfig
from runtime.sinks.virtual_camera import VirtualCameraConfig, VirtualCameraSink

logger = logging.getLogger(__name__)


MeasuredOn = tuple[Path, str]
"""The graphs a live session ran and the backend label they ran on (`session_choice`)."""

GAZE_RANGE = 0.7
"""The model's gaze condition spans about -0.7..0.7; the sliders' -1..1 map onto it."""


def controls_for(pose: Pose, quality: Quality) -> LiveControls:
    """The engine's LiveControls for the GUI's pose and quality settings."""
    natural = pose.natural
    return LiveControls(
        pose=None if natural else HeadPose(yaw=pose.yaw, pitch=pose.pitch, roll=pose.roll),
        gaze=None if natural else Gaze(x=pose.gaze_x * GAZE_RANGE, y=pose.gaze_y * GAZE_RANGE),
        cfg_scale=quality.cfg_scale,
        nfe=quality.steps + 1,  # nfe time-grid points = steps + 1
        hop=quality.hop or None,  # 0: Auto
        min_nfe=DEFAULT_MIN_NFE if quality.fewer_steps else None,
    )


def lowered_steps(nfe: int, chosen_nfe: int) -> tuple[int, int] | None:
    """(in use, chosen) Euler steps when the engine uses fewer time-grid points than chosen."""
    if 0 < nfe < chosen_nfe:
        return nfe - 1, chosen_nfe - 1
    return None


_CAPTURE_STATES: dict[str, SourceState] = {
    "starting": "starting",
    "running": "running",
    "lost": "retrying",
    "no_device": "retrying",
    "no_camera": "retrying",
    "stopped": "stopped",
    "ended": "stopped",
}


class SourceWatch:
    """The live source's health from the engine's "audio"/"webcam" events and capture status
    (engine threads write, any thread reads; one lock)."""

    def __init__(self, kind: SourceKind) -> None:
        self.kind = kind
        self._lock = threading.Lock()
        self._health = SourceHealth(kind=kind, state="starting")

    def event(self, message: str) -> None:
        """An engine event's message: "<state>" or "<state>: <error>"."""
        state_name, _, detail = message.partition(":")
        state = _CAPTURE_STATES.get(state_name.strip(), "retrying")
        with self._lock:
            retries = self._health.retries
            if state == "retrying":
                retries += 1
            elif state == "running":
                retries = 0
            self._health = SourceHealth(self.kind, state, detail.strip() or None, retries)

    def capture(self, status: CaptureStatus) -> None:
        """The microphone capture's status (its restarts count the attempts)."""
        state = _CAPTURE_STATES.get(status.state.value, "retrying")
        with self._lock:
            self._health = SourceHealth(
                self.kind, state, status.error, status.restarts if state == "retrying" else 0
            )

    def health(self) -> SourceHealth:
        with self._lock:
            return self._health


class RuntimeSession:
    """One live session for the window: the runtime's `LiveSession` and the app's settings
    translated for it (the bridge's worker calls in; stats from the GUI's timer)."""

    def __init__(
        self,
        *,
        session: LiveSession,
        vcam_backend: str | None,
        pose: Pose,
        quality: Quality,
        watch: SourceWatch,
        meter: LevelMeter | None,
        call_audio: CallAudio | None = None,
        on_measured: Callable[[bool, float], None] | None = None,
    ) -> None:
        self._session = session
        self._vcam_backend = vcam_backend
        self._on_measured = on_measured
        self._watch = watch
        self._meter = meter
        self._lock = threading.Lock()
        self._pose = pose
        self._quality = quality
        models = session.models
        self.provider = "server" if models is None else short_provider(models.providers[0])
        camera = session.outputs.camera()
        self.virtual_camera = VirtualCameraInfo(
            camera.open, camera.backend, camera.device, camera.reason
        )
        if call_audio is not None:
            self.set_call_audio(call_audio)

    @property
    def engine(self) -> LiveEngine:
        """The runtime's engine (tests look at its gate and switch)."""
        return self._session.engine

    def set_avatar(self, avatar: RGB, avatar_id: str) -> None:
        try:
            self._session.set_avatar(avatar, avatar_id)
        except AvatarSizeError as exc:
            raise UserError(str(exc)) from None

    def set_pose(self, pose: Pose) -> None:
        with self._lock:
            self._pose = pose
            controls = controls_for(self._pose, self._quality)
        self._session.set_controls(controls)

    def set_quality(self, quality: Quality) -> None:
        with self._lock:
            self._quality = quality
            controls = controls_for(self._pose, self._quality)
        self._session.set_controls(controls)

    def set_output(self, output: Output) -> None:
        self._session.outputs.set_look(camera_config(output, self._vcam_backend))

    def set_call_audio(self, call_audio: CallAudio) -> None:
        session = self._session
        session.set_gate(call_audio.gate_dbfs if call_audio.gate else None)
        session.set_push_to_talk(call_audio.push_to_talk)
        session.set_mic_offset_ms(call_audio.mic_offset_ms)
        session.set_max_mic_delay_ms(call_audio.max_mic_delay_ms)

    def set_muted(self, muted: bool) -> None:
        self._session.set_muted(muted)

    def set_talking(self, held: bool) -> None:
        self._session.set_talking(held)

    def _virtual_mic_info(self, status: VirtualMicStatus | None) -> VirtualMicInfo | None:
        if status is None:
            return None
        delay = status.delay_ms if math.isfinite(status.delay_ms) else status.target_ms
        return VirtualMicInfo(
            open=status.open,
            device=status.device,
            delay_ms=delay if status.open and math.isfinite(delay) else None,
            reason=status.error,
            out_of_sync=status.out_of_sync,
        )

    def stats(self) -> LiveStats:
        stats = self._session.stats()
        lat = stats.latency
        rtf = lat.real_time_factor
        measured = math.isfinite(rtf) and lat.frames_unique > 0
        realtime = rtf <= 1.0 if measured else self.provider != "CPU"
        interval = stats.picture_interval_s
        expectation = None
        known = stats.phase == "not_real_time"  # at once, from a bench of these graphs
        if math.isfinite(interval) and (lat.frames_unique > 0 or known):
            realtime = stats.real_time  # the engine's own measure of its hop's compute
            if self._on_measured is not None and lat.frames_unique > 0:
                self._on_measured(realtime, interval)
            if not realtime:
                expectation = expectation_text(interval, self.provider)
        if stats.audio is not None:
            self._watch.capture(stats.audio)
        newest = lat.newest_latency_ms
        network, server = lat.compute["network"].mean_ms, lat.compute["server"].mean_ms
        return LiveStats(
            fps=lat.output_fps if math.isfinite(lat.output_fps) else 0.0,
            latency_ms=newest if math.isfinite(newest) else None,
            provider=self.provider,
            realtime=realtime,
            audio_level=self._session.outputs.audio_level if stats.audio is not None else None,
            source=self._watch.health(),
            virtual_mic=self._virtual_mic_info(stats.virtual_mic),
            unique_fps=lat.unique_fps if lat.frames_unique > 0 else None,
            expectation=expectation,
            steps=lowered_steps(stats.nfe, stats.controls.nfe),
            remote=stats.remote,
            remote_problem=_remote_problem(stats.remote_link),
            network_ms=network if math.isfinite(network) else None,
            server_ms=server if math.isfinite(server) else None,
            frame_format=stats.frame_format,
            link_mbps=stats.link_mbps if math.isfinite(stats.link_mbps) else None,
        )

    def audio_level(self) -> AudioLevel | None:
        if self._meter is None:
            return None
        reading = self._meter.read()
        return audio_level(reading) if reading.blocks else None

    def start_recording(self, path: Path) -> None:
        try:
            self._session.outputs.begin_recording(path)
        except RecordingFailed as exc:
            raise UserError(str(exc)) from None

    def stop_recording(self) -> Path | None:
        try:
            return self._session.outputs.end_recording()
        except RecordingFailed as exc:
            raise UserError(str(exc)) from None

    def stop(self) -> None:
        try:
            self.stop_recording()
        finally:
            if not self._session.stop():
                logger.warning("a live-engine thread did not end in time")


class RuntimeEngine:
    """Starts live sessions over the runtime engine; probes the virtual camera."""

    def __init__(
        self,
        *,
        models: Models,
        devices: RuntimeDevices,
        vcam_backend: str | None = None,
        on_hop: Callable[[HopRecord], None] | None = None,
        make_virtual_mic: Callable[[CallAudio], VirtualMic] | None = None,
    ) -> None:
        self.models = models
        self.devices = devices
        self.vcam_backend = vcam_backend
        self.make_virtual_mic = make_virtual_mic or self._virtual_mic
        self.on_hop = on_hop  # diagnostics and tests: every hop the engine makes
        self._model_set: ModelSet | None = None
        self._model_dir: Path | None = None
        self._opened_for: tuple[str, str] = ("auto", "fp32")  # the set's backend and precision
        self._options = SessionOptions()  # what the open set was opened with
        self._generation = 0  # bumped by reopen_models
        self._set_generation = 0  # the generation the open set was opened in
        self._opened_on = ""  # the open set's backend/device/precision, as settings resolve it
        self._measured: tuple[MeasuredOn, bool, float] | None = None  # on, real time?, interval
        self._audio_file = CheckedFile(self._decode_file)  # check's decode -> start's

    def recover_recordings(self) -> list[str]:
        """What a killed session recorded, saved now (the next recording would do it too)."""
        return [found.describe() for found in recording_journal.recover()]

    def expectation(self, quality: Quality) -> str | None:
        """When this model is not real time here, what Go Live will give: as the last session
        on it measured, or else as the last timing run of its graphs did (the set-up's); each
        only when it ran on what `quality`'s Backend and precision resolve to now."""
        state = self.models.model_state()
        if not state.ready or state.graphs_dir is None:
            return None
        graphs = state.graphs_dir
        m = self._measured
        if (m is None or m[0][0] != graphs) and result_of(paths.cache_dir(), graphs) is None:
            return None  # nothing measured on these graphs: nothing to resolve or probe
        on = self._next_on(quality, graphs)
        if m is not None and m[0] == (graphs, on):
            if m[1]:
                return None
            provider = "this machine"
            if self._model_set is not None:
                provider = short_provider(self._model_set.providers[0])
            return expectation_text(m[2], provider)
        controls = controls_for(Pose(), quality)
        return from_bench(paths.cache_dir(), graphs, controls, choice=BackendChoice.from_label(on))

    def _next_on(self, quality: Quality, graphs: Path) -> str:
        """What the next local session will run on (`session_choice`'s label): the open set's
        when Go Live would keep it, else as `quality` resolves now (a provider probe, once)."""
        keeps = (
            self._model_set is not None
            and self._model_dir == graphs
            and self._opened_for == (quality.backend, quality.precision)
            and self._set_generation == self._generation
        )
        if keeps:
            return self._opened_on
        return session_choice(
            backend=quality.backend, precision=quality.precision, graphs=graphs
        ).label

    def reopen_models(self) -> None:
        """Open the model set afresh at the next Go Live (any thread: the CUDA runtime was
        just loaded). A running session keeps the set it has; a set being opened right now
        counts as old."""
        self._generation += 1

    def _remember(self, on: MeasuredOn | None, realtime: bool, interval: float) -> None:
        """A session's measurement, kept for the model and backend it ran on (`on`; None: a
        render server's, which says nothing about this computer)."""
        if on is not None:
            self._measured = (on, realtime, interval)

    def _virtual_mic(self, call: CallAudio) -> VirtualMic:
        sd = self.devices.sd
        return VirtualMic(
            sd=sd,
            device=default_device(sd),
            config=VirtualMicConfig(
                offset_ms=call.mic_offset_ms, max_delay_ms=call.max_mic_delay_ms
            ),
        )

    def virtual_camera_status(self) -> VirtualCameraInfo:
        """Open the virtual camera for a moment: the only reliable way to know it works."""
        config = VirtualCameraConfig(width=640, height=360, backend=self.vcam_backend)
        sink = VirtualCameraSink(config)
        try:
            sink.open(fps=25)
        except SinkUnavailable as exc:
            return VirtualCameraInfo(False, None, None, str(exc))
        device, backend = sink.device, sink.backend
        sink.close()
        return VirtualCameraInfo(True, backend, device, None)

    def backend_unavailable(self, backend: str) -> str | None:
        if backend == OPENVINO and not openvino_installed():
            return (
                "OpenVINO is not installed here (pip install openvino; not made for every "
                "platform)."
            )
        return None

    def _local_compute(self, quality: Quality) -> LocalCompute:
        """This computer, with the graphs kept open between sessions."""
        models, options = self._open_models(quality)
        assert self._model_dir is not None
        return LocalCompute(
            graphs=self._model_dir, options=options, models=models, bench_dir=paths.cache_dir()
        )

    def _open_models(self, quality: Quality) -> tuple[ModelSet, SessionOptions]:
        """The open model set for the chosen backend and precision (reopened when either
        changed, or the graphs, or after `reopen_models`) and the options it was opened with."""
        state = self.models.model_state()
        if not state.ready or state.graphs_dir is None:
            raise UserError("the model is not set up yet (Help > Model set-up)")
        generation = self._generation
        wanted = (quality.backend, quality.precision)
        if (
            self._model_set is None
            or self._model_dir != state.graphs_dir
            or self._opened_for != wanted
            or self._set_generation != generation
        ):
            try:
                options = session_options(
                    backend=quality.backend, precision=quality.precision, graphs=state.graphs_dir
                )
                opened_on = session_choice(
                    backend=quality.backend, precision=quality.precision, graphs=state.graphs_dir
                ).label
                self._model_set = open_model_set(state.graphs_dir, options=options)
            except Exception as exc:
                logger.exception("cannot load the model from %s", state.graphs_dir)
                raise ModelLoadFailed(
                    f"The model could not be loaded ({type(exc).__name__}: {exc}). Convert it "
                    "again in Help › Model set-up, or choose another Backend in Controls."
                ) from None
            self._model_dir = state.graphs_dir
            self._options = options
            self._opened_on = opened_on
            self._opened_for = wanted
            self._set_generation = generation
        assert self._model_set is not None
        return self._model_set, self._options

    def _source(
        self,
        config: LiveConfig,
        meter: LevelMeter | None,
        recording: npt.NDArray[np.float32] | None = None,
    ) -> Source:
        if recording is not None:
            name = config.audio_file.name if config.audio_file else "audio file"
            return FileInput(audio=recording, name=name)
        if config.source == "webcam":
            index = webcam_index(config.webcam)
            return WebcamInput(cv2=self.devices.cv2, config=WebcamConfig(index=index))
        assert meter is not None
        return MicrophoneInput(
            sd=MeteredSoundDevice(self.devices.sd, meter),
            device=self.devices.resolve_microphone(config.microphone),
        )

    def outputs_config(self, config: LiveConfig, callbacks: LiveCallbacks) -> OutputsConfig:
        """The app's outputs: the preview, the virtual camera (always tried: one that appeared
        since the last probe is used, one that is gone says why) and the Record button's
        recording of the composed picture."""
        return OutputsConfig(
            look=camera_config(config.output, self.vcam_backend),
            virtual_camera=True,
            preview=callbacks.on_frame,
            recording_tap=True,
        )

    @staticmethod
    def _chosen_file(path: Path | None) -> Path:
        if path is None:
            raise SourceUnavailable(
                "Choose an audio file to play as the voice (Source › Audio file).", kind="file"
            )
        return path

    @staticmethod
    def _decode_file(path: Path) -> npt.NDArray[np.float32]:
        """The recording as the engine takes it; SourceUnavailable says why it cannot be."""
        try:
            return load_audio(path)
        except Exception as exc:  # unreadable, not audio, silent: all said to the user alike
            raise SourceUnavailable(
                f"The audio file “{path.name}” cannot be played: {exc}", kind="file"
            ) from None

    def check_source(self, config: LiveConfig) -> None:
        if config.source == "file":
            # The decoded samples wait for the start that follows (one decode per Go Live).
            self._audio_file.check(self._chosen_file(config.audio_file))
            return
        device = config.webcam if config.source == "webcam" else config.microphone
        self.devices.check_source(config.source, device)

    def start(self, config: LiveConfig, callbacks: LiveCallbacks) -> AppLiveSession:
        recording = None  # refused before anything starts, like a source that cannot open
        if config.source == "file":
            recording = self._audio_file.load(self._chosen_file(config.audio_file))
        else:
            self.check_source(config)
        compute: LocalCompute | RemoteCompute
        remote = _remote_config(config)
        measured_on: MeasuredOn | None = None
        if remote is None:
            compute = self._local_compute(config.quality)
            measured_on = (compute.graphs, self._opened_on)
        else:
            compute = RemoteCompute(config=remote)
        watch = SourceWatch(config.source)
        meter = LevelMeter() if config.source == "microphone" else None

        def on_event(event: EngineEvent) -> None:
            if event.kind is EventKind.ERROR:
                callbacks.on_error(f"The live engine stopped: {event.message}")
            elif event.kind is EventKind.REMOTE:
                callbacks.on_source()  # the reconnecting badge: ask stats() now
            elif event.kind in (EventKind.AUDIO, EventKind.WEBCAM):
                watch.event(event.message)
                callbacks.on_source()

        call = config.call_audio
        vmic = None
        if call.virtual_mic and config.source == "microphone":
            vmic = self.make_virtual_mic(call)
        try:
            started = start_session(
                SessionConfig(
                    source=self._source(config, meter, recording),
                    compute=compute,
                    avatar=config.avatar,
                    avatar_name=config.avatar_id,
                    controls=controls_for(config.pose, config.quality),
                    engine=EngineConfig(
                        gate=GateConfig(threshold_dbfs=call.gate_dbfs if call.gate else None)
                    ),
                    outputs=self.outputs_config(config, callbacks),
                    virtual_mic=vmic,
                    listener=EngineListener(on_event=on_event, on_hop=self.on_hop),
                )
            )
        except AvatarSizeError as exc:
            # The window re-crops gallery avatars for the installed model before they get here.
            raise UserError(str(exc)) from None
        return RuntimeSession(
            session=started,
            vcam_backend=self.vcam_backend,
            pose=config.pose,
            quality=config.quality,
            watch=watch,
            meter=meter,
            call_audio=call,
            on_measured=partial(self._remember, measured_on),
        )


def _remote_config(config: LiveConfig) -> RemoteConfig | None:
    """The render server to use, or None for this computer; UserError when unusable."""
    c = config.compute
    if c.mode != "remote":
        return None
    if not c.token:
        raise UserError("The render server needs its token (Controls › Compute).")
    try:
        return RemoteConfig(url=c.url, token=c.token)
    except ValueError as exc:
        raise UserError(f"The render server address cannot be used: {exc}") from None


def _remote_problem(link: LinkStatus | None) -> str | None:
    """The render server cannot be reached now: the runtime's own sentence (attempt, reason,
    next retry), for the notice above the preview."""
    return link.message if link is not None and link.unreachable else None
