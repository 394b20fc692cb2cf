"""`imtalker-cam live`'s options: the parser's arguments and the command's one validation layer
(main thread).

`validate_args` checks every value and path before anything starts, built on
`runtime.core.validate`: out-of-range or non-finite numbers, a `--record` file in a missing
folder, one that would replace an input, or an existing one without `--overwrite`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from runtime.commands.app_folders import check_app_folders
from runtime.commands.arg_checks import check_files, check_pose, check_sampler
from runtime.commands.device_args import add_device_arguments
from runtime.core import validate as v
from runtime.engine.live.engine import DEFAULT_MIN_NFE
from runtime.media.audio_gate import DEFAULT_GATE_DBFS, GateConfig

GATE = dataclasses.replace(v.GATE_THRESHOLD, name="gate", help="or off")
DEFAULT_REMOTE_WAIT_S = 20.0
"""`--connect-timeout`'s default: long enough for a server that is starting (its first answer
comes within seconds) and for a few attempts, short enough that a wrong address ends soon."""
DEFAULT_FLOOR = object()  # --allow-fewer-steps without N (not a str: argparse converts those)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every option of `live` (`runtime.commands.live` makes the subcommand's parser)."""
    p.add_argument(
        "--avatar",
        type=Path,
        required=True,
        metavar="PHOTO",
        help="the portrait to animate (PNG or JPEG; the face is cropped unless --no-crop)",
    )
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
    p.add_argument(
        "--fps", type=int, choices=v.FPS_CHOICES, default=25, help="output frame rate (default 25)"
    )
    p.add_argument(
        "--hop",
        type=hop_value,
        default=None,
        metavar="N|auto",
        help=f"frames generated per step (latency), {v.HOP.describe()}; default auto: the "
        "smallest hop this machine keeps real time",
    )
    p.add_argument(
        "--lookahead",
        type=int,
        default=2,
        help=f"frames of audio lookahead, {v.LOOKAHEAD.describe()} (default 2: 80 ms)",
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
        "--nfe",
        type=int,
        default=10,
        help=f"Euler time-grid points, {v.NFE.describe()} (default 10); one more than the "
        "app's Steps (Steps 9 is --nfe 10)",
    )
    p.add_argument(
        "--allow-fewer-steps",
        type=int,
        nargs="?",
        const=DEFAULT_FLOOR,
        default=None,
        metavar="N",
        help="when no hop keeps the machine real time at --nfe, use fewer time-grid points, "
        f"down to N ({v.NFE.lo}..--nfe; default {DEFAULT_MIN_NFE}), before falling back to "
        "a slideshow; fewer steps change the motion, so only when asked",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=25,
        help=f"noise seed, {v.SEED.describe()} (default 25; -1: fresh noise)",
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
    out.add_argument(
        "--background",
        default="#000000",
        metavar="COLOUR|blur",
        help="around the face on the camera: a colour (#RRGGBB, default black) or 'blur' (the "
        "avatar, blurred)",
    )
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
    out.add_argument(
        "--max-mic-delay",
        type=float,
        default=1000.0,
        metavar="MS",
        help="never delay the voice more than MS milliseconds (default 1000): past it the call "
        "hears the voice on time and the stats say the lips are not in sync",
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
        "--connect-timeout",
        type=float,
        default=DEFAULT_REMOTE_WAIT_S,
        metavar="S",
        help="give up when no session with the server has begun after S seconds, "
        f"{v.REMOTE_WAIT.describe()} (default {DEFAULT_REMOTE_WAIT_S:g}); each failed attempt "
        "is logged meanwhile. A server lost later is retried until Ctrl-C",
    )
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


def vcam_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(n) for n in text.lower().split("x"))
    except ValueError:
        raise v.ValidationError(
            f"--vcam-size must look like 1280x720, not {text!r}", subject="--vcam-size"
        ) from None
    return v.check_frame_size(w, h, label="--vcam-size")


def background(text: str) -> tuple[tuple[int, int, int], bool]:
    """`--background`: (colour, blur)."""
    value = text.strip().lower()
    if value == "blur":
        return (0, 0, 0), True
    digits = value.removeprefix("#")
    if len(digits) != 6 or any(c not in "0123456789abcdef" for c in digits):
        raise v.ValidationError(
            f"--background must be a colour like #202020 or 'blur', not {text!r}",
            subject="--background",
        )
    return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)), False


def hop_value(text: str) -> int | None:
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
    v.REMOTE_WAIT.check(args.connect_timeout, label="--connect-timeout")
    v.THREADS.check(args.threads, label="--threads")
    v.check_choice(args.fps, v.FPS_CHOICES, label="--fps")
    if args.duration is not None:
        v.DURATION.check(args.duration, label="--duration")
    if args.webcam is not None:
        v.WEBCAM_INDEX.check(args.webcam, label="--webcam")
    check_pose(args)
    if not args.no_vcam:
        vcam_size(args.vcam_size)
    inputs: list[tuple[str, Path | None]] = [
        ("--avatar", args.avatar),
        ("--audio-file", args.audio_file),
    ]
    check_files(args, inputs, output=("--record", args.record))
    gate_config(args.gate)
    v.MIC_OFFSET.check(args.mic_offset, label="--mic-offset")
    background(args.background)
    v.MAX_MIC_DELAY.check(args.max_mic_delay, label="--max-mic-delay")
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
    if floor is DEFAULT_FLOOR:
        return
    v.NFE.check(floor, label=label)
    if floor > args.nfe:
        raise v.ValidationError(
            f"{label} {floor} is more than --nfe {args.nfe}: the fewest steps to use must be at "
            "most the steps asked for",
            subject=label,
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
