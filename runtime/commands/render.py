"""`imtalker-cam render`: photo + speech or driving video -> MP4 (main thread).

Inputs are read and checked before any model work, so a bad photo, audio file or output path
fails in a second with a specific message. The MP4 is written to a temporary file beside OUT
and renamed into place only when complete: Ctrl-C, a full disk or any error leaves nothing at
OUT (and an existing file there untouched). An existing OUT is replaced only with
`--overwrite`, and never when it is one of the inputs under any name (symlink, hard link, `..`).

All checks of values and paths are in `validate_args`, the command's one validation layer,
built on `runtime.core.validate`. SIGTERM and SIGHUP stop a render like Ctrl-C does (the
temporary file is deleted, nothing is left at OUT) and exit 128 + the signal number.

Work is bounded before it starts: speech and driving videos longer than `--max-length` (600 s
by default, the same for both) are refused with their length, a driving video by its header's
duration and frame count, or when its frames pass the limit if the header does not say. A
driving video's sound is used whole or the render says why not (no sound track, silence); a
sound track that cannot be read is an error, never a silent MP4.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from runtime.commands.app_folders import check_app_folders
from runtime.commands.arg_checks import check_files, check_pose, check_sampler
from runtime.commands.boundary import Terminated
from runtime.commands.device_args import add_device_arguments, session_options
from runtime.commands.progress import ProgressBar
from runtime.core import validate as v
from runtime.core.units import human_bytes
from runtime.engine.conditions_track import TrackFileError, constant_conditions, read_track
from runtime.engine.motion_sampler import RawConditions
from runtime.engine.offline import (
    AudioRenderSettings,
    OfflineRenderer,
    resize_driving_frame,
    retime,
)
from runtime.media.audio_file import (
    DEFAULT_MAX_SECONDS,
    AudioFileError,
    NoAudioTrackError,
    SilentAudioError,
    TooLongError,
    load_audio,
    num_frames,
)
from runtime.media.avatar_image import AvatarImageError
from runtime.media.face_crop import prepare_avatar
from runtime.media.video_file import (
    SUPPORTED_FPS,
    Mp4Writer,
    VideoFileError,
    VideoReader,
    VideoTooLongError,
    check_destination,
    remove_leftovers,
)
from runtime.model import contract
from runtime.model.compile.weights import resolve_graphs
from runtime.model.execution.model_set import open_model_set
from runtime.model.store.errors import ModelStoreError

logger = logging.getLogger(__name__)

EXIT_INPUT = 1
EXIT_INTERRUPTED = 130


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "render",
        help="render a talking video offline: photo + speech (or driving video) -> MP4",
        description=(
            "Render a talking-head video from one portrait photo and either speech (any common "
            "audio format) or a driving video. The output is H.264/yuv420p MP4 with the audio."
        ),
    )
    p.add_argument(
        "--avatar",
        type=Path,
        required=True,
        metavar="PHOTO",
        help="the portrait to animate (PNG or JPEG; the face is cropped unless --no-crop)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", type=Path, metavar="AUDIO", help="speech to lip-sync to")
    src.add_argument("--driving", type=Path, metavar="VIDEO", help="face video to re-enact")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="OUT.mp4",
        help="the video to write (H.264 MP4 with the audio; an existing file only with "
        "--overwrite)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUT (never one of the inputs)",
    )
    p.add_argument(
        "--weights",
        type=Path,
        metavar="DIR",
        help="checkpoints laid out like the published model repository "
        "(default: the installed model)",
    )
    p.add_argument(
        "--graphs", type=Path, metavar="DIR", help="use already compiled graphs from DIR"
    )
    p.add_argument("--no-crop", action="store_true", help="use the whole photo, no face crop")
    p.add_argument(
        "--cfg",
        type=float,
        default=None,
        help=f"audio guidance (expressiveness) {v.CFG.describe()}; default: the model's own, "
        "2.0 for IMTalker v2, 3.0 for v1",
    )
    p.add_argument(
        "--nfe",
        type=int,
        default=10,
        help=f"Euler time-grid points (quality/speed), {v.NFE.describe()} (default 10); one "
        "more than the app's Steps (Steps 9 is --nfe 10)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=25,
        help=f"noise seed, {v.SEED.describe()} (default 25; -1: random)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=1,
        help=f"frames per renderer call, {v.BATCH.describe()} (default 1; on a CPU larger "
        "batches gain under 10%% per frame and need about 0.3 GB of memory per frame, checked "
        "against the memory available; on a GPU try the hop size)",
    )
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: auto)")
    add_device_arguments(p)
    p.add_argument(
        "--crf", type=int, default=18, help="H.264 quality, 0 (lossless) to 51 (default 18)"
    )
    p.add_argument(
        "--max-length",
        type=float,
        default=DEFAULT_MAX_SECONDS,
        metavar="SECONDS",
        help=f"longest speech or driving video accepted, {v.MAX_LENGTH.describe()} (default "
        f"{DEFAULT_MAX_SECONDS:.0f}; longer inputs are refused before any work)",
    )
    pose = p.add_argument_group("head pose and gaze (audio mode; omit for natural motion)")
    pose.add_argument("--yaw", type=float, help=f"{v.YAW.describe()}, + turns to the viewer's left")
    pose.add_argument("--pitch", type=float, help=v.PITCH.describe())
    pose.add_argument("--roll", type=float, help=v.ROLL.describe())
    pose.add_argument("--gaze-x", type=float, help=v.GAZE_X.describe())
    pose.add_argument("--gaze-y", type=float, help=v.GAZE_Y.describe())
    pose.add_argument(
        "--track", type=Path, metavar="FILE", help="per-frame pose/gaze (.npz or .csv)"
    )
    p.set_defaults(func=run)


def _conditions(args: argparse.Namespace, frames: int) -> RawConditions:
    constants = (args.yaw, args.pitch, args.roll, args.gaze_x, args.gaze_y)
    if args.track is not None:
        if any(v is not None for v in constants):
            raise TrackFileError("give either --track or constant --yaw/--pitch/--roll/--gaze-*")
        return read_track(args.track)
    gaze = None
    if args.gaze_x is not None or args.gaze_y is not None:
        gaze = (args.gaze_x or 0.0, args.gaze_y or 0.0)
    return constant_conditions(frames, yaw=args.yaw, pitch=args.pitch, roll=args.roll, gaze=gaze)


#: Working memory of one frame in a CPU renderer call (chunks of the 64x64 attention maps;
#: `imtalker-cam bench` measured ~0.26 GB at batch 1, with a margin for the arena).
RENDERER_BYTES_PER_FRAME = int(0.35 * 2**30)


def validate_args(args: argparse.Namespace) -> None:
    """Every value and path of `render`, checked before any work (ValidationError)."""
    check_sampler(args)
    v.BATCH.check(args.batch, label="--batch")
    v.THREADS.check(args.threads, label="--threads")
    v.CRF.check(args.crf, label="--crf")
    v.MAX_LENGTH.check(args.max_length, label="--max-length")
    check_pose(args)
    inputs: list[tuple[str, Path | None]] = [
        ("--avatar", args.avatar),
        ("--audio", args.audio),
        ("--driving", args.driving),
        ("--track", args.track),
    ]
    check_files(args, inputs, output=("--out", args.out))
    if args.graphs is None:
        check_app_folders()


def check_render_memory(batch: int, providers: list[str], *, available: int | None = None) -> None:
    """On the CPU the renderer's working memory grows with the batch: refuse a batch that
    cannot fit before allocating it. (On a GPU, ONNX Runtime's own allocator reports it.)"""
    if providers and providers[0] == "CPUExecutionProvider":
        v.check_memory(
            batch * RENDERER_BYTES_PER_FRAME, what=f"--batch {batch}", available=available
        )


def run(args: argparse.Namespace) -> int:
    try:
        validate_args(args)
        check_destination(args.out)
        _remove_leftovers(args.out)
        avatar = prepare_avatar(args.avatar, crop=not args.no_crop)
        if args.audio is not None:
            speech = load_audio(args.audio, max_seconds=args.max_length)
            conditions = _conditions(args, num_frames(speech.shape[0]))
        else:
            reader = VideoReader(args.driving, max_seconds=args.max_length)
            sound = _driving_sound(args)
        graphs = args.graphs or resolve_graphs(args.weights, progress=_conversion_progress)
        models = open_model_set(graphs, options=session_options(args, graphs))
        logger.info("running on %s", ", ".join(models.providers))
        check_render_memory(args.batch, list(models.providers))
        logger.info("model: IMTalker %s", models.version.name)
        renderer = OfflineRenderer(models, avatar.image_at(models.source_size))
        if args.audio is not None:
            _render_audio(args, renderer, speech, conditions)
        else:
            with reader:
                _render_driving(args, renderer, reader, sound)
    except KeyboardInterrupt:
        logger.error("interrupted; nothing was written to %s", args.out)
        return EXIT_INTERRUPTED
    except Terminated as exc:
        logger.error("%s; nothing was written to %s", exc, args.out)
        return exc.exit_code
    except (TooLongError, VideoTooLongError) as exc:
        logger.error("%s (raise it with --max-length SECONDS)", exc)
        return EXIT_INPUT
    except (
        AvatarImageError,
        AudioFileError,
        VideoFileError,
        TrackFileError,
        ModelStoreError,
        ValueError,
    ) as exc:
        logger.error("%s", exc)
        return EXIT_INPUT
    logger.info("wrote %s", args.out)
    return 0


def _remove_leftovers(out: Path) -> None:
    removed = remove_leftovers(out)
    if removed.paths:
        logger.info(
            "removed %d temporary file(s) (%s) that an interrupted render to %s left beside it",
            len(removed.paths),
            human_bytes(removed.size),
            out,
        )


def _conversion_progress(progress: Any) -> None:
    logger.info("compiling the model: %s (%d/%d)", progress.graph, progress.done, progress.total)


def _render_audio(
    args: argparse.Namespace,
    renderer: OfflineRenderer,
    speech: np.ndarray[Any, np.dtype[np.float32]],
    conditions: RawConditions,
) -> None:
    settings = AudioRenderSettings(
        cfg_scale=args.cfg,
        nfe=args.nfe,
        seed=None if args.seed < 0 else args.seed,
        batch_size=args.batch,
    )
    logger.info("generating motion for %.1f s of speech", speech.shape[0] / contract.SAMPLE_RATE)
    motion = renderer.motion_from_audio(speech, conditions=conditions, settings=settings)
    bar = ProgressBar(motion.shape[0], label="rendering")
    size = contract.FRAME_SIZE
    with Mp4Writer(
        args.out,
        width=size,
        height=size,
        fps=contract.FPS,
        audio=speech,
        audio_rate=contract.SAMPLE_RATE,
        crf=args.crf,
        overwrite=args.overwrite,
    ) as writer:
        for frame in renderer.render_all([motion], batch_size=args.batch, progress=bar.update):
            writer.write(frame)
    bar.close()


def _driving_sound(args: argparse.Namespace) -> np.ndarray[Any, np.dtype[np.float32]] | None:
    """The driving video's sound, or None when it has none (said); any other problem with it
    (too long, unreadable) is an error, not a silent MP4."""
    try:
        return load_audio(args.driving, max_seconds=args.max_length)
    except (NoAudioTrackError, SilentAudioError) as exc:
        logger.warning("%s: the MP4 will have no sound", exc)
        return None


def _render_driving(
    args: argparse.Namespace,
    renderer: OfflineRenderer,
    reader: VideoReader,
    speech: np.ndarray[Any, np.dtype[np.float32]] | None,
) -> None:
    fps = min(SUPPORTED_FPS, key=lambda f: abs(f - reader.fps))
    expected = reader.info.frame_count
    total = round(expected * fps / reader.fps) if expected else 0
    if speech is not None and total:
        # The sound track may run past the last picture (codec padding); the video sets the end.
        speech = speech[: round(total / fps * contract.SAMPLE_RATE)]
    bar = ProgressBar(total, label="rendering")
    side = renderer.source_size
    frames = retime(reader, source_fps=reader.fps, target_fps=fps)
    crops = (resize_driving_frame(f, side) for f in frames)
    motion = renderer.motion_from_frames(crops, batch_size=args.batch)
    size = contract.FRAME_SIZE
    with Mp4Writer(
        args.out,
        width=size,
        height=size,
        fps=fps,
        audio=speech,
        audio_rate=contract.SAMPLE_RATE,
        crf=args.crf,
        overwrite=args.overwrite,
    ) as writer:
        for batch in motion:
            for frame in renderer.render(batch):
                writer.write(frame)
            bar.update(batch.shape[0])
    bar.close()
