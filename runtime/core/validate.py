"""Shared validators for every user-facing value and path (any thread; dependency-free).

The CLI, the GUI, the settings loader and any future server check user input with these, so
each rule is written once. Every numeric input has a `Range` here (name, limits, unit, help);
the paths have kind checks (a regular file where a file is read, a writable folder where one is
written) and an output-vs-input check, so no command can write over one of its own inputs.

Every refusal raises `ValidationError`, whose one-line message names the value or file and says
what is allowed.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")  # a choice's type (check_choice)


class ValidationError(ValueError):
    """A user-supplied value or path that cannot be used; `str()` is one line naming it."""

    def __init__(self, message: str, *, subject: str = "") -> None:
        super().__init__(message)
        self.subject = subject
        """The option, setting or file the message is about (for UIs that highlight it)."""


@dataclass(frozen=True, kw_only=True)
class Range:
    """The documented limits of one numeric input (both ends included)."""

    name: str
    lo: float
    hi: float
    unit: str = ""
    help: str = ""
    integer: bool = False

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{_num(self.lo)}..{_num(self.hi)}{unit}"

    def check(self, value: float, *, label: str | None = None) -> float:
        """`value` if it is finite and within the limits, else `ValidationError`."""
        label = label or self.name
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValidationError(
                f"{label} must be a number in {self.describe()}, not {value!r}", subject=label
            ) from None
        if not math.isfinite(number):
            raise ValidationError(
                f"{label} must be a finite number in {self.describe()}, not {value!r}",
                subject=label,
            )
        if self.integer and number != int(number):
            raise ValidationError(
                f"{label} must be a whole number in {self.describe()}, not {value!r}",
                subject=label,
            )
        if not self.lo <= number <= self.hi:
            hint = f" ({self.help})" if self.help else ""
            raise ValidationError(
                f"{label} {_num(number)} is out of range: allowed {self.describe()}{hint}",
                subject=label,
            )
        return number


def _num(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


#: The model's clip length in frames (runtime.model.contract.CLIP_FRAMES; core imports nothing).
CLIP_FRAMES = 50

CFG = Range(name="cfg", lo=1.0, hi=5.0, help="audio guidance; 1 is none, the GUI's slider range")
YAW = Range(name="yaw", lo=-30.0, hi=30.0, unit="degrees", help="the GUI's slider range")
PITCH = Range(name="pitch", lo=-20.0, hi=20.0, unit="degrees", help="the GUI's slider range")
ROLL = Range(name="roll", lo=-20.0, hi=20.0, unit="degrees", help="the GUI's slider range")
GAZE_X = Range(name="gaze-x", lo=-1.0, hi=1.0, help="the GUI's slider range")
GAZE_Y = Range(name="gaze-y", lo=-1.0, hi=1.0, help="the GUI's slider range")
NFE = Range(
    name="nfe",
    lo=2,
    hi=50,
    integer=True,
    # The Euler grid needs two points; the reference uses 10 and the trajectory is converged
    # well before 50, while each point costs one more velocity pass per chunk (50 is 5x the
    # reference's work), so anything above only burns time.
    help="Euler time-grid points; 10 is the reference's",
)
SEED = Range(name="seed", lo=-1, hi=2**32 - 1, integer=True, help="-1 draws fresh noise")
BATCH = Range(
    name="batch",
    lo=1,
    hi=64,
    integer=True,
    help="frames per renderer call, also bounded by the memory available",
)
HOP = Range(name="hop", lo=1, hi=CLIP_FRAMES, integer=True, unit="frames", help="one clip at most")
LOOKAHEAD = Range(name="lookahead", lo=0, hi=CLIP_FRAMES - 1, integer=True, unit="frames")
CRF = Range(name="crf", lo=0, hi=51, integer=True, help="H.264 quality, 0 is lossless")
THREADS = Range(name="threads", lo=0, hi=1024, integer=True, help="0 picks automatically")
DURATION = Range(name="duration", lo=0.001, hi=7 * 24 * 3600.0, unit="s")
REMOTE_WAIT = Range(name="connect timeout", lo=1.0, hi=3600.0, unit="s")
MAX_LENGTH = Range(
    name="longest input", lo=1.0, hi=24 * 3600.0, unit="s", help="speech or driving video"
)
FRAME_SIDE = Range(name="output size", lo=64, hi=4096, integer=True, unit="pixels")
FPS_CHOICES: tuple[int, ...] = (25, 30)
WEBCAM_INDEX = Range(name="webcam", lo=0, hi=255, integer=True)
MIC_OFFSET = Range(name="virtual-microphone offset", lo=-2000.0, hi=2000.0, unit="ms")
MAX_MIC_DELAY = Range(name="longest virtual-microphone delay", lo=0.0, hi=10000.0, unit="ms")
GATE_THRESHOLD = Range(name="gate threshold", lo=-100.0, hi=0.0, unit="dBFS")

# Per-frame track files come from recorded motion, so they may go beyond the sliders; these are
# the physically meaningful limits (a head turned past 90 degrees no longer faces the camera).
TRACK_POSE_DEG = Range(name="pose", lo=-90.0, hi=90.0, unit="degrees")
TRACK_GAZE = Range(name="gaze", lo=-2.0, hi=2.0)
TRACK_CAM = Range(name="cam", lo=-10.0, hi=10.0)

ALL_RANGES: tuple[Range, ...] = (
    CFG,
    YAW,
    PITCH,
    ROLL,
    GAZE_X,
    GAZE_Y,
    NFE,
    SEED,
    BATCH,
    HOP,
    LOOKAHEAD,
    CRF,
    THREADS,
    DURATION,
    FRAME_SIDE,
    WEBCAM_INDEX,
    TRACK_POSE_DEG,
    TRACK_GAZE,
    TRACK_CAM,
)


def check_choice(value: T, choices: Sequence[T], *, label: str) -> T:
    if value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        raise ValidationError(f"{label} must be one of {allowed}, not {value!r}", subject=label)
    return value


def check_frame_size(width: int, height: int, *, label: str = "output size") -> tuple[int, int]:
    """An even frame size within FRAME_SIDE on both sides (H.264/yuv420p needs even sides)."""
    for side in (width, height):
        FRAME_SIDE.check(side, label=label)
    if width % 2 or height % 2:
        raise ValidationError(
            f"{label} {width}x{height}: both sides must be even numbers", subject=label
        )
    return int(width), int(height)


# -- memory -----------------------------------------------------------------------------------


def available_memory() -> int | None:
    """Bytes of memory the system can still give (MemAvailable, else free pages; None: unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(need: int, *, what: str, available: int | None = None) -> None:
    """Refuse work that needs more memory than is available, before allocating it."""
    have = available_memory() if available is None else available
    if have is None or need <= have:
        return
    raise ValidationError(
        f"{what} needs about {need / 2**30:.1f} GiB of memory but only "
        f"{have / 2**30:.1f} GiB is available; choose a smaller value",
        subject=what,
    )


# -- paths ------------------------------------------------------------------------------------


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_input_file(path: Path, *, label: str) -> Path:
    """An existing, readable regular file (FIFOs, devices and folders are refused without
    opening them, since opening a FIFO blocks until a writer appears)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ValidationError(f"{label} {path}: file not found", subject=label) from None
    except NotADirectoryError:
        raise ValidationError(
            f"{label} {path}: a part of the path is a file, not a folder", subject=label
        ) from None
    except PermissionError:
        raise ValidationError(
            f"{label} {path}: permission denied (cannot look into its folder)", subject=label
        ) from None
    except OSError as exc:
        raise ValidationError(f"{label} {path}: {exc.strerror or exc}", subject=label) from None
    if not stat.S_ISREG(st.st_mode):
        raise ValidationError(
            f"{label} {path} is {_kind(st.st_mode)}; a regular file is needed", subject=label
        )
    if not os.access(path, os.R_OK):
        raise ValidationError(f"{label} {path}: permission denied (not readable)", subject=label)
    return path


def check_folder(path: Path, *, label: str, writable: bool = True) -> Path:
    """An existing folder (writable when `writable`)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ValidationError(f"{label} {path} does not exist", subject=label) from None
    except NotADirectoryError:
        raise ValidationError(
            f"{label} {path}: a part of the path is a file, not a folder", subject=label
        ) from None
    except OSError as exc:
        raise ValidationError(f"{label} {path}: {exc.strerror or exc}", subject=label) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ValidationError(f"{label} {path} is a file, not a folder", subject=label)
    if writable and not os.access(path, os.W_OK | os.X_OK):
        raise ValidationError(
            f"{label} {path}: permission denied (the folder is not writable)", subject=label
        )
    return path


def same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` name one file: the same resolved path (symlinks and `..` followed;
    case-folded where the file system ignores case), or the same inode (hard links, and any
    other alias the kernel knows)."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    ra, rb = os.path.realpath(a), os.path.realpath(b)
    if os.path.normcase(ra) == os.path.normcase(rb):
        return True
    return ra.casefold() == rb.casefold() and _case_insensitive(Path(rb).parent)


def _case_insensitive(folder: Path) -> bool:
    try:
        swapped = folder.with_name(folder.name.swapcase()) if folder.name else folder
        return swapped != folder and os.path.samefile(folder, swapped)
    except (OSError, ValueError):
        return False


def check_output_file(
    path: Path,
    *,
    label: str,
    inputs: Iterable[tuple[str, Path | None]] = (),
    overwrite: bool = False,
    suffix: str | None = None,
    overwrite_hint: str = "add --overwrite to replace it",
) -> Path:
    """A file the command may create at `path`: its folder exists and is writable, it is not
    one of `inputs` (label, path) under any alias, and an existing file there is replaced only
    with `overwrite` (`overwrite_hint` says how a UI grants it). Nothing is created here."""
    if suffix is not None and path.suffix.lower() != suffix:
        raise ValidationError(f"{label} must name a {suffix} file, not {path.name}", subject=label)
    for in_label, in_path in inputs:
        if in_path is not None and same_file(path, in_path):
            raise ValidationError(
                f"{label} {path} is the same file as {in_label} {in_path}; "
                "writing it would destroy the input. Choose another name",
                subject=label,
            )
    folder = path.parent if str(path.parent) else Path(".")
    check_folder(folder, label=f"{label} folder")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise ValidationError(
                f"{label} {path}: a part of the path is a file, not a folder", subject=label
            ) from None
        raise ValidationError(f"{label} {path}: {exc.strerror or exc}", subject=label) from None
    if not stat.S_ISREG(st.st_mode):
        raise ValidationError(
            f"{label} {path} exists and is {_kind(st.st_mode)}; name a new file", subject=label
        )
    if not overwrite:
        raise ValidationError(f"{label} {path} already exists; {overwrite_hint}", subject=label)
    return path
