"""Where the virtual microphone plays: a device that call apps list as a microphone.

- Linux (PulseAudio, or PipeWire's pulse server): `PulseVirtualDevice` makes its own null sink
  (`imtalker_cam_sink`) and a remapped source on its monitor, `imtalker_cam_mic`, described
  "imtalker-cam Microphone" (call apps hide monitor sources; a remapped source looks like a
  real microphone). Both are removed again by `remove`. The modules carry the owning
  process's id, so modules left behind by a killed run are cleaned up by the next one. One
  process owns the virtual microphone: it holds an owner lock (per user and PulseAudio server)
  from before it looks for modules until it has removed its own, so of several started
  together exactly one makes the sink and source and the others are told another imtalker-cam
  provides it (decided atomically, not by who lists the modules first). Audio is
  played into the sink through PortAudio's ALSA device with `PULSE_SINK` (and PipeWire's
  `PIPEWIRE_NODE`) naming it; `claim` then checks with `pactl` that this process's playback
  really landed there and moves it if not, so the user never hears their own delayed voice
  from the speakers.
- Windows: VB-Audio's "CABLE Input" playback device (call apps pick "CABLE Output").
- macOS: BlackHole (call apps pick "BlackHole 2ch").

Runs on the thread that opens or closes the virtual microphone (engine start/stop). `pactl`
is run through a `PactlRunner` that is passed in, and the `sounddevice` module likewise, so
tests use fakes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import filelock

logger = logging.getLogger(__name__)

SINK_NAME = "imtalker_cam_sink"
SOURCE_NAME = "imtalker_cam_mic"
SOURCE_DESCRIPTION = "imtalker-cam Microphone"
SINK_DESCRIPTION = "imtalker-cam Microphone (feed)"
PID_PROPERTY = "imtalker_cam.pid"
PULSE_RATE = 48_000

WINDOWS_CABLES = ("CABLE Input",)
MAC_CABLES = ("BlackHole",)

PactlRunner = Callable[[Sequence[str]], str]
"""Runs `pactl ARGS...` and returns its standard output; raises PactlError on failure."""


class PactlError(Exception):
    pass


class VirtualMicUnavailable(Exception):
    """No virtual microphone can be had here; the message says why and what to install."""


def help_text(platform: str = sys.platform) -> str:
    """What to install or run so a virtual microphone is possible, for the GUI and the CLI."""
    if platform.startswith("win"):
        return (
            "Install the free VB-Audio Virtual Cable (vb-audio.com/Cable), restart imtalker-cam, "
            'then choose "CABLE Output (VB-Audio Virtual Cable)" as the microphone in Zoom, '
            "Teams or OBS."
        )
    if platform == "darwin":
        return (
            "Install BlackHole (existential.audio/blackhole, or `brew install blackhole-2ch`), "
            'restart imtalker-cam, then choose "BlackHole 2ch" as the microphone in Zoom, Teams '
            "or OBS."
        )
    return (
        "The virtual microphone needs a PulseAudio server (PipeWire's pipewire-pulse counts) "
        "and its `pactl` tool: install pulseaudio-utils (Debian/Ubuntu) or your distribution's "
        'equivalent. Call apps then list "imtalker-cam Microphone".'
    )


def run_pactl(args: Sequence[str], timeout: float = 5.0) -> str:
    """The real `PactlRunner`."""
    exe = shutil.which("pactl")
    if exe is None:
        raise VirtualMicUnavailable("`pactl` is not installed. " + help_text("linux"))
    try:
        done = subprocess.run(
            [exe, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PactlError(f"pactl {' '.join(args)} did not answer in {timeout:.0f} s") from exc
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise PactlError(f"pactl {' '.join(args)}: {why}")
    return done.stdout


@dataclass(frozen=True)
class OutputTarget:
    """Where to open the output stream."""

    name: str  # what the user picks in the call app
    device: int | str | None  # for sounddevice
    rate: int | None  # None: the device's default
    env: dict[str, str] = field(default_factory=dict)
    """Set while the stream opens (PULSE_SINK for the ALSA pulse plugin)."""


class VirtualMicDevice(Protocol):
    def create(self) -> OutputTarget:
        """Make (or find) the device; raise VirtualMicUnavailable saying why not."""
        ...

    def claim(self) -> None:
        """After the output stream opened: make sure it plays into the device."""
        ...

    def remove(self) -> None:
        """Undo `create` (nothing to do for an installed cable)."""
        ...


def owner_lock_path() -> Path:
    """The lock whose holder owns the virtual microphone of this user's PulseAudio server."""
    folder = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    server = os.environ.get("PULSE_SERVER", "")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    key = hashlib.sha256(f"{uid}:{server}".encode()).hexdigest()[:12]
    return Path(folder) / f"imtalker-cam-virtual-mic-{key}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PulseVirtualDevice:
    def __init__(
        self,
        *,
        sd: Any,
        pactl: PactlRunner = run_pactl,
        pid: int | None = None,
        pid_alive: Callable[[int], bool] = _pid_alive,
        owner_lock: Path | None = None,
    ) -> None:
        """`owner_lock`: held while this process owns the virtual microphone (None: no lock,
        for fakes of `pactl` that no other process sees)."""
        self._sd = sd
        self._pactl = pactl
        self._pid = os.getpid() if pid is None else pid
        self._alive = pid_alive
        self._modules: list[str] = []  # loaded by us, in load order
        # Not thread-local: created on the starting thread, removed on the stopping one.
        self._owner = (
            filelock.FileLock(str(owner_lock), thread_local=False)
            if owner_lock is not None
            else None
        )

    def _take_ownership(self) -> None:
        if self._owner is None or self._owner.is_locked:
            return
        try:
            self._owner.acquire(blocking=False)
        except filelock.Timeout:
            raise VirtualMicUnavailable(
                f'another imtalker-cam already provides "{SOURCE_DESCRIPTION}"; this one runs '
                "without a virtual microphone (stop the other first to have it here)"
            ) from None
        except OSError as exc:  # no lock possible here: the module check below still runs
            logger.warning("cannot take the virtual-microphone lock: %s", exc)
            self._owner = None

    def _ours(self) -> list[tuple[str, str]]:
        """(module index, arguments) of every module naming our sink or source."""
        out = []
        for line in self._pactl(["list", "short", "modules"]).splitlines():
            parts = line.split("\t")
            if len(parts) < 3:
                continue
            args = parts[2]
            if f"sink_name={SINK_NAME}" in args or f"source_name={SOURCE_NAME}" in args:
                out.append((parts[0], args))
        return out

    def _clean_stale(self) -> None:
        stale = []
        for index, args in self._ours():
            m = re.search(rf"{re.escape(PID_PROPERTY)}=(\d+)", args)
            owner = int(m.group(1)) if m else None
            if owner is not None and owner != self._pid and self._alive(owner):
                raise VirtualMicUnavailable(
                    f"another imtalker-cam (process {owner}) already provides "
                    f'"{SOURCE_DESCRIPTION}"; stop it first'
                )
            stale.append(index)
        # The source sits on the sink's monitor: remove it first (higher index = later).
        for index in sorted(stale, key=int, reverse=True):
            logger.info("removing virtual-microphone module %s left by an earlier run", index)
            try:
                self._pactl(["unload-module", index])
            except PactlError as exc:
                logger.warning("could not remove module %s: %s", index, exc)

    def create(self) -> OutputTarget:
        self._take_ownership()
        try:
            self._clean_stale()
            props = f"{PID_PROPERTY}={self._pid}"
            self._modules.append(
                self._pactl(
                    [
                        "load-module",
                        "module-null-sink",
                        f"sink_name={SINK_NAME}",
                        f"sink_properties=\"device.description='{SINK_DESCRIPTION}' {props}\"",
                        f"rate={PULSE_RATE}",
                        "channels=1",
                    ]
                ).strip()
            )
            self._modules.append(
                self._pactl(
                    [
                        "load-module",
                        "module-remap-source",
                        f"master={SINK_NAME}.monitor",
                        f"source_name={SOURCE_NAME}",
                        f"source_properties=\"device.description='{SOURCE_DESCRIPTION}' {props}\"",
                    ]
                ).strip()
            )
        except PactlError as exc:
            self.remove()
            raise VirtualMicUnavailable(
                f"could not create the virtual microphone: {exc}. {help_text('linux')}"
            ) from exc
        except BaseException:
            self.remove()
            raise
        return OutputTarget(
            name=SOURCE_DESCRIPTION,
            device=self._alsa_pulse_device(),
            rate=PULSE_RATE,
            env={"PULSE_SINK": SINK_NAME, "PIPEWIRE_NODE": SINK_NAME},
        )

    def claim(self) -> None:
        sinks = {}
        for line in self._pactl(["list", "short", "sinks"]).splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                sinks[parts[0]] = parts[1]
        ours = [i for i, name in sinks.items() if name == SINK_NAME]
        if not ours:
            raise PactlError(f"the sink {SINK_NAME} is gone")
        for index, sink in self._own_sink_inputs():
            if sink != ours[0]:
                logger.info("moving playback stream %s to %s", index, SINK_NAME)
                self._pactl(["move-sink-input", index, SINK_NAME])

    def _own_sink_inputs(self) -> list[tuple[str, str]]:
        """(sink input, sink) of every playback stream of this process."""
        found, index, sink = [], None, None
        for raw in self._pactl(["list", "sink-inputs"]).splitlines():
            line = raw.strip()
            if line.startswith("Sink Input #"):
                index, sink = line.removeprefix("Sink Input #"), None
            elif line.startswith("Sink:"):
                sink = line.removeprefix("Sink:").strip()
            elif line == f'application.process.id = "{self._pid}"' and index and sink:
                found.append((index, sink))
        return found

    def _alsa_pulse_device(self) -> int | str | None:
        """PortAudio's ALSA device that goes through the pulse plugin (it reads PULSE_SINK)."""
        try:
            devices = list(self._sd.query_devices())
        except Exception:
            return None
        for wanted in ("pulse", "pipewire", "default"):
            for i, info in enumerate(devices):
                if info.get("name") == wanted and info.get("max_output_channels", 0) > 0:
                    return i
        return None

    def remove(self) -> None:
        while self._modules:
            index = self._modules.pop()
            try:
                self._pactl(["unload-module", index])
            except (PactlError, VirtualMicUnavailable) as exc:
                logger.warning("could not remove virtual-microphone module %s: %s", index, exc)
        if self._owner is not None and self._owner.is_locked:
            self._owner.release()


class CableDevice:
    """An installed virtual cable, found among the output devices by name."""

    def __init__(self, *, sd: Any, names: Sequence[str], platform: str = sys.platform) -> None:
        self._sd = sd
        self._names = tuple(names)
        self._platform = platform

    def create(self) -> OutputTarget:
        try:
            devices = list(self._sd.query_devices())
        except Exception as exc:
            raise VirtualMicUnavailable(f"cannot list the audio devices: {exc}") from exc
        for i, info in enumerate(devices):
            name = str(info.get("name", ""))
            if info.get("max_output_channels", 0) > 0 and any(
                n.lower() in name.lower() for n in self._names
            ):
                return OutputTarget(name=name, device=i, rate=None)
        raise VirtualMicUnavailable(
            f"no virtual audio cable ({' or '.join(self._names)}) is installed. "
            + help_text(self._platform)
        )

    def claim(self) -> None:
        pass

    def remove(self) -> None:
        pass


def default_device(
    sd: Any, *, platform: str = sys.platform, pactl: PactlRunner = run_pactl
) -> VirtualMicDevice:
    if platform.startswith("win"):
        return CableDevice(sd=sd, names=WINDOWS_CABLES, platform=platform)
    if platform == "darwin":
        return CableDevice(sd=sd, names=MAC_CABLES, platform=platform)
    return PulseVirtualDevice(sd=sd, pactl=pactl, owner_lock=owner_lock_path())
