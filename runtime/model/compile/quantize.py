"""The int8 renderer for OpenVINO's CPU: NNCF post-training quantization of the exported
renderer, calibrated on renderer inputs made from real portraits and speech, kept as OpenVINO
IR beside the compiled graphs (runs on the caller's thread: `imtalker-cam bench`'s main thread
builds it, any thread opening sessions finds it; NNCF itself runs in a child process,
`runtime.model.compile.quantize_child`).

Accuracy: `nncf.quantize_with_accuracy_control` quantizes every Conv/MatMul (preset MIXED:
symmetric weights, asymmetric activations, which the renderer's non-centred activations need;
model type TRANSFORMER, so its attention's softmax and normalisation stay in float and its
MatMuls get SmoothQuant), then reverts the layers whose quantization costs most on the
validation frames, measured against the fp32 graph, back to f32 until the frames are within
`QuantizeSettings.frames_mean`/`frames_p99` (issue 22's tolerance) or `max_reverted` layers are
back. The result says which (`int8.json`); `imtalker-cam bench` then measures the IR like every
other candidate against ONNX Runtime fp32, and auto takes it only within tolerance there.

Where: `<graphs>/int8/<key>/` when the graphs are an entry of the compiled-graph cache (it goes
with them when they are evicted), else `<cache>/compiled/int8/<key>/`. The key hashes the
renderer file, the graphs that make its calibration inputs, the calibration recipe (the SHA-256
of its portraits and speech, the sample counts), the settings and the NNCF and OpenVINO
versions. The entry holds ``renderer.xml``/``.bin`` and ``int8.json``, which records the SHA-256
and size of both; it is written into a temporary folder and renamed into place. An entry whose
files do not match its record is never used: the session refuses it with what to run, and
building replaces it.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime.core.files import atomic_write_bytes, fsync_dir
from runtime.core.leftovers import claim_folder, remove_abandoned_folder
from runtime.model import contract
from runtime.model.child_env import child_env
from runtime.model.compile import cache
from runtime.model.compile.quantize_child import IR_NAME, RESULT_NAME
from runtime.model.execution.backends import TOLERANCE

__all__ = [
    "BENCH_HINT",
    "CalibrationRecipe",
    "CalibrationSet",
    "Int8Damaged",
    "Int8Error",
    "Int8Missing",
    "Int8Unavailable",
    "QuantizationError",
    "QuantizeSettings",
    "build_int8",
    "check_int8",
    "default_recipe",
    "find_int8",
    "int8_dir",
    "int8_key",
    "nncf_installed",
    "read_record",
    "unavailable_reason",
]

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]

FORMAT = 1
INT8_FOLDER = "int8"
RECORD_FILE = "int8.json"
IR_FILES = (IR_NAME, IR_NAME.replace(".xml", ".bin"))
CHILD_MODULE = "runtime.model.compile.quantize_child"
UPSTREAM_GRAPHS = ("avatar_encoder", "audio_encoder", "conditioner", "velocity")
"""The graphs the calibration inputs go through (their files are part of the key)."""
INSTALL_HINT = "pip install 'imtalker-cam[int8]'"
BENCH_HINT = "imtalker-cam bench --backend openvino --precision int8"
_TMP_PREFIX = ".tmp-"


class Int8Error(ValueError):
    """The int8 renderer cannot be used or made; the message says what to do (a ValueError, as
    a graph that does not match the contract: the commands print it as one line)."""


class Int8Unavailable(Int8Error):
    """NNCF is not installed."""


class Int8Missing(Int8Error):
    """Not made yet for these graphs."""


class Int8Damaged(Int8Error):
    """There, but its files do not match its record."""


class QuantizationError(Int8Error):
    """The quantization failed; nothing was kept."""


@dataclass(frozen=True, kw_only=True)
class CalibrationRecipe:
    """The real data the renderer is calibrated and validated on: each portrait driven by a
    speech clip (in turn) through the fp32 graphs; of each portrait's motion, frames spread
    evenly over the clip, `calibration_frames` for calibration and `validation_frames` others
    for validation."""

    portraits: tuple[Path, ...]
    speech: tuple[Path, ...]
    speech_seconds: float = 4.0
    calibration_frames: int = 8
    validation_frames: int = 2
    seed: int = 25

    def __post_init__(self) -> None:
        if not self.portraits or not self.speech:
            raise ValueError("a calibration recipe needs portraits and speech")
        if self.calibration_frames < 1 or self.validation_frames < 1 or self.speech_seconds <= 0:
            raise ValueError("calibration and validation frames >= 1, speech_seconds > 0")

    def identity(self) -> dict[str, Any]:
        """What the key holds of the recipe: its files by content, and its numbers."""
        return {
            "portraits": [cache.file_digest(p) for p in self.portraits],
            "speech": [cache.file_digest(p) for p in self.speech],
            "speech_seconds": self.speech_seconds,
            "calibration_frames": self.calibration_frames,
            "validation_frames": self.validation_frames,
            "seed": self.seed,
        }


def default_recipe() -> CalibrationRecipe:
    """The app's own calibration data (`resources/calibration/`, the sample avatar): real
    portraits and speech from the IMTalker repository's examples (Apache-2.0)."""
    import resources

    folder = Path(resources.__file__).parent
    return CalibrationRecipe(
        portraits=(
            folder / "sample_avatar.png",
            folder / "calibration" / "portrait_1.jpg",
            folder / "calibration" / "portrait_2.png",
        ),
        speech=(folder / "calibration" / "speech_1.wav",),
    )


MOTION_STAGE = r"^(?!/frame_decoder/).*"
"""Every renderer op outside the synthesis network: motion decoding and the cross-attention
whose top-1 picks choose which avatar patch goes where (bf16-mixed's `motion` stage). A flipped
pick moves a whole patch: quantized with the rest, the v2 renderer's frames were 22-34 times
over the tolerance after three reverts. With this stage left out, plain post-training
quantization is 2.2-2.9 times over on the golden inputs (tests/bench/bench_int8_scope.py), but
44 times over on the held-out frames of the app's real calibration portraits before any revert
(full size, v2): int8 stays an explicit choice, labelled with its error."""


@dataclass(frozen=True, kw_only=True)
class QuantizeSettings:
    """How NNCF quantizes (see the module docstring). `frames_mean`/`frames_p99`: the
    accuracy control's limits on the validation frames against fp32 (|d|, frames in [0, 1]);
    `max_reverted`: at most this many layers go back to f32 (each costs a validation pass);
    `ranking_samples`: the validation samples NNCF ranks the layers on (the worst ones): the
    ranking compiles and runs the model once per quantized layer group, the bulk of the time
    at full size, so a few."""

    frames_mean: float = TOLERANCE.frames_mean
    frames_p99: float = TOLERANCE.frames_p99
    accuracy_control: bool = True
    max_reverted: int = 24
    ranking_samples: int = 3
    preset: str = "mixed"
    model_type: str | None = "transformer"
    ignored_patterns: tuple[str, ...] = (MOTION_STAGE,)
    """Op-name patterns (regular expressions) NNCF leaves in f32 (its ignored scope)."""


@dataclass(frozen=True)
class CalibrationSet:
    """Renderer inputs (every input of the contract, batch 1) to calibrate and to validate."""

    calibration: Sequence[Mapping[str, Array]]
    validation: Sequence[Mapping[str, Array]]


def nncf_installed() -> bool:
    """Whether NNCF is there (found without importing it: it imports torch when present)."""
    return importlib.util.find_spec("nncf") is not None


def unavailable_reason() -> str | None:
    """Why int8 cannot be offered here, in one sentence; None when it can."""
    if importlib.util.find_spec("openvino") is None:
        return "int8 runs on OpenVINO, which is not installed here."
    if not nncf_installed():
        return f"int8 needs NNCF to quantize the renderer, which is not installed ({INSTALL_HINT})."
    return None


def _versions() -> dict[str, str]:
    reason = unavailable_reason()
    if reason is not None:
        raise Int8Unavailable(reason)
    return {name: importlib.metadata.version(name) for name in ("nncf", "openvino")}


def int8_key(graph_dir: Path, *, recipe: CalibrationRecipe, settings: QuantizeSettings) -> str:
    """The entry of the int8 renderer for these graphs, data, settings and versions."""
    versions = _versions()
    upstream = {}
    for name in UPSTREAM_GRAPHS:
        path = graph_dir / f"{name}.onnx"
        upstream[name] = cache.file_digest(path) if path.is_file() else None
    fields = {
        "format": FORMAT,
        "renderer": cache.file_digest(graph_dir / contract.RENDERER.filename),
        "upstream": upstream,
        "recipe": recipe.identity(),
        "settings": asdict(settings),
        "versions": versions,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def _root(graph_dir: Path) -> Path:
    root = cache.cache_root().resolve()
    here = graph_dir.resolve()
    return here / INT8_FOLDER if here.is_relative_to(root) else root / INT8_FOLDER


def int8_dir(
    graph_dir: Path,
    *,
    recipe: CalibrationRecipe | None = None,
    settings: QuantizeSettings | None = None,
) -> Path:
    """Where the int8 renderer of `graph_dir` is (or would be)."""
    recipe = recipe or default_recipe()
    settings = settings or QuantizeSettings()
    return _root(graph_dir) / int8_key(graph_dir, recipe=recipe, settings=settings)


def read_record(entry: Path) -> dict[str, Any]:
    """The entry's `int8.json` (how it was made, and its files' hashes)."""
    raw = json.loads((entry / RECORD_FILE).read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{RECORD_FILE} is not an object")
    return raw


def check_int8(entry: Path, *, key: str | None = None) -> tuple[str, ...]:
    """Every reason the entry is not usable (empty when it is)."""
    try:
        record = read_record(entry)
        files = dict(record["files"])
    except FileNotFoundError:
        return ("not made",)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return (f"unreadable {RECORD_FILE}: {exc}",)
    problems = []
    if record.get("format") != FORMAT:
        problems.append(f"format {record.get('format')!r}, expected {FORMAT}")
    if key is not None and record.get("key") != key:
        problems.append("made for other graphs, data, settings or versions")
    for name in IR_FILES:
        meta = files.get(name)
        file = entry / name
        try:
            if meta is None:
                problems.append(f"{name} missing from {RECORD_FILE}")
            elif file.stat().st_size != int(meta["size"]):
                problems.append(f"{name}: size differs from {RECORD_FILE}")
            elif cache.file_digest(file) != meta["sha256"]:
                problems.append(f"{name}: SHA-256 differs from {RECORD_FILE}")
        except FileNotFoundError:
            problems.append(f"{name}: missing")
        except (OSError, KeyError, TypeError, ValueError) as exc:
            problems.append(f"{name}: {exc}")
    return tuple(problems)


def find_int8(
    graph_dir: Path,
    *,
    recipe: CalibrationRecipe | None = None,
    settings: QuantizeSettings | None = None,
) -> Path:
    """The verified int8 IR (``renderer.xml``) of `graph_dir`. Raises `Int8Unavailable`,
    `Int8Missing` (not made: run bench) or `Int8Damaged` (never used; bench remakes it)."""
    entry = int8_dir(graph_dir, recipe=recipe, settings=settings)
    problems = check_int8(entry, key=entry.name)
    if problems == ("not made",):
        raise Int8Missing(
            f"there is no int8 renderer for the graphs in {graph_dir} yet; run `{BENCH_HINT}` "
            "once to make it (a few minutes)"
        )
    if problems:
        raise Int8Damaged(
            f"the int8 renderer in {entry} is damaged ({'; '.join(problems)}) and was not "
            f"used; run `{BENCH_HINT}` to make it again"
        )
    return entry / IR_NAME


def _save_samples(path: Path, samples: Sequence[Mapping[str, Array]]) -> None:
    """`samples` as `quantize_child.load_samples` reads them: each distinct array once (the
    avatar's tensors, tens of MB at full size, are shared by all the frames of a portrait)."""
    arrays: dict[str, Array] = {}
    seen: dict[int, str] = {}
    index = []
    for sample in samples:
        names = {}
        for name, value in sample.items():
            key = seen.get(id(value))
            if key is None:
                key = seen[id(value)] = f"a{len(arrays)}"
                arrays[key] = np.ascontiguousarray(value, np.float32)
            names[name] = key
        index.append(names)
    np.savez(path, index=np.array(json.dumps(index)), **arrays)  # type: ignore[arg-type]


def _run_child(argv: Sequence[str]) -> None:
    """Run the quantization child, its log lines relayed here; raise with its last lines."""
    tail: collections.deque[str] = collections.deque(maxlen=30)
    with subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=child_env(),
    ) as proc:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.rstrip("\r\n")
            tail.append(line)
            logger.info("int8: %s", line)
        code = proc.wait()
    if code != 0:
        detail = "\n".join(tail) or "(no error output)"
        raise QuantizationError(f"the int8 quantization failed (exit code {code}):\n{detail}")


def _seal(tmp: Path, *, key: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    result = json.loads((tmp / RESULT_NAME).read_text(encoding="utf-8"))
    files = {}
    for name in IR_FILES:
        path = tmp / name
        if not path.is_file():
            raise QuantizationError(f"the quantization did not write {name}")
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        files[name] = {"sha256": cache.file_digest(path), "size": path.stat().st_size}
    record = {
        "format": FORMAT,
        "key": key,
        **fields,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **result,
        "files": files,
    }
    for path in tmp.iterdir():  # the job, its inputs and NNCF's leftovers: only the IR stays
        if path.name in IR_FILES:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    atomic_write_bytes(tmp / RECORD_FILE, json.dumps(record, indent=2).encode() + b"\n")
    return record


def _place(tmp: Path, final: Path) -> None:
    if final.exists():
        trash = final.with_name(f"{_TMP_PREFIX}old-{final.name}-{secrets.token_hex(4)}")
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def _remove_abandoned(root: Path) -> None:
    """The temporary folders of quantizations that were killed (their claim is free)."""
    for path in root.glob(f"{_TMP_PREFIX}*"):
        if path.is_dir():
            size = remove_abandoned_folder(path)
            if size is not None:
                logger.warning("removed %s left by an interrupted int8 quantization", path)


def build_int8(
    graph_dir: Path,
    samples: CalibrationSet,
    *,
    recipe: CalibrationRecipe | None = None,
    settings: QuantizeSettings | None = None,
    command: Sequence[str] | None = None,
) -> Path:
    """Quantize the renderer of `graph_dir` on `samples` (made by the caller from `recipe`:
    `runtime.engine.calibration`) and keep it; returns the entry. A damaged entry is replaced.
    `command` replaces ``[sys.executable, "-m", CHILD_MODULE]``. Raises `Int8Unavailable`,
    `QuantizationError`."""
    recipe = recipe or default_recipe()
    settings = settings or QuantizeSettings()
    graph = graph_dir / contract.RENDERER.filename
    key = int8_key(graph_dir, recipe=recipe, settings=settings)
    root = _root(graph_dir)
    final = root / key
    root.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(root)
    tmp = root / f"{_TMP_PREFIX}{key}-{secrets.token_hex(4)}"
    claim = claim_folder(tmp)  # held while quantizing: a killed run's folder is free
    tmp.mkdir()
    try:
        _save_samples(tmp / "calibration.npz", samples.calibration)
        _save_samples(tmp / "validation.npz", samples.validation)
        job = {
            "graph": str(graph),
            "calibration": str(tmp / "calibration.npz"),
            "validation": str(tmp / "validation.npz"),
            "out": str(tmp),
            "settings": asdict(settings),
        }
        (tmp / "job.json").write_text(json.dumps(job), encoding="utf-8")
        argv = [*(command or [sys.executable, "-m", CHILD_MODULE]), "--job", str(tmp / "job.json")]
        _run_child(argv)
        record = _seal(
            tmp,
            key=key,
            fields={
                "graph": {"file": graph.name, "sha256": cache.file_digest(graph)},
                "recipe": recipe.identity(),
                "calibration_samples": len(samples.calibration),
                "settings": asdict(settings),
                "versions": _versions(),
            },
        )
        _place(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        claim.release()
        with contextlib.suppress(OSError):
            Path(claim.lock_file).unlink()
    logger.info(
        "int8 renderer ready in %s: %d layers int8, %d f32; mean |d| %.1e, p99 %.1e vs fp32",
        final,
        len(record["quantized_layers"]),
        len(record["f32_layers"]),
        record["validation"]["frames_mean_abs_diff"],
        record["validation"]["frames_p99_abs_diff"],
    )
    return final
