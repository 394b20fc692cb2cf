"""Microphones as people know them: the system's descriptions, each device once, stable ids.

PortAudio lists every input several times and by driver names: on Linux ALSA aliases
("default", "pulse", "sysdefault") beside the cards ("HDA Intel PCH: ALC257 Analog (hw:0,0)"),
on Windows the same endpoint under MME (names cut at 31 characters), DirectSound, WASAPI and
WDM-KS. This module turns that into one entry per device with a stable id the settings keep:

- Linux with PulseAudio or PipeWire: the sound server's sources (`pactl -f json list sources`)
  with their descriptions; id `pulse:<source name>`, opened through the "pulse" ALSA device
  with `PULSE_SOURCE` naming the source. Without a sound server: the ALSA cards, aliases left out.
- Windows: the WASAPI endpoint names (full length); the other host APIs only for devices
  WASAPI does not list. Mapper aliases are left out.
- elsewhere (macOS): Core Audio names as they are.

Runs on whichever thread lists devices (the GUI thread in the app); `pactl` is run with a
short timeout. Nothing here opens a device.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

PULSE_PREFIX = "pulse:"
ALSA_ALIASES = frozenset(
    {
        "default",
        "sysdefault",
        "pulse",
        "pipewire",
        "jack",
        "dmix",
        "dsnoop",
        "samplerate",
        "speexrate",
        "lavrate",
        "upmix",
        "vdownmix",
        "front",
        "rear",
        "center_lfe",
        "side",
        "surround21",
        "surround40",
        "surround41",
        "surround50",
        "surround51",
        "surround71",
        "iec958",
        "spdif",
        "hdmi",
        "usbstream",
    }
)
WINDOWS_ALIASES = frozenset({"Microsoft Sound Mapper - Input", "Primary Sound Capture Driver"})
_HW_SUFFIX = re.compile(r"\s*\((?:plug)?hw:\d+,\d+\)$")


@dataclass(frozen=True)
class Microphone:
    id: str  # stable: what settings keep
    label: str  # what the user reads
    device: str  # what to pass to PortAudio
    pulse_source: str | None = None  # set PULSE_SOURCE to this before opening `device`


@dataclass(frozen=True)
class PulseSource:
    name: str
    description: str
    monitor: bool  # the monitor of an output (what the speakers play), not a microphone


Runner = Callable[[Sequence[str]], str]


def _run(args: Sequence[str]) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=3, check=True)
    return done.stdout


def pulse_sources(run: Runner = _run) -> tuple[list[PulseSource], str | None] | None:
    """The sound server's sources and the default source's name; None without a server."""
    try:
        listed = json.loads(run(["pactl", "-f", "json", "list", "sources"]))
        default = run(["pactl", "get-default-source"]).strip() or None
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        logger.debug("no PulseAudio/PipeWire sources: %s", exc)
        return None
    sources = []
    for item in listed if isinstance(listed, list) else []:
        if not isinstance(item, dict) or not item.get("name"):
            continue
        name = str(item["name"])
        monitor = bool(item.get("monitor_of_sink")) and item.get("monitor_of_sink") != "n/a"
        monitor = monitor or name.endswith(".monitor")
        sources.append(PulseSource(name, str(item.get("description") or name), monitor))
    return sources, default


def _unique_labels(found: list[Microphone]) -> list[Microphone]:
    """Two devices with the same description get a number, so both can be told apart."""
    seen: dict[str, int] = {}
    out = []
    for mic in found:
        n = seen.get(mic.label, 0) + 1
        seen[mic.label] = n
        out.append(mic if n == 1 else Microphone(mic.id, f"{mic.label} ({n})", mic.device))
    return out


def microphones(
    devices: Sequence[dict[str, Any]],
    hostapis: Sequence[dict[str, Any]],
    *,
    pulse: tuple[list[PulseSource], str | None] | None,
    platform: str = sys.platform,
) -> list[Microphone]:
    """Each input device once, by its description (`devices`/`hostapis`: PortAudio's lists)."""
    inputs = [d for d in devices if int(d.get("max_input_channels", 0)) > 0]
    names = {str(d.get("name", "")) for d in inputs}
    if platform.startswith("linux") and pulse is not None and {"pulse", "pipewire"} & names:
        sources, _ = pulse
        return _unique_labels(
            [
                Microphone(PULSE_PREFIX + s.name, s.description, "pulse", s.name)
                for s in sources
                if not s.monitor
            ]
        )
    found: list[Microphone] = []
    if platform == "win32":
        api_names = [str(a.get("name", "")) for a in hostapis]
        by_api: dict[str, list[str]] = {}
        for d in inputs:
            api = api_names[int(d.get("hostapi", 0))] if api_names else ""
            by_api.setdefault(api, []).append(str(d["name"]))
        wasapi = [n for n in by_api.get("Windows WASAPI", []) if n not in WINDOWS_ALIASES]
        for name in wasapi:
            found.append(Microphone(f"wasapi:{name}", name, f"{name}, Windows WASAPI"))
        for api, listed in by_api.items():
            if api == "Windows WASAPI":
                continue
            for name in listed:
                # MME cuts names at 31 characters: a prefix of a WASAPI name is that device.
                if name in WINDOWS_ALIASES or any(w.startswith(name[:31]) for w in wasapi):
                    continue
                if any(m.label == name for m in found):
                    continue
                found.append(Microphone(f"{api}:{name}", name, f"{name}, {api}"))
        return _unique_labels(found)
    for d in inputs:
        name = str(d["name"])
        if platform.startswith("linux"):
            if name.split(":")[0] in ALSA_ALIASES:
                continue
            label = _HW_SUFFIX.sub("", name)
        else:
            label = name
        if any(m.device == name for m in found):
            continue
        found.append(Microphone(name, label, name))
    return _unique_labels(found)


def default_label(
    devices: Sequence[dict[str, Any]],
    default_index: int | None,
    *,
    pulse: tuple[list[PulseSource], str | None] | None,
    choices: Sequence[Microphone],
) -> str | None:
    """The description of the system default microphone; None when only an alias is known."""
    if pulse is not None:
        _, default = pulse
        for mic in choices:
            if mic.pulse_source is not None and mic.pulse_source == default:
                return mic.label
    if default_index is None or not 0 <= default_index < len(devices):
        return None
    name = str(devices[default_index].get("name", ""))
    if name.split(":")[0] in ALSA_ALIASES or name in WINDOWS_ALIASES:
        return None
    for mic in choices:
        if mic.device.split(", ")[0] == name or mic.label == name:
            return mic.label
    return _HW_SUFFIX.sub("", name) or None


_chosen: list[str] = []  # the PULSE_SOURCE value this module set, if any


def select_pulse_source(source: str | None) -> None:
    """Name the sound-server source the next stream on the "pulse" device records from.
    libpulse reads PULSE_SOURCE when the ALSA plugin opens its connection, which happens when
    the stream is opened, so this is set (or cleared) just before opening. A PULSE_SOURCE the
    user set themselves is left alone when the system default is asked for."""
    if source is None:
        if _chosen and os.environ.get("PULSE_SOURCE") == _chosen[0]:
            os.environ.pop("PULSE_SOURCE", None)
        _chosen.clear()
        return
    os.environ["PULSE_SOURCE"] = source
    _chosen[:] = [source]
