"""Head-pose, gaze and camera conditions for offline rendering: constants or per-frame tracks
(the CLI's main thread).

Units. Pose is the reference's head rotation (SMIRK `pose_params`, axis-angle in radians,
ordered pitch, yaw, roll); on the command line yaw/pitch/roll are given in degrees, which is
what a person can judge, and converted. Gaze (x, y) and cam (scale, tx, ty) are passed in the
model's own units, as the reference's per-frame files hold them.

Track files: `.npz` with any of `pose` (T, 3), `gaze` (T, 2), `cam` (T, 3) in model units (the
reference's format), or `.csv` with a header naming any of `pitch, yaw, roll` (degrees),
`gaze_x, gaze_y`, `cam_scale, cam_tx, cam_ty`, one row per frame at 25 fps (UTF-8).

Every value must be finite and within `runtime.core.validate`'s track ranges (pose within
+-90 degrees, gaze +-2, cam +-10: wider than the GUI's sliders because tracks come from
recorded motion); pickled arrays are never loaded; file and array sizes are bounded before
reading.
"""

from __future__ import annotations

import csv
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from runtime.core import validate as v
from runtime.engine.motion_sampler import RawConditions

Array = npt.NDArray[np.float32]


class TrackFileError(ValueError):
    """A pose/gaze track file that cannot be used; the message says why."""


def pose_from_degrees(*, pitch: float, yaw: float, roll: float) -> Array:
    return np.radians(np.array([pitch, yaw, roll], np.float32)).astype(np.float32)


def constant_conditions(
    frames: int,
    *,
    yaw: float | None = None,
    pitch: float | None = None,
    roll: float | None = None,
    gaze: tuple[float, float] | None = None,
) -> RawConditions:
    """The same pose/gaze on every frame; a value left None is natural (no condition)."""
    pose = None
    if any(v is not None for v in (yaw, pitch, roll)):
        one = pose_from_degrees(pitch=pitch or 0.0, yaw=yaw or 0.0, roll=roll or 0.0)
        pose = np.tile(one, (frames, 1))
    gaze_track = None
    if gaze is not None:
        gaze_track = np.tile(np.array(gaze, np.float32), (frames, 1))
    return RawConditions(gaze=gaze_track, pose=pose, cam=None)


#: Longest track accepted: one hour at 25 fps (speech is capped at 10 minutes anyway).
MAX_TRACK_FRAMES = 25 * 3600
#: Largest track file, and largest array inside an .npz, read (a one-hour CSV is ~5 MB).
MAX_TRACK_BYTES = 64 * 2**20

_NPZ_FIELDS = (("pose", 3), ("gaze", 2), ("cam", 3))
_CSV_BLOCKS = (
    ("pose", ("pitch", "yaw", "roll")),
    ("gaze", ("gaze_x", "gaze_y")),
    ("cam", ("cam_scale", "cam_tx", "cam_ty")),
)


def _column_block(
    rows: list[dict[str | None, str | None]], names: tuple[str, ...], path: Path
) -> Array | None:
    present = [n for n in names if n in rows[0]]
    if not present:
        return None
    if len(present) != len(names):
        raise TrackFileError(f"{path}: columns {', '.join(names)} must appear together")
    out = np.empty((len(rows), len(names)), np.float32)
    for i, row in enumerate(rows):
        for j, name in enumerate(names):
            text = row.get(name)
            try:
                out[i, j] = float(text if text is not None else "")
            except (TypeError, ValueError):
                shown = "an empty cell" if not text else repr(text[:40])
                raise TrackFileError(
                    f"{path}: row {i + 2}, column {name}: {shown} is not a number"
                ) from None
    return out


def _check_values(path: Path, name: str, values: Array, rng: v.Range, scale: float) -> None:
    """Every value finite and within `rng` (values * scale are in the range's unit)."""
    scaled = values.astype(np.float64) * scale
    bad = ~np.isfinite(scaled) | (scaled < rng.lo) | (scaled > rng.hi)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        unit = f" {rng.unit}" if rng.unit else ""
        raise TrackFileError(
            f"{path}: frame {row + 1} of `{name}` (column {col + 1}) is {scaled[row, col]:g}"
            f"{unit}; allowed: finite values in {rng.describe()}"
        )


def _check_track(path: Path, arrays: dict[str, Array | None], *, pose_unit_deg: float) -> None:
    lengths = {n: a.shape[0] for n, a in arrays.items() if a is not None}
    for n, frames in lengths.items():
        if frames == 0:
            raise TrackFileError(f"{path}: `{n}` has no frames")
        if frames > MAX_TRACK_FRAMES:
            raise TrackFileError(
                f"{path}: `{n}` has {frames} frames; at most {MAX_TRACK_FRAMES} (one hour)"
            )
    limits = {"pose": (v.TRACK_POSE_DEG, pose_unit_deg), "gaze": (v.TRACK_GAZE, 1.0)}
    limits["cam"] = (v.TRACK_CAM, 1.0)
    for n, array in arrays.items():
        if array is not None:
            rng, scale = limits[n]
            _check_values(path, n, array, rng, scale)


def _read_npz(path: Path) -> RawConditions:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.file_size > MAX_TRACK_BYTES:
                    raise TrackFileError(
                        f"{path}: `{info.filename}` unpacks to {info.file_size} bytes; "
                        f"a track holds at most {MAX_TRACK_BYTES // 2**20} MB"
                    )
        arrays: dict[str, Array | None] = {}
        with np.load(path, allow_pickle=False) as data:
            for name, width in _NPZ_FIELDS:
                if name not in data.files:
                    arrays[name] = None
                    continue
                value = data[name]
                if value.dtype.kind not in "fiu":
                    raise TrackFileError(
                        f"{path}: `{name}` holds {value.dtype} values; numbers are needed"
                    )
                if value.ndim != 2 or value.shape[1] != width:
                    raise TrackFileError(
                        f"{path}: `{name}` must be (frames, {width}), not {value.shape}"
                    )
                arrays[name] = value.astype(np.float32)
    except TrackFileError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise TrackFileError(
                f"{path}: holds Python objects (pickled data), which are never loaded; "
                "save plain number arrays"
            ) from None
        raise TrackFileError(f"{path}: not a readable .npz file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise TrackFileError(
            f"{path}: damaged or truncated, not a readable .npz file ({exc})"
        ) from None
    if all(a is None for a in arrays.values()):
        raise TrackFileError(f"{path}: holds none of `pose`, `gaze`, `cam`")
    _check_track(path, arrays, pose_unit_deg=180.0 / math.pi)
    return RawConditions(gaze=arrays["gaze"], pose=arrays["pose"], cam=arrays["cam"])


def _read_csv(path: Path) -> RawConditions:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows: list[dict[str | None, str | None]] = []
            for row in csv.DictReader(f):
                rows.append(row)
                if len(rows) > MAX_TRACK_FRAMES:
                    raise TrackFileError(
                        f"{path}: more than {MAX_TRACK_FRAMES} rows; at most one hour at 25 fps"
                    )
    except UnicodeDecodeError as exc:
        raise TrackFileError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); save the CSV as UTF-8"
        ) from None
    except csv.Error as exc:
        raise TrackFileError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows:
        raise TrackFileError(f"{path}: no rows")
    blocks = {key: _column_block(rows, names, path) for key, names in _CSV_BLOCKS}
    if all(b is None for b in blocks.values()):
        raise TrackFileError(
            f"{path}: the header names none of pitch,yaw,roll / gaze_x,gaze_y / "
            "cam_scale,cam_tx,cam_ty"
        )
    _check_track(path, blocks, pose_unit_deg=1.0)
    pose_deg = blocks["pose"]
    pose = None if pose_deg is None else (pose_deg * (math.pi / 180.0)).astype(np.float32)
    return RawConditions(gaze=blocks["gaze"], pose=pose, cam=blocks["cam"])


def read_track(path: Path) -> RawConditions:
    """A track file's conditions; `TrackFileError` naming the file, row and value otherwise."""
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv"):
        raise TrackFileError(f"{path}: track files are .npz or .csv")
    try:
        v.check_input_file(path, label="track file")
    except v.ValidationError as exc:
        raise TrackFileError(str(exc)) from None
    size = path.stat().st_size
    if size > MAX_TRACK_BYTES:
        raise TrackFileError(
            f"{path}: {size} bytes; a track file holds at most {MAX_TRACK_BYTES // 2**20} MB"
        )
    try:
        return _read_npz(path) if suffix == ".npz" else _read_csv(path)
    except OSError as exc:
        raise TrackFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
