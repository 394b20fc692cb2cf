"""The app's settings (GUI thread): a frozen dataclass saved as JSON in the config dir.

Saving is atomic (write a sibling temp file, fsync, rename over), so a crash mid-save leaves
the previous file intact. A file that cannot be read as settings at all (not UTF-8, not JSON,
nested too deeply, not a settings object) is renamed aside (`settings.corrupt-<time>.json`),
defaults load, and `load()` returns a notice for the user. A field with a wrong type or an
out-of-range value (the ranges are `runtime.core.validate`'s, the ones the sliders show) falls
back to its default on its own, so one bad value does not cost the user every other choice;
the file is then kept aside too and the notice names each setting that was reset.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from runtime.core import validate
from runtime.core.damaged import parse_json, set_aside
from runtime.core.validate import Range, ValidationError

logger = logging.getLogger(__name__)

FILENAME = "settings.json"
VERSION = 1

SourceKind = Literal["microphone", "webcam", "file"]
SOURCE_KINDS: tuple[str, ...] = ("microphone", "webcam", "file")
ComputeMode = Literal["local", "remote"]
BackgroundMode = Literal["none", "colour", "blur"]

RESOLUTIONS: tuple[tuple[int, int], ...] = ((512, 512), (640, 480), (1280, 720), (1920, 1080))
STEPS_CHOICES: tuple[int, ...] = (1, 2, 4, 9)  # Euler steps; 9 is the reference's (nfe 10)
CFG_RANGE = (validate.CFG.lo, validate.CFG.hi)
PRECISION_CHOICES: tuple[str, ...] = ("fp32", "fp16", "bf16", "bf16-mixed")
"""fp16: the mixed-precision graphs (GPUs); bf16: OpenVINO's, on CPUs with AVX-512 BF16 or AMX
(the Controls panel offers it with the OpenVINO backend only)."""
BACKEND_CHOICES: tuple[str, ...] = ("auto", "onnxruntime", "openvino")
"""The runtime's ``--backend`` choices (widgets do not import the runtime; a test keeps the two
in step). Auto: CUDA when usable, else what the last timing run measured fastest."""
HOP_CHOICES: tuple[int, ...] = (0, 1, 2, 5, 10, 25)
"""Frames per engine step (40 ms each); 0 = Auto: the smallest the machine keeps real time."""
GATE_RANGE = Range(name="gate", lo=-80.0, hi=-10.0, unit="dBFS")
MIC_OFFSET_RANGE = Range(name="virtual microphone offset", lo=-500.0, hi=500.0, unit="ms")
MAX_MIC_DELAY_RANGE = Range(name="longest virtual microphone delay", lo=200.0, hi=5000.0, unit="ms")


@dataclass(frozen=True)
class Pose:
    """Head and gaze targets. `natural`: leave pose and gaze to the model (no condition)."""

    yaw: float = 0.0  # degrees, -30..30
    pitch: float = 0.0  # degrees, -20..20
    roll: float = 0.0  # degrees, -20..20
    gaze_x: float = 0.0  # -1..1
    gaze_y: float = 0.0  # -1..1
    natural: bool = True


POSE_RANGES: dict[str, Range] = {
    "yaw": validate.YAW,
    "pitch": validate.PITCH,
    "roll": validate.ROLL,
    "gaze_x": validate.GAZE_X,
    "gaze_y": validate.GAZE_Y,
}
POSE_LIMITS: dict[str, float] = {name: r.hi for name, r in POSE_RANGES.items()}


@dataclass(frozen=True)
class Output:
    width: int = 1280
    height: int = 720
    mirror: bool = False
    background: BackgroundMode = "blur"
    background_colour: str = "#1e2430"


@dataclass(frozen=True)
class Quality:
    cfg_scale: float | None = None
    """Expressiveness (audio classifier-free guidance), 1..5; None until the user moves the
    slider: the installed model's own default (2.0 for IMTalker v2, 3.0 for v1)."""
    steps: int = 9  # flow-matching Euler steps
    fewer_steps: bool = False
    """Auto may use fewer steps (down to 4) when the machine falls behind: off by default,
    fewer steps change the motion."""
    hop: int = 0  # frames produced per engine step; 0 = Auto
    precision: str = "fp32"  # "fp16"/"bf16"/"bf16-mixed" (PRECISION_CHOICES); from the next Go Live
    backend: str = "auto"  # "onnxruntime" or "openvino" (BACKEND_CHOICES); from the next Go Live


@dataclass(frozen=True)
class CallAudio:
    """The microphone as the call hears it, and what of it reaches the model. Mute is not
    kept between runs: an app that starts muted looks broken."""

    virtual_mic: bool = False  # play the delayed microphone into "imtalker-cam Microphone"
    mic_offset_ms: float = 0.0  # added to the measured latency, -500..500
    max_mic_delay_ms: float = 1000.0  # the voice is never delayed more, 200..5000
    gate: bool = True
    gate_dbfs: float = -45.0  # quieter reaches the model as silence, -80..-10
    push_to_talk: bool = False
    ptt_key: str = "F8"  # a QKeySequence in portable text
    mute_key: str = "F9"  # toggles Mute; "" for none
    global_keys: bool = False
    """The two keys work while another app (the call) has the focus: a system-wide keyboard
    listener (pynput), off unless asked for, and not available everywhere (Wayland)."""


@dataclass(frozen=True)
class Compute:
    """Where the model runs: this computer, or an `imtalker-cam serve` server (the token is
    kept here, in the user's own config folder, like the rest of the settings)."""

    mode: ComputeMode = "local"
    url: str = ""  # ws://HOST:PORT or wss://HOST (behind a TLS proxy)
    token: str = ""


@dataclass(frozen=True)
class Settings:
    source: SourceKind = "microphone"
    microphone: str | None = None  # device name: indices change between runs
    webcam: str | None = None
    audio_file: str | None = None  # the recording played as the source when source is "file"
    avatar_id: str | None = None
    pose: Pose = field(default_factory=Pose)
    quality: Quality = field(default_factory=Quality)
    output: Output = field(default_factory=Output)
    call_audio: CallAudio = field(default_factory=CallAudio)
    compute: Compute = field(default_factory=Compute)
    show_overlay: bool = True
    recordings_dir: str | None = None
    window_geometry: str | None = None  # base64 of QWidget.saveGeometry()
    window_state: str | None = None  # base64 of QMainWindow.saveState()
    vcam_help_dismissed: bool = False
    cuda_offer_declined: bool = False  # "Don't ask again" on the CUDA runtime's offer


_HEX = frozenset("0123456789abcdefABCDEF")
_MAX_TEXT = 65_536  # characters: device names, folders and base64 window layouts are far shorter


def _check(name: str, value: Any) -> None:
    """Per-field checks beyond the type (called after it): the choices and ranges widgets
    show, as `runtime.core.validate` states them. Raises ValidationError naming the value."""
    if name in POSE_RANGES:
        POSE_RANGES[name].check(value, label=name)
    elif name == "cfg_scale":
        validate.CFG.check(value, label=name)
    elif name in ("width", "height"):
        validate.FRAME_SIDE.check(value, label=name)
    elif name == "gate_dbfs":
        GATE_RANGE.check(value, label=name)
    elif name == "mic_offset_ms":
        MIC_OFFSET_RANGE.check(value, label=name)
    elif name == "max_mic_delay_ms":
        MAX_MIC_DELAY_RANGE.check(value, label=name)
    elif name == "steps":
        validate.check_choice(value, STEPS_CHOICES, label=name)
    elif name == "hop":
        validate.check_choice(value, HOP_CHOICES, label=name)
    elif name == "precision":
        validate.check_choice(value, PRECISION_CHOICES, label=name)
    elif name == "backend":
        validate.check_choice(value, BACKEND_CHOICES, label=name)
    elif name == "mode" and value not in ("local", "remote"):
        raise ValidationError(f"{name} must be local or remote", subject=name)
    elif name == "url" and value and not value.startswith(("ws://", "wss://")):
        raise ValidationError(f"{name} must start with ws:// or wss://", subject=name)
    elif name in ("source", "background"):
        choices = SOURCE_KINDS if name == "source" else ("none", "colour", "blur")
        if value not in choices:
            raise ValidationError(f"{name} must be one of {', '.join(choices)}", subject=name)
    elif name == "background_colour":
        if not (len(value) == 7 and value[0] == "#" and set(value[1:]) <= _HEX):
            raise ValidationError(f"{name} must be a colour like #1e2430", subject=name)
    elif isinstance(value, str) and (len(value) > _MAX_TEXT or "\x00" in value):
        raise ValidationError(f"{name} is not a usable text value", subject=name)


def _coerce(cls: type[Any], raw: Any, problems: list[str], prefix: str = "") -> Any:
    """Build dataclass `cls` from parsed JSON, field by field, defaulting what is invalid and
    appending one line per reset setting to `problems`."""
    default = cls()
    if not isinstance(raw, dict):
        problems.append(f"{prefix.rstrip('.') or 'settings'} (not a group of settings)")
        return default
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in raw:
            continue
        current = getattr(default, f.name)
        value = raw[f.name]
        label = prefix + f.name
        if hasattr(current, "__dataclass_fields__"):
            values[f.name] = _coerce(type(current), value, problems, f"{label}.")
            continue
        if not _type_ok(current, value, "None" in str(f.type), "float" in str(f.type)):
            problems.append(f"{label} (wrong type: {type(value).__name__})")
            continue
        if isinstance(current, float) and isinstance(value, int):
            value = float(value)
        try:
            if value is not None:
                _check(f.name, value)
        except ValidationError as exc:
            problems.append(f"{label} ({exc})")
            continue
        values[f.name] = value
    return replace(default, **values)


def _type_ok(default: Any, value: Any, optional: bool, number: bool = False) -> bool:
    if value is None:
        return optional
    if default is None and number:  # an optional number (cfg_scale: None = the model's own)
        return isinstance(value, int | float) and not isinstance(value, bool)
    if default is None:
        return isinstance(value, str)  # every other optional setting is a string
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _parse(data: bytes) -> dict[str, Any]:
    """The settings object of a settings file; ValueError says why there is none."""
    raw = parse_json(data)
    if not isinstance(raw, dict) or not isinstance(raw.get("settings"), dict):
        raise ValueError("not a settings file")
    settings: dict[str, Any] = raw["settings"]
    return settings


class SettingsStore:
    """Loads and saves `Settings` in one directory (the platformdirs config dir in the app)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / FILENAME

    def load(self) -> tuple[Settings, str | None]:
        """The saved settings (defaults when there are none) and a notice for the user, if any.
        Never raises: whatever the file holds, the app starts."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return Settings(), None
        except OSError as exc:
            logger.warning("cannot read %s: %s", self.path, exc)
            reason = exc.strerror or str(exc)
            return (
                Settings(),
                f"Your settings file {self.path} could not be read ({reason}); using defaults.",
            )
        try:
            raw = _parse(data)
        except ValueError as exc:
            aside = self._set_aside()
            logger.warning("settings file %s is corrupt (%s); moved to %s", self.path, exc, aside)
            where = f" The damaged file was kept as {aside.name}." if aside else ""
            return (
                Settings(),
                f"Your settings file was damaged ({exc}), so defaults are in use.{where}",
            )
        problems: list[str] = []
        settings = _coerce(Settings, raw, problems)
        if not problems:
            return settings, None
        for problem in problems:
            logger.warning("settings: reset %s", problem)
        aside = self._set_aside()
        where = f" The original file was kept as {aside.name}." if aside else ""
        shown = "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        )
        return settings, f"Some settings were not valid and were reset to defaults: {shown}.{where}"

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
        """Rename the file to `settings.corrupt-<time>[-n].json`, never over an earlier one."""
        return set_aside(self.path, lambda stamp: f"settings.corrupt-{stamp}.json")
