"""`imtalker-cam live`: the live engine without the GUI (main thread; the engine runs its own).

Talk into the microphone (or feed `--audio-file` through the very same path in real time, or
drive the avatar with `--webcam N`) and the photo talks in the virtual camera. `--stats` prints
the engine's health once a second (output rate and new-picture rate side by side, latency of
the newest new picture, real-time factor, hops skipped to stay live). `--virtual-mic` also
plays the microphone, delayed to match the video, into "imtalker-cam Microphone" for the call
app (removed again on exit, Ctrl-C and SIGTERM). Ctrl-C stops; with `--audio-file` it also
stops by itself once the file has played and its last frames are out.

All checks of values and paths are in `live_args.validate_args`, the command's one validation layer,
built on `runtime.core.validate`: out-of-range or non-finite numbers, a `--record` file in a
missing folder, one that would replace an input, or an existing one without `--overwrite` are
refused before the engine starts. SIGTERM and SIGHUP stop a session like Ctrl-C (the
recording is closed and kept) and exit 128 + the signal number.

With `--remote`, every failed attempt to reach the server is logged as it happens ("cannot
reach the render server at ...: connection refused (attempt 3, retrying in 2 s)"), and when no
session has begun after `--connect-timeout` seconds the command ends with one sentence (exit
4) instead of waiting for ever.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

from runtime.commands import live_args
from runtime.commands.boundary import Terminated
from runtime.commands.device_args import session_options
from runtime.core import validate as v
from runtime.core.timing import Clock, wait_on
from runtime.engine.live.engine import (
    DEFAULT_MIN_NFE,
    EngineConfig,
    EngineEvent,
    EngineListener,
    EventKind,
    FileInput,
    Gaze,
    HeadPose,
    LiveControls,
    LiveEngine,
    MicEvent,
    MicrophoneInput,
    RemoteCompute,
    Source,
    WebcamInput,
)
from runtime.media.audio_capture import CaptureConfig
from runtime.media.virtual_mic import VirtualMic, VirtualMicConfig
from runtime.media.virtual_mic_device import default_device
from runtime.media.webcam import WebcamConfig
from runtime.remote.link_status import LinkState, LinkStatus, gave_up_message
from runtime.sinks import SinkUnavailable, recording_journal
from runtime.sinks.outputs import OutputsConfig
from runtime.sinks.virtual_camera import VirtualCameraConfig

logger = logging.getLogger(__name__)

REMOTE_CROP = 512
EXIT_INPUT = 1
EXIT_ENGINE = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130
FLUSH_S = 1.5  # after a file has played: time for its last frames to leave the pacer
RECORDER_FINISH_S = 60.0  # after stop: time for the recorder to write what it was given


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "live",
        help="run the live avatar headless: microphone (or file, or webcam) -> virtual camera",
        description=(
            "Make a portrait talk live: what the microphone hears is lip-synced in the virtual "
            "camera a fraction of a second later. Runs until Ctrl-C."
        ),
    )
    live_args.add_arguments(p)
    p.set_defaults(func=run)


def _remote(args: argparse.Namespace) -> RemoteCompute | None:
    from runtime.remote.client import RemoteConfig
    from runtime.remote.token import client_token

    if args.remote is None:
        return None
    token = client_token(args.token)
    if token is None:
        raise v.ValidationError(
            "--remote needs the server's token: --token TOKEN or IMTALKER_TOKEN",
            subject="--token",
        )
    return RemoteCompute(
        config=RemoteConfig(url=args.remote, token=token, frame_format=args.frame_format)
    )


class RemoteWatch:
    """`live --remote`'s bounded wait (the engine's threads report, the main thread asks): the
    link's newest status, and whether a session has begun."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self.latest: LinkStatus | None = None
        self.connected = threading.Event()

    def on_link(self, status: LinkStatus) -> None:
        self.latest = status
        if status.state is LinkState.CONNECTED:
            self.connected.set()

    def gave_up(self, url: str, waited_s: float) -> str | None:
        """The sentence to end with when no session has begun after the wait, else None."""
        if self.connected.is_set() or waited_s < self.wait_s:
            return None
        status = self.latest or LinkStatus(state=LinkState.CONNECTING, url=url, message="")
        return gave_up_message(status, waited_s=self.wait_s, option="--connect-timeout")


def _virtual_mic(args: argparse.Namespace) -> VirtualMic | None:
    if not args.virtual_mic:
        return None
    try:
        import sounddevice
    except OSError as exc:
        raise ValueError(f"no virtual microphone is possible here: {exc}") from exc
    return VirtualMic(
        sd=sounddevice,
        device=default_device(sounddevice),
        config=VirtualMicConfig(offset_ms=args.mic_offset, max_delay_ms=args.max_mic_delay),
    )


def controls_from_args(args: argparse.Namespace) -> LiveControls:
    pose = None
    if any(v is not None for v in (args.yaw, args.pitch, args.roll)):
        pose = HeadPose(yaw=args.yaw or 0.0, pitch=args.pitch or 0.0, roll=args.roll or 0.0)
    gaze = None
    if args.gaze_x is not None or args.gaze_y is not None:
        gaze = Gaze(x=args.gaze_x or 0.0, y=args.gaze_y or 0.0)
    floor = args.allow_fewer_steps
    return LiveControls(
        pose=pose,
        gaze=gaze,
        cfg_scale=args.cfg,
        nfe=args.nfe,
        hop=args.hop,
        min_nfe=DEFAULT_MIN_NFE if floor is live_args.DEFAULT_FLOOR else floor,
    )


def _source(args: argparse.Namespace) -> Source:
    if args.webcam is not None:
        import cv2

        return WebcamInput(cv2=cv2, config=WebcamConfig(index=args.webcam))
    if args.audio_file is not None:
        from runtime.media.audio_file import load_audio

        return FileInput(audio=load_audio(args.audio_file), name=args.audio_file.name)
    try:
        import sounddevice
    except OSError as exc:  # PortAudio itself is missing
        raise ValueError(f"no audio input is possible here: {exc}") from exc
    device: int | str | None = args.device
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    try:
        info = sounddevice.query_devices(device, kind="input")
        logger.info("audio input: %s", info["name"])
    except Exception as exc:
        logger.error(
            "no audio input device (%s); the avatar will idle until one appears. Use "
            "--audio-file FILE or --webcam N instead.",
            exc,
        )
    return MicrophoneInput(sd=sounddevice, device=device)


def outputs_from_args(args: argparse.Namespace) -> OutputsConfig:
    """The virtual camera (unless --no-vcam) with its look, and the whole session's recording
    of the raw frames (--record)."""
    if args.no_vcam:
        return OutputsConfig(record=args.record)  # (the camera's flags are not even read)
    w, h = live_args.vcam_size(args.vcam_size)
    colour, blur = live_args.background(args.background)
    return OutputsConfig(
        look=VirtualCameraConfig(
            width=w,
            height=h,
            mirror=args.mirror,
            background=colour,
            blur=blur,
            backend=args.vcam_backend,
            device=args.vcam_device,
        ),
        virtual_camera=True,
        record=args.record,
    )


def _graphs(args: argparse.Namespace) -> Path:
    if args.graphs is not None:
        return Path(args.graphs)
    from runtime.model.compile.weights import resolve_graphs

    return resolve_graphs(args.weights)


def run(args: argparse.Namespace, *, clock: Clock = time.perf_counter) -> int:
    from runtime.core import paths
    from runtime.engine.live.session import LocalCompute, SessionConfig, start_session
    from runtime.media.avatar_image import AvatarImageError
    from runtime.media.face_crop import prepare_avatar
    from runtime.model.compile.graph_version import GraphVersionError, graphs_version
    from runtime.model.store.errors import ModelStoreError

    failed = threading.Event()
    warned_slideshow = threading.Event()
    watch = RemoteWatch(args.connect_timeout) if args.remote is not None else None

    def on_event(event: EngineEvent) -> None:
        plan, link = event.plan, event.link
        if link is not None and watch is not None:
            watch.on_link(link)
        if link is not None and link.unreachable:
            logger.warning("%s", event.message)
        elif event.kind is EventKind.ERROR:
            logger.error("the live engine failed: %s", event.message)
            failed.set()
        elif event.mic is MicEvent.UNAVAILABLE:
            logger.error("%s", event.message)
        elif event.mic is MicEvent.OUT_OF_SYNC:
            logger.warning("%s", event.message)
        elif plan is not None and not plan.real_time:
            logger.warning(
                "%s. For smooth video use a GPU, or render offline: imtalker-cam render",
                event.message,
            )
            if args.record is not None and not warned_slideshow.is_set():
                warned_slideshow.set()
                logger.warning(
                    "the recording will be a slideshow (the whole session, each new picture "
                    "held until the next); for a smooth file render it offline: "
                    "imtalker-cam render --audio FILE"
                )
        elif event.kind not in (EventKind.STARTED, EventKind.STOPPED, EventKind.SINK):
            logger.info("%s: %s", event.kind, event.message)
        # Sinks report their own failures (runtime.sinks logs them).

    try:
        live_args.validate_args(args)
        recording_journal.recover()  # says where what a killed session recorded was saved
        controls = controls_from_args(args)
        gate = live_args.gate_config(args.gate)
        vmic = _virtual_mic(args)
        prepared = prepare_avatar(args.avatar, crop=not args.no_crop)
        source = _source(args)
        outputs = outputs_from_args(args)
        remote = _remote(args)
        compute: LocalCompute | RemoteCompute
        if remote is not None:
            # The server encodes the crop at its model's source size (512 or less).
            image = prepared.image_at(REMOTE_CROP)
            compute = remote
            logger.info("rendering on %s", remote.config.url)
        else:
            graphs = _graphs(args)
            compute = LocalCompute(
                graphs=graphs, options=session_options(args, graphs), bench_dir=paths.cache_dir()
            )
            image = prepared.image_at(graphs_version(graphs).source_size)
        config = SessionConfig(
            source=source,
            compute=compute,
            avatar=image,
            avatar_name=args.avatar.name,
            controls=controls,
            engine=EngineConfig(
                # Headless, nothing else uses PortAudio: restart it on retries so a microphone
                # plugged back in is found.
                capture=CaptureConfig(refresh_devices=True),
                gate=gate,
                fps=args.fps,
                lookahead=args.lookahead,
                quality=args.quality,
                seed=None if args.seed < 0 else args.seed,
            ),
            outputs=outputs,
            virtual_mic=vmic,
            listener=EngineListener(on_event=on_event),
            clock=clock,
        )
    except (
        AvatarImageError,
        ModelStoreError,
        GraphVersionError,
        SinkUnavailable,
        ValueError,
        OSError,
    ) as exc:
        logger.error("%s", exc)
        return EXIT_INPUT
    try:
        # A signal while starting still stops what started (the virtual microphone's sink and
        # source among it): start_session stops the engine before it raises.
        session = start_session(config, progress=lambda status: _say(args, status))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Terminated as exc:
        logger.error("%s", exc)
        return exc.exit_code
    except (ModelStoreError, GraphVersionError, SinkUnavailable, ValueError, OSError) as exc:
        # SinkUnavailable: another session records to the same file (refused before the
        # model loads).
        logger.error("%s", exc)
        return EXIT_INPUT
    code = 0
    try:
        code = _supervise(session.engine, args, failed, clock, watch)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Terminated as exc:
        logger.error("%s", exc)
        code = exc.exit_code
    finally:
        final = session.stats()
        if not session.stop():
            logger.warning("a live-engine thread did not stop within a second")
        if not session.outputs.wait_recorded(RECORDER_FINISH_S):
            logger.error("the recording did not finish within %.0f s", RECORDER_FINISH_S)
        lat = final.latency
        logger.info(
            "published %d frames (%d new), latency p50 %.0f ms p95 %.0f ms, late %d, "
            "repeated %d, dropped %d, skipped %d hops",
            lat.frames_published,
            lat.frames_unique,
            lat.latency_p50_ms,
            lat.latency_p95_ms,
            lat.counters.get("late", 0),
            lat.counters.get("repeated", 0),
            lat.counters.get("dropped", 0),
            final.skipped_hops,
        )
    return code


def _say(args: argparse.Namespace, status: str) -> None:
    """A stats line before the engine runs (loading, encoding): the stats say what is going on
    from the first second, not `fps 0.0 ... nan ms`."""
    if args.stats_json:
        sys.stdout.write(json.dumps({"state": "starting", "phase": "loading", "status": status}))
        sys.stdout.write("\n")
    elif args.stats:
        sys.stdout.write(f"{status}...\n")
    else:
        return
    sys.stdout.flush()


def _supervise(
    engine: LiveEngine,
    args: argparse.Namespace,
    failed: threading.Event,
    clock: Clock,
    watch: RemoteWatch | None = None,
) -> int:
    started = clock()
    next_stats = started + 1.0
    ended_at: float | None = None
    tick = threading.Event()  # never set: a sleep on `clock`
    while True:
        wait_on(tick, 0.05, clock)
        now = clock()
        if failed.is_set():
            return EXIT_ENGINE
        gave_up = None if watch is None else watch.gave_up(args.remote, now - started)
        if gave_up is not None:
            logger.error("%s", gave_up)
            return EXIT_UNREACHABLE
        if args.duration is not None and now - started >= args.duration:
            return 0
        if args.audio_file is not None and ended_at is None and engine.wait_audio_ended(0):
            ended_at = now
        if ended_at is not None and now - ended_at >= FLUSH_S:
            return 0
        if (args.stats or args.stats_json) and now >= next_stats:
            next_stats += 1.0
            stats = engine.stats()
            line = json.dumps(_finite(stats.as_dict())) if args.stats_json else stats.line()
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def _finite(value: Any) -> Any:
    """JSON has no NaN: not-yet-measured numbers become null."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, str | int | bool) or value is None:
        return value
    return str(value)
