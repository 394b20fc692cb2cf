"""Recordings in progress, so that one a crash interrupted is found and saved (any thread: the
recorder opens on the engine's starting thread, the live command recovers on its main thread).

A recording writes `.<OUT>.part` beside OUT and holds it (`runtime.core.leftovers.hold`) for
as long as it runs: a second session asked to record to the same OUT finds it held and is
refused. Each recording also leaves a note in `<data dir>/recordings/` naming OUT and its part
file, removed when the recording closes. A part file nobody holds is what a killed recording
left: `recover` rewrites what it holds (every whole fragment) into OUT, or `<OUT>-recovered-N`
when OUT exists, and says where.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from runtime.core import paths
from runtime.core.damaged import parse_json
from runtime.core.files import atomic_write_bytes, fit_name, hidden_temp_name
from runtime.core.leftovers import hold
from runtime.media.remux import RemuxError, remux

logger = logging.getLogger(__name__)

PART_SUFFIX = ".part"
FINAL_SUFFIX = ".final"  # the ordinary MP4 being made from a finished part
RECOVERING_SUFFIX = ".recovering"


class RecordingBusy(Exception):
    """Another session is recording to this file."""


@dataclass(frozen=True)
class Recovered:
    """What a crashed recording left: `saved_as` with `seconds` of it, or `problem`."""

    out: Path
    saved_as: Path | None
    seconds: float
    problem: str | None = None

    def describe(self) -> str:
        if self.saved_as is None:
            return f"a recording to {self.out} was interrupted and nothing of it could be kept "
        return (
            f"a recording to {self.out} was interrupted; the {self.seconds:.1f} s it had "
            f"recorded were saved as {self.saved_as}"
        )


def journal_dir() -> Path:
    return paths.data_dir() / "recordings"


def part_path(out: Path) -> Path:
    return out.with_name(hidden_temp_name(out.name, PART_SUFFIX))


class RecordingClaim:
    """The held part file of one recording and its note in the journal."""

    def __init__(self, out: Path, file: IO[bytes], note: Path | None) -> None:
        self.out = out
        self.part = part_path(out)
        self.file = file
        self._note = note

    def finish(self, *, remove_part: bool) -> None:
        """The recording ended: its part was moved into place, or is deleted (`remove_part`)."""
        if remove_part:
            with contextlib.suppress(FileNotFoundError):
                self.part.unlink()
        with contextlib.suppress(OSError):
            self.file.close()
        if self._note is not None:
            with contextlib.suppress(FileNotFoundError):
                self._note.unlink()


def claim(out: Path, *, journal: Path | None = None) -> tuple[RecordingClaim, Recovered | None]:
    """Hold OUT's part file for a new recording (RecordingBusy when a live session holds it);
    a part a crashed recording left there is recovered first."""
    part = part_path(out)
    fd = os.open(part, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
    file = open(fd, "r+b", buffering=0)  # noqa: SIM115 (the claim keeps it open)
    try:
        hold(fd)
    except OSError:
        file.close()
        raise RecordingBusy(f"another session is already recording to {out}") from None
    _remove_temps(out)  # of a session killed while finishing: the part holds it all
    recovered = None
    if os.fstat(fd).st_size > 0:
        recovered = _recover_part(out, part)
        file.truncate(0)
    note = _write_note(out, journal)
    return RecordingClaim(out, file, note), recovered


def _note_path(out: Path, journal: Path) -> Path:
    key = hashlib.sha256(os.fsencode(os.path.abspath(out))).hexdigest()[:24]
    return journal / f"{key}.json"


def _write_note(out: Path, journal: Path | None) -> Path | None:
    folder = journal if journal is not None else journal_dir()
    note = _note_path(out, folder)
    data = {"out": os.path.abspath(out), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        atomic_write_bytes(note, json.dumps(data).encode())
    except OSError as exc:
        # The recording is still crash-safe; only a later start in another folder won't say.
        logger.warning("cannot note the recording in %s: %s", folder, exc)
        return None
    return note


def recover(*, journal: Path | None = None) -> list[Recovered]:
    """Every recording the journal names that a crash interrupted, saved where it can be."""
    folder = journal if journal is not None else journal_dir()
    found: list[Recovered] = []
    try:
        notes = sorted(folder.glob("*.json"))
    except OSError:
        return found
    for note in notes:
        try:
            raw = parse_json(note.read_bytes())
            out = Path(str(raw["out"]))
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                note.unlink()
            continue
        part = part_path(out)
        try:
            fd = os.open(part, os.O_RDWR)
        except FileNotFoundError:
            note.unlink(missing_ok=True)
            continue
        except OSError:
            continue  # the folder is gone or unreadable now: keep the note for later
        with open(fd, "r+b", buffering=0) as file:
            try:
                hold(file.fileno())
            except OSError:
                continue  # a live session: its own
            _remove_temps(out)
            if os.fstat(fd).st_size > 0:
                found.append(_recover_part(out, part))
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        note.unlink(missing_ok=True)
    return found


def _recover_part(out: Path, part: Path) -> Recovered:
    """Save what `part` holds (the caller holds it, and deletes or reuses it)."""
    target = out if not out.exists() else _free_name(out)
    tmp = out.with_name(hidden_temp_name(out.name, RECOVERING_SUFFIX))
    try:
        seconds = remux(part, tmp)
        if target.exists():
            target = _free_name(out)
        os.replace(tmp, target)
    except (RemuxError, OSError) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        result = Recovered(out, None, 0.0, str(exc))
        logger.warning("%s(%s)", result.describe(), exc)
        return result
    result = Recovered(out, target, seconds)
    logger.warning("%s", result.describe())
    return result


def _remove_temps(out: Path) -> None:
    """(Holding OUT's part.)"""
    for suffix in (FINAL_SUFFIX, RECOVERING_SUFFIX):
        with contextlib.suppress(OSError):
            out.with_name(hidden_temp_name(out.name, suffix)).unlink()


def _free_name(out: Path) -> Path:
    stem, suffix = out.stem, out.suffix
    for n in range(1, 1000):
        label = "-recovered" + (f"-{n}" if n > 1 else "")
        candidate = out.with_name(fit_name(stem, extra=len(label) + len(suffix)) + label + suffix)
        if not candidate.exists():
            return candidate
    return out.with_name(fit_name(stem, extra=30) + f"-recovered-{time.time_ns()}{suffix}")
