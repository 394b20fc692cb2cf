"""The app's settings (GUI thread): a frozen dataclass saved as JSON in the config dir.

Saving is atomic (write a sibling temp file, fsync, rename over), so a crash mid-save leaves
the previous file intact. A file that cannot be read as settings is renamed aside
(`settings.corrupt-<time>.json`), defaults load, and `load()` returns a notice for the user.
A field with a wrong type or out-of-range value falls back to its default on its own, so one
bad value does not cost the user every other choice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

FILENAME = "settings.json"
VERSION = 1

SourceKind = Literal["microphone", "webcam"]
BackgroundMode = Literal["none", "colour", "blur"]

RESOLUTIONS: tuple[tuple[int, int], ...] = ((512, 512), (640, 480), (1280, 720), (1920, 1080))
STEPS_CHOICES: tuple[int, ...] = (1, 2, 4, 9)  # Euler steps; 9 is the reference's (nfe 10)
CFG_RANGE = (1.0, 5.0)
HOP_CHOICES: tuple[int, ...] = (5, 10, 25)  # frames per engine step: 200, 400, 1000 ms


@dataclass(frozen=True)
class Pose:
    """Head and gaze targets. `natural`: leave pose and gaze to the model (no condition)."""

    yaw: float = 0.0  # degrees, -30..30
    pitch: float = 0.0  # degrees, -20..20
    roll: float = 0.0  # degrees, -20..20
    gaze_x: float = 0.0  # -1..1
    gaze_y: float = 0.0  # -1..1
    natural: bool = True


POSE_LIMITS: dict[str, float] = {
    "yaw": 30.0,
    "pitch": 20.0,
    "roll": 20.0,
    "gaze_x": 1.0,
    "gaze_y": 1.0,
}


@dataclass(frozen=True)
class Output:
    width: int = 1280
    height: int = 720
    mirror: bool = False
    background: BackgroundMode = "blur"
    background_colour: str = "#1e2430"


@dataclass(frozen=True)
class Quality:
    cfg_scale: float = 3.0  # expressiveness: audio classifier-free guidance, 1..5
    steps: int = 9  # flow-matching Euler steps
    hop: int = 5  # frames produced per engine step


@dataclass(frozen=True)
class Settings:
    source: SourceKind = "microphone"
    microphone: str | None = None  # device name: indices change between runs
    webcam: str | None = None
    avatar_id: str | None = None
    pose: Pose = field(default_factory=Pose)
    quality: Quality = field(default_factory=Quality)
    output: Output = field(default_factory=Output)
    show_overlay: bool = True
    recordings_dir: str | None = None
    window_geometry: str | None = None  # base64 of QWidget.saveGeometry()
    window_state: str | None = None  # base64 of QMainWindow.saveState()
    vcam_help_dismissed: bool = False


_HEX = frozenset("0123456789abcdefABCDEF")


def _valid(name: str, value: Any) -> bool:
    """Per-field checks beyond the type (called after it): the choices and ranges widgets show."""
    if name in POSE_LIMITS:
        return bool(abs(value) <= POSE_LIMITS[name])
    if name == "source":
        return value in ("microphone", "webcam")
    if name == "background":
        return value in ("none", "colour", "blur")
    if name == "steps":
        return value in STEPS_CHOICES
    if name == "hop":
        return value in HOP_CHOICES
    if name == "cfg_scale":
        return bool(CFG_RANGE[0] <= value <= CFG_RANGE[1])
    if name in ("width", "height"):
        return bool(16 <= value <= 4096)
    if name == "background_colour":
        return len(value) == 7 and value[0] == "#" and set(value[1:]) <= _HEX
    return True


def _coerce(cls: type[Any], raw: Any) -> Any:
    """Build dataclass `cls` from parsed JSON, field by field, defaulting what is invalid."""
    default = cls()
    if not isinstance(raw, dict):
        return default
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in raw:
            continue
        current = getattr(default, f.name)
        value = raw[f.name]
        if hasattr(current, "__dataclass_fields__"):
            values[f.name] = _coerce(type(current), value)
            continue
        if not _type_ok(current, value, "None" in str(f.type)):
            logger.warning("settings: ignoring %s=%r (wrong type)", f.name, value)
            continue
        if isinstance(current, float) and isinstance(value, int):
            value = float(value)
        if not _valid(f.name, value):
            logger.warning("settings: ignoring %s=%r (out of range)", f.name, value)
            continue
        values[f.name] = value
    return replace(default, **values)


def _type_ok(default: Any, value: Any, optional: bool) -> bool:
    if value is None:
        return optional
    if default is None:
        return isinstance(value, str)  # every optional setting is a string
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(default))


class SettingsStore:
    """Loads and saves `Settings` in one directory (the platformdirs config dir in the app)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / FILENAME

    def load(self) -> tuple[Settings, str | None]:
        """The saved settings (defaults when there are none) and a notice for the user, if any."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Settings(), None
        except OSError as exc:
            logger.warning("cannot read %s: %s", self.path, exc)
            return Settings(), f"Your settings could not be read ({exc}); using defaults."
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict) or not isinstance(raw.get("settings"), dict):
                raise ValueError("not a settings file")
        except ValueError as exc:
            aside = self._set_aside()
            logger.warning("settings file %s is corrupt (%s); moved to %s", self.path, exc, aside)
            where = f" The damaged file was kept as {aside.name}." if aside else ""
            return Settings(), f"Your settings file was damaged, so defaults are in use.{where}"
        return _coerce(Settings, raw["settings"]), None

    def save(self, settings: Settings) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"version": VERSION, "settings": asdict(settings)}, indent=2)
        fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _set_aside(self) -> Path | None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"settings.corrupt-{stamp}.json")
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            logger.warning("cannot move the damaged settings aside: %s", exc)
            return None
        return aside
