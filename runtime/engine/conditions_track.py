"""Head-pose, gaze and camera conditions for offline rendering: constants or per-frame tracks
(the CLI's main thread).

Units. Pose is the reference's head rotation (SMIRK `pose_params`, axis-angle in radians,
ordered pitch, yaw, roll); on the command line yaw/pitch/roll are given in degrees, which is
what a person can judge, and converted. Gaze (x, y) and cam (scale, tx, ty) are passed in the
model's own units, as the reference's per-frame files hold them.

Track files: `.npz` with any of `pose` (T, 3), `gaze` (T, 2), `cam` (T, 3) in model units (the
reference's format), or `.csv` with a header naming any of `pitch, yaw, roll` (degrees),
`gaze_x, gaze_y`, `cam_scale, cam_tx, cam_ty`, one row per frame at 25 fps.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt

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


def _column_block(rows: list[dict[str, str]], names: tuple[str, ...], path: Path) -> Array | None:
    present = [n for n in names if n in rows[0]]
    if not present:
        return None
    if len(present) != len(names):
        raise TrackFileError(f"{path}: columns {', '.join(names)} must appear together")
    try:
        return np.array([[float(r[n]) for n in names] for r in rows], np.float32)
    except (TypeError, ValueError) as exc:
        columns = ", ".join(names)
        raise TrackFileError(f"{path}: a value in {columns} is not a number ({exc})") from None


def read_track(path: Path) -> RawConditions:
    if not path.is_file():
        raise TrackFileError(f"track file not found: {path}")
    if path.suffix.lower() == ".npz":
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise TrackFileError(f"{path}: not a readable .npz file ({exc})") from None
        arrays: dict[str, Array | None] = {}
        for name, width in (("pose", 3), ("gaze", 2), ("cam", 3)):
            value = data[name] if name in data.files else None
            if value is not None and (value.ndim != 2 or value.shape[1] != width):
                raise TrackFileError(
                    f"{path}: `{name}` must be (frames, {width}), not {value.shape}"
                )
            arrays[name] = None if value is None else value.astype(np.float32)
        if all(v is None for v in arrays.values()):
            raise TrackFileError(f"{path}: holds none of `pose`, `gaze`, `cam`")
        return RawConditions(gaze=arrays["gaze"], pose=arrays["pose"], cam=arrays["cam"])
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise TrackFileError(f"{path}: no rows")
        pose_deg = _column_block(rows, ("pitch", "yaw", "roll"), path)
        gaze = _column_block(rows, ("gaze_x", "gaze_y"), path)
        cam = _column_block(rows, ("cam_scale", "cam_tx", "cam_ty"), path)
        if pose_deg is None and gaze is None and cam is None:
            raise TrackFileError(
                f"{path}: the header names none of pitch,yaw,roll / gaze_x,gaze_y / "
                "cam_scale,cam_tx,cam_ty"
            )
        pose = None if pose_deg is None else (pose_deg * (math.pi / 180.0)).astype(np.float32)
        return RawConditions(gaze=gaze, pose=pose, cam=cam)
    raise TrackFileError(f"{path}: track files are .npz or .csv")
