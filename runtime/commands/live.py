"""`imtalker-cam live`: the live engine without the GUI (main thread; the engine runs its own).

Talk into the microphone (or feed `--audio-file` through the very same path in real time, or
drive the avatar with `--webcam N`) and the photo talks in the virtual camera. `--stats` prints
the engine's health once a second (output rate and new-picture rate side by side, latency of
the newest new picture, real-time factor, hops skipped to stay live). `--virtual-mic` also
plays the microphone, delayed to match the video, into "imtalker-cam Microphone" for the call
app (removed again on exit, Ctrl-C and SIGTERM). Ctrl-C stops; with `--audio-file` it also
stops by itself once the file has played and its last frames are out.

All checks of values and paths are in `validate_args`, the command's one validation layer,
built on `runtime.core.validate`: out-of-range or non-finite numbers, a `--record` file in a
missing folder, one that would replace an input, or an existing one without `--overwrite` are
refused before the engine starts. SIGTERM and SIGHUP stop a session like Ctrl-C (the
recording is closed and kept) and exit 128 + the signal number.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

from runtime.commands.app_folders import check_app_folders
from runtime.commands.arg_checks import check_files, check_pose, check_sampler
from runtime.commands.boundary import Terminated
from runtime.commands.device_args import add_device_arguments, session_options
from runtime.core import validate as v
from runtime.core.timing import Clock, wait_on
from runtime.engine.live import (
    DEFAULT_MIN_NFE,
    EngineConfig,
    EngineEvent,
    EngineListener,
    FileInput,
    Gaze,
    HeadPose,
    LiveControls,
    LiveEngine,
    MicrophoneInput,
    RemoteCompute,
    Source,
    WebcamInput,
)
from runtime.media.audio_capture import CaptureConfig
from runtime.media.audio_gate import DEFAULT_GATE_DBFS, GateConfig
from runtime.media.virtual_mic import VirtualMic, VirtualMicConfig
from runtime.media.virtual_mic_device import default_device
from runtime.media.webcam import WebcamConfig
from runtime.sinks import Sink
from runtime.sinks.recorder import RecorderConfig, RecorderSink
from runtime.sinks.virtual_camera import VirtualCameraConfig, VirtualCameraSink

logger = logging.getLogger(__name__)

REMOTE_CROP = 512
EXIT_INPUT = 1
EXIT_ENGINE = 3
EXIT_INTERRUPTED = 130
FLUSH_S = 1.5  # after a file has played: time for its last frames to leave the pacer
GATE = dataclasses.replace(v.GATE_THRESHOLD, name="gate", help="or off")
RECORDER_FINISH_S = 60.0  # after stop: time for the recorder to write what it was given
_DEFAULT_FLOOR = object()  # --allow-fewer-steps without N (not a str: argparse converts those)


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "live",
        help="run the live avatar headless: microphone (or file, or webcam) -> virtual camera",
        description=(
            "Make a portrait talk live: what the microphone hears is lip-synced in the virtual "
            "camera a fraction of a second later. Runs until Ctrl-C."
        ),
    )
    p.add_argument("--avatar", type=Path, required=True, metavar="PHOTO")
    p.add_argument("--no-crop", action="store_true", help="use the whole photo, no face crop")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--audio-file", type=Path, metavar="FILE", help="play a recording through the live path"
    )
    src.add_argument("--webcam", type=int, metavar="N", help="drive the avatar with webcam N")
    p.add_argument("--device", help="audio input device (index or name; default: the system's)")
    p.add_argument("--stats", action="store_true", help="print health once a second")
    p.add_argument("--stats-json", action="store_true", help="the same, as JSON lines")
    p.add_argument(
        "--duration", type=float, metavar="S", help=f"stop after S seconds, {v.DURATION.describe()}"
    )
    p.add_argument("--fps", type=int, choices=v.FPS_CHOICES, default=25, help="output frame rate")
    p.add_argument(
        "--hop",
        type=_hop,
        default=None,
        metavar="N|auto",
        help=f"frames generated per step (latency), {v.HOP.describe()}; default auto: the "
        "smallest hop this machine keeps real time",
    )
    p.add_argument(
        "--lookahead",
        type=int,
        default=2,
        help=f"frames of audio lookahead, {v.LOOKAHEAD.describe()}",
    )
    p.add_argument("--quality", action="store_true", help="hop 50, as offline (high latency)")
    p.add_argument(
        "--cfg",
        type=float,
        default=None,
        help=f"expressiveness (audio guidance), {v.CFG.describe()}; default: the model's own, "
        "2.0 for IMTalker v2, 3.0 for v1",
    )
    p.add_argument(
        "--nfe", type=int, default=10, help=f"Euler time-grid points, {v.NFE.describe()}"
    )
    p.add_argument(
        "--allow-fewer-steps",
        type=int,
        nargs="?",
        const=_DEFAULT_FLOOR,
        default=None,
        metavar="N",
        help="when no hop keeps the machine real time at --nfe, use fewer time-grid points, "
        f"down to N ({v.NFE.lo}..--nfe; default {DEFAULT_MIN_NFE}), before falling back to "
        "a slideshow; fewer steps change the motion, so only when asked",
    )
    p.add_argument(
        "--seed", type=int, default=25, help=f"noise seed, {v.SEED.describe()} (-1: fresh noise)"
    )
    pose = p.add_argument_group("head pose and gaze (omit for natural motion)")
    pose.add_argument("--yaw", type=float, help=v.YAW.describe())
    pose.add_argument("--pitch", type=float, help=v.PITCH.describe())
    pose.add_argument("--roll", type=float, help=v.ROLL.describe())
    pose.add_argument("--gaze-x", type=float, help=v.GAZE_X.describe())
    pose.add_argument("--gaze-y", type=float, help=v.GAZE_Y.describe())
    out = p.add_argument_group("outputs")
    out.add_argument("--no-vcam", action="store_true", help="no virtual camera")
    out.add_argument("--vcam-size", default="1280x720", metavar="WxH", help="camera frame size")
    out.add_argument("--mirror", action="store_true", help="mirror the camera image")
    out.add_argument("--vcam-backend", help="pyvirtualcam backend (default: any)")
    out.add_argument("--vcam-device", help="virtual camera device")
    out.add_argument("--record", type=Path, metavar="OUT.mp4", help="also record to an MP4")
    out.add_argument("--overwrite", action="store_true", help="replace an existing --record file")
    out.add_argument(
        "--virtual-mic",
        action="store_true",
        help='play the microphone, delayed to match the video, into "imtalker-cam Microphone"',
    )
    out.add_argument(
        "--mic-offset",
        type=float,
        default=0.0,
        metavar="MS",
        help="add MS milliseconds to the virtual microphone's delay (negative: earlier)",
    )
    p.add_argument(
        "--gate",
        default=f"{DEFAULT_GATE_DBFS:g}",
        metavar="DBFS",
        help="noise gate: quieter audio reaches the model as silence "
        f"(default {DEFAULT_GATE_DBFS:g}; 'off' to disable)",
    )
    remote = p.add_argument_group("remote compute")
    remote.add_argument(
        "--remote",
        metavar="URL",
        help="render on an `imtalker-cam serve` server (ws://HOST:PORT, or wss:// behind a "
        "TLS proxy); capture, pacing, camera, recording stay here",
    )
    remote.add_argument("--token", help="the server's token (default: IMTALKER_TOKEN)")
    remote.add_argument(
        "--frame-format",
        choices=("auto", "jpeg", "h264", "raw"),
        default="auto",
        help="how frames come back: auto (starts with JPEG on this machine or a private "
        "network, H.264 elsewhere, then switches by the measured bandwidth), jpeg, h264 (a "
        "thirtieth of the bytes), raw (lossless, loopback); an explicit format is kept",
    )
    models = p.add_argument_group("model")
    models.add_argument("--graphs", type=Path, metavar="DIR", help="compiled graphs in DIR")
    models.add_argument("--weights", type=Path, metavar="DIR", help="checkpoints folder")
    models.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: auto)")
    add_device_arguments(models)
    p.set_defaults(func=run)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(n) for n in text.lower().split("x"))
    except ValueError:
        raise v.ValidationError(
            f"--vcam-size must look like 1280x720, not {text!r}", subject="--vcam-size"
        ) from None
    return v.check_frame_size(w, h, label="--vcam-size")


def _hop(text: str) -> int | None:
    """`auto` (None) or a number; the range is checked in `validate_args`."""
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto or a whole number, not {text!r}") from None


def validate_args(args: argparse.Namespace) -> None:
    """Every value and path of `live`, checked before anything starts (ValidationError)."""
    check_sampler(args)
    check_fewer_steps(args)
    if args.hop is not None:
        v.HOP.check(args.hop, label="--hop")
    v.LOOKAHEAD.check(args.lookahead, label="--lookahead")
    v.THREADS.check(args.threads, label="--threads")
    v.check_choice(args.fps, v.FPS_CHOICES, label="--fps")
    if args.duration is not None:
        v.DURATION.check(args.duration, label="--duration")
    if args.webcam is not None:
        v.WEBCAM_INDEX.check(args.webcam, label="--webcam")
    check_pose(args)
    if not args.no_vcam:
        _size(args.vcam_size)
    inputs: list[tuple[str, Path | None]] = [
        ("--avatar", args.avatar),
        ("--audio-file", args.audio_file),
    ]
    check_files(args, inputs, output=("--record", args.record))
    gate_config(args.gate)
    v.MIC_OFFSET.check(args.mic_offset, label="--mic-offset")
    if args.mic_offset and not args.virtual_mic:
        raise v.ValidationError("--mic-offset needs --virtual-mic", subject="--mic-offset")
    if args.virtual_mic and args.webcam is not None:
        raise v.ValidationError(
            "--virtual-mic needs a microphone or --audio-file source, not --webcam",
            subject="--virtual-mic",
        )
    if args.graphs is None and args.remote is None:
        check_app_folders()


def check_fewer_steps(args: argparse.Namespace) -> None:
    """--allow-fewer-steps [N]: a minimum in 2..--nfe, and not with --quality (hop 50 as
    offline keeps the user's steps)."""
    floor = args.allow_fewer_steps
    if floor is None:
        return
    label = "--allow-fewer-steps"
    if args.quality:
        raise v.ValidationError(
            f"{label} does nothing with --quality (it keeps --nfe, as offline)", subject=label
        )
    if floor is _DEFAULT_FLOOR:
        return
    v.NFE.check(floor, label=label)
    if floor > args.nfe:
        raise v.ValidationError(
            f"{label} {floor} is more than --nfe {args.nfe}: the fewest steps to use must be at "
            "most the steps asked for",
            subject=label,
        )


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


def gate_config(text: str) -> GateConfig:
    if text.strip().lower() in ("off", "none"):
        return GateConfig(threshold_dbfs=None)
    try:
        value = float(text)
    except ValueError:
        raise v.ValidationError(
            f"--gate takes a level in dBFS (e.g. -45) or off, not {text!r}", subject="--gate"
        ) from None
    return GateConfig(threshold_dbfs=GATE.check(value, label="--gate"))


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
        config=VirtualMicConfig(offset_ms=args.mic_offset),
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
        min_nfe=DEFAULT_MIN_NFE if floor is _DEFAULT_FLOOR else floor,
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


def _sinks(args: argparse.Namespace) -> list[Sink]:
    sinks: list[Sink] = []
    if not args.no_vcam:
        w, h = _size(args.vcam_size)
        sinks.append(
            VirtualCameraSink(
                VirtualCameraConfig(
                    width=w,
                    height=h,
                    mirror=args.mirror,
                    backend=args.vcam_backend,
                    device=args.vcam_device,
                )
            )
        )
    if args.record is not None:
        sinks.append(RecorderSink(RecorderConfig(path=args.record)))
    return sinks


def _graphs(args: argparse.Namespace) -> Path:
    if args.graphs is not None:
        return Path(args.graphs)
    from runtime.model.weights import resolve_graphs

    return resolve_graphs(args.weights)


def run(args: argparse.Namespace, *, clock: Clock = time.perf_counter) -> int:
    from runtime.engine.live_avatar import encode_avatar
    from runtime.engine.live_remote import remote_avatar
    from runtime.media.avatar_image import AvatarImageError
    from runtime.media.face_crop import prepare_avatar
    from runtime.model.sessions import open_model_set
    from runtime.model.store_errors import ModelStoreError

    failed = threading.Event()

    def on_event(event: EngineEvent) -> None:
        if event.kind == "error":
            logger.error("the live engine failed: %s", event.message)
            failed.set()
        elif event.kind == "virtual_mic" and "unavailable" in event.message:
            logger.error("%s", event.message)
        elif event.kind == "hop" and "not real time" in event.message:
            logger.warning(
                "%s. For smooth video use a GPU, or render offline: imtalker-cam render",
                event.message,
            )
            if args.record is not None:
                logger.warning(
                    "the recording will be a slideshow; for a smooth file render it offline: "
                    "imtalker-cam render --audio FILE"
                )
        elif event.kind in (
            "audio",
            "webcam",
            "avatar",
            "audio_ended",
            "virtual_mic",
            "hop",
            "remote",
        ):
            logger.info("%s: %s", event.kind, event.message)
        # Sinks report their own failures (runtime.sinks logs them).

    try:
        validate_args(args)
        controls = controls_from_args(args)
        gate = gate_config(args.gate)
        vmic = _virtual_mic(args)
        prepared = prepare_avatar(args.avatar, crop=not args.no_crop)
        source = _source(args)
        sinks = _sinks(args)
        compute = _remote(args)
        models = None
        if compute is not None:
            # The server encodes the crop at its model's source size (512 or less).
            avatar = remote_avatar(prepared.image_at(REMOTE_CROP), args.avatar.name)
            logger.info("rendering on %s", compute.config.url)
        else:
            models = open_model_set(_graphs(args), options=session_options(args))
            logger.info("running on %s", ", ".join(models.providers))
            avatar = encode_avatar(
                models["avatar_encoder"],
                prepared.image_at(models.source_size),
                size=models.source_size,
                name=args.avatar.name,
            )
        config = EngineConfig(
            # Headless, nothing else uses PortAudio: restart it on retries so a microphone
            # plugged back in is found.
            capture=CaptureConfig(refresh_devices=True),
            gate=gate,
            fps=args.fps,
            lookahead=args.lookahead,
            quality=args.quality,
            seed=None if args.seed < 0 else args.seed,
        )
        engine = LiveEngine(
            models=models,
            source=source,
            config=config,
            sinks=sinks,
            listener=EngineListener(on_event=on_event),
            virtual_mic=vmic,
            clock=clock,
            compute=compute,
        )
    except (AvatarImageError, ModelStoreError, ValueError, OSError) as exc:
        logger.error("%s", exc)
        return EXIT_INPUT
    code = 0
    try:
        # Inside the try: a signal while starting still stops what started (the virtual
        # microphone's sink and source among it).
        engine.start(avatar, controls)
        code = _supervise(engine, args, failed, clock)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except Terminated as exc:
        logger.error("%s", exc)
        code = exc.exit_code
    finally:
        final = engine.stats()
        if not engine.stop():
            logger.warning("a live-engine thread did not stop within a second")
        for sink in sinks:
            if isinstance(sink, RecorderSink) and not sink.wait_finished(RECORDER_FINISH_S):
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


def _supervise(
    engine: LiveEngine, args: argparse.Namespace, failed: threading.Event, clock: Clock
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
