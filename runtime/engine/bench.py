"""Per-stage timings of the live pipeline on this machine, and whether it keeps up in real time
(the caller's thread: `imtalker-cam bench`'s main thread, or a GUI worker after conversion).

Stages, each through the code the live engine runs (device-resident renderer and velocity):
- avatar encoding (one photo);
- renderer per frame at batch 1..hop;
- audio encoder per hop (one sliding window: `context_s` of audio + the hop + lookahead);
- sampler per hop (one 50-frame chunk: nfe - 1 velocity steps).

One hop costs audio + sampler + hop x renderer(at batch hop, or batch 1 on the CPU where the
engine renders one frame at a time); it must fit in hop / 25 s. The verdict says so with the
margin ("real time at hop 5 with lookahead 2: yes, headroom 35%") or the factor by which it
is too slow. Renderer working memory is the rise of the process's peak resident memory over
its first run at batch 1, per frame (Linux; on a GPU it is host memory only).

`BenchResult` is written as JSON to the cache dir (`bench.json`) so the live engine's Auto
mode and the GUI can read the figures without measuring again.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from runtime.engine.backend_trials import BackendTrials, RendererTrial, SamplerTrial
from runtime.engine.features import encoder_from_session, window_features
from runtime.engine.live.avatar import image_to_source
from runtime.engine.live.hop_choice import HopCompute
from runtime.engine.motion_sampler import (
    ChunkContext,
    ProjectedConditions,
    fixed_noise,
    sample_chunk,
    velocity_from_session,
)
from runtime.model import contract
from runtime.model.execution.backends import BackendChoice, running_choice
from runtime.model.execution.device_graphs import DeviceGraph, DeviceRenderer
from runtime.model.execution.sessions import ONNXRUNTIME, ModelSet

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]
Clock = Callable[[], float]

RESULT_FILE = "bench.json"
FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class BenchSettings:
    hop: int = 5
    lookahead: int = 2
    context_s: float = 2.0
    nfe: int = 10
    cfg_scale: float = 3.0
    repeats: int = 3
    """Timed runs per stage after one warm-up; the median is reported."""

    def __post_init__(self) -> None:
        if not 1 <= self.hop <= contract.CLIP_FRAMES:
            raise ValueError(f"hop must be 1..{contract.CLIP_FRAMES}")
        if self.nfe < 2 or self.repeats < 1 or self.lookahead < 0 or self.context_s < 0:
            raise ValueError("nfe >= 2, repeats >= 1, lookahead >= 0 and context_s >= 0")


@dataclass(frozen=True, kw_only=True)
class BenchResult:
    """What `imtalker-cam bench` measured (times in milliseconds)."""

    provider: str
    on_gpu: bool
    precision: str
    settings: BenchSettings
    avatar_encoding_ms: float
    renderer_ms_per_frame: dict[int, float]
    audio_encoder_ms_per_hop: float
    sampler_ms_per_hop: float
    renderer_working_mb_per_frame: float | None
    peak_rss_mb: float | None
    machine: str = ""
    created: str = ""
    notices: tuple[str, ...] = field(default=())
    graphs: str = ""
    """The compiled graphs measured (their folder), so that a live session on the same graphs
    can start from these figures (`result_for`); empty in results from before it was kept."""
    backend: str = ""
    """The backend/device/precision the stages were measured on (`BackendChoice.label`, what
    the models ran on: `running_choice`); empty in results from before it was kept."""
    trials: BackendTrials | None = None
    """Every backend/precision tried against ONNX Runtime fp32, and the one auto keeps."""

    @property
    def choice(self) -> BackendChoice:
        """What was measured: `backend`, or for a result from before it was kept ONNX Runtime
        (the only backend then) on CUDA or the CPU at `precision`."""
        if self.backend:
            return BackendChoice.from_label(self.backend)
        device = "CUDA" if self.on_gpu else "CPU"
        return BackendChoice(backend=ONNXRUNTIME, device=device, precision=self.precision)

    @property
    def render_batch(self) -> int:
        """The batch the live engine renders a hop with: the hop on a GPU, 1 on the CPU."""
        return self.settings.hop if self.on_gpu else 1

    @property
    def hop_compute_ms(self) -> float:
        per_frame = self.renderer_ms_per_frame[self.render_batch]
        return (
            self.audio_encoder_ms_per_hop + self.sampler_ms_per_hop + self.settings.hop * per_frame
        )

    @property
    def hop_budget_ms(self) -> float:
        return 1000.0 * self.settings.hop / contract.FPS

    @property
    def real_time_factor(self) -> float:
        """Compute time per second of video (< 1 keeps up)."""
        return self.hop_compute_ms / self.hop_budget_ms

    @property
    def fps(self) -> float:
        """Frames per second the pipeline produces when it never waits."""
        return 1000.0 * self.settings.hop / self.hop_compute_ms

    @property
    def real_time(self) -> bool:
        return self.real_time_factor <= 1.0

    @property
    def verdict(self) -> str:
        s = self.settings
        head = f"real time at hop {s.hop} with lookahead {s.lookahead}"
        if self.backend:
            head += f" on {self.backend}"
            if self.trials is not None and self.trials.chosen == self.backend:
                head += " (auto's choice)"
        if self.real_time:
            return f"{head}: yes, headroom {100.0 * (1.0 - self.real_time_factor):.0f}%"
        return (
            f"{head}: no, {self.real_time_factor:.1f}x slower than real time "
            f"({self.fps:.1f} fps of {contract.FPS})"
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = FORMAT
        data["renderer_ms_per_frame"] = {str(k): v for k, v in self.renderer_ms_per_frame.items()}
        trials = data.pop("trials")
        if trials is not None:
            data["renderer_backends"] = trials["renderer"]
            data["sampler_backends"] = trials["sampler"]
            data["chosen_backend"] = trials["chosen"]
        data["derived"] = {
            "render_batch": self.render_batch,
            "hop_compute_ms": self.hop_compute_ms,
            "hop_budget_ms": self.hop_budget_ms,
            "real_time_factor": self.real_time_factor,
            "fps": self.fps,
            "real_time": self.real_time,
            "verdict": self.verdict,
        }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchResult:
        if data.get("format") != FORMAT:
            raise ValueError(f"bench result format {data.get('format')!r}, expected {FORMAT}")
        return cls(
            provider=str(data["provider"]),
            on_gpu=bool(data["on_gpu"]),
            precision=str(data["precision"]),
            settings=BenchSettings(**data["settings"]),
            avatar_encoding_ms=float(data["avatar_encoding_ms"]),
            renderer_ms_per_frame={
                int(k): float(v) for k, v in data["renderer_ms_per_frame"].items()
            },
            audio_encoder_ms_per_hop=float(data["audio_encoder_ms_per_hop"]),
            sampler_ms_per_hop=float(data["sampler_ms_per_hop"]),
            renderer_working_mb_per_frame=_opt_float(data.get("renderer_working_mb_per_frame")),
            peak_rss_mb=_opt_float(data.get("peak_rss_mb")),
            machine=str(data.get("machine", "")),
            created=str(data.get("created", "")),
            notices=tuple(data.get("notices", ())),
            graphs=str(data.get("graphs", "")),
            backend=str(data.get("backend", "")),
            trials=_trials(data),
        )

    def hop_costs(self) -> HopCompute:
        """The figures as one hop's measured compute (what Auto observes after a hop), so that
        Auto and the readout start from them instead of from nothing."""
        fixed_ms = self.audio_encoder_ms_per_hop + self.sampler_ms_per_hop
        return HopCompute(
            fixed_s=fixed_ms / 1e3,
            render_s=self.renderer_ms_per_frame[self.render_batch] / 1e3,
            rendered=1,
            sampler_s=self.sampler_ms_per_hop / 1e3,
            nfe=self.settings.nfe,
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _trials(data: dict[str, Any]) -> BackendTrials | None:
    if "chosen_backend" not in data:
        return None
    return BackendTrials(
        renderer=tuple(RendererTrial(**t) for t in data.get("renderer_backends", ())),
        sampler=tuple(SamplerTrial(**t) for t in data.get("sampler_backends", ())),
        chosen=str(data["chosen_backend"]),
    )


def chosen_backend(cache_dir: Path, graphs: Path) -> BackendChoice | None:
    """What the last bench of `graphs` chose for ``--backend auto``, or None when it did not
    try the backends on these graphs (or its result cannot be read)."""
    try:
        result = read_result(cache_dir)
        if result is None or result.trials is None or not result.graphs:
            return None
        if Path(result.graphs).resolve() != graphs.resolve():
            return None
        return BackendChoice.from_label(result.trials.chosen)
    except (OSError, ValueError):
        return None


def write_result(result: BenchResult, cache_dir: Path) -> Path:
    from runtime.core.files import atomic_write_bytes

    path = cache_dir / RESULT_FILE
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(result.to_json(), indent=2).encode() + b"\n")
    return path


def result_of(cache_dir: Path, graphs: Path) -> BenchResult | None:
    """The kept result if it measured these graphs (on whichever backend), else None."""
    result = read_result(cache_dir)
    if result is None or not result.graphs:
        return None
    try:
        same = Path(result.graphs).resolve() == graphs.resolve()
    except OSError:
        return None
    return result if same else None


def result_for(cache_dir: Path, graphs: Path, *, choice: BackendChoice) -> BenchResult | None:
    """The kept result if it measured these graphs on `choice` (backend, device and precision:
    figures from another backend do not hold for this one), else None."""
    result = result_of(cache_dir, graphs)
    try:
        return result if result is not None and result.choice == choice else None
    except ValueError:  # a label that is not backend/device/precision
        return None


def expected_hop(cache_dir: Path, graphs: Path, models: ModelSet) -> HopCompute | None:
    """A hop's compute as the last `imtalker-cam bench` measured it on these graphs on what
    `models` run on (`running_choice`: backend, device, precision), for
    `EngineConfig.expected_hop`; None if it did not."""
    try:
        result = result_for(cache_dir, graphs, choice=running_choice(models))
    except (OSError, ValueError):
        return None
    if result is None:
        return None
    logger.info("from the last bench of these graphs: %s", result.verdict)
    return result.hop_costs()


def read_result(cache_dir: Path) -> BenchResult | None:
    """The last result, or None when there is none or it cannot be read (it is only a cache)."""
    path = cache_dir / RESULT_FILE
    try:
        return BenchResult.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring unreadable %s: %s", path, exc)
        return None


# -- memory (Linux /proc; elsewhere None) -------------------------------------------------------


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _peak_mb() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _trim() -> None:
    with contextlib.suppress(OSError, AttributeError):  # glibc only: return freed heap first
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak() -> bool:
    """Start a new peak-RSS window (Linux 4.0+); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


# -- measuring ----------------------------------------------------------------------------------


def _median_ms(fn: Callable[[], object], repeats: int, clock: Clock) -> float:
    fn()  # warm-up: first-run allocations, algorithm searches, CUDA-graph capture
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return 1000.0 * statistics.median(times)


def avatar_tensors(models: ModelSet) -> dict[str, Array]:
    """The renderer's avatar tensors for the bench's synthetic source image."""
    encoder = models[contract.AVATAR_ENCODER.name]
    size = int(encoder.spec.input("source").shape[2])
    encoded = encoder.run({"source": image_to_source(_source_image(size), size)})
    return {t.name: encoded[t.name] for t in contract.AVATAR_TENSORS}


def _source_image(size: int) -> npt.NDArray[np.uint8]:
    # A smooth synthetic face-sized gradient: timings do not depend on the picture.
    ramp = np.linspace(40, 215, size, dtype=np.float32)
    rgb = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1)] * 2, -1)[..., :3]
    return np.ascontiguousarray(rgb.astype(np.uint8))


def run_bench(
    models: ModelSet,
    *,
    settings: BenchSettings | None = None,
    precision: str = "fp32",
    clock: Clock = time.perf_counter,
    progress: Callable[[str], None] | None = None,
    graphs: Path | None = None,
    trials: BackendTrials | None = None,
) -> BenchResult:
    """Measure every stage once (see the module docstring); `graphs`: the folder they were
    opened from and `trials` the backends tried before (`runtime.engine.backend_trials`), kept
    with the result, as is what the models ran on (`running_choice`: the key the live engine
    and the app quote the figures by)."""
    s = settings or BenchSettings()
    say = progress or (lambda _text: None)
    rng = np.random.default_rng(0)

    encoder = models[contract.AVATAR_ENCODER.name]
    size = int(encoder.spec.input("source").shape[2])  # the model version's source size
    source = image_to_source(_source_image(size), size)
    say("avatar encoding")
    encoded: dict[str, Array] = {}

    def encode_avatar() -> None:
        encoded.update(encoder.run({"source": source}))

    avatar_ms = _median_ms(encode_avatar, s.repeats, clock)
    tensors = {t.name: encoded[t.name] for t in contract.AVATAR_TENSORS}

    renderer = DeviceRenderer(models[contract.RENDERER.name])
    renderer.use(tensors)
    say("renderer memory")
    _trim()  # before reading the baseline: trimming lowers RSS, never the other way
    rss_before = _rss_mb()
    measured_peak = _reset_peak()
    renderer.render(rng.standard_normal((1, contract.MOTION_DIM)).astype(np.float32))
    peak_after = _peak_mb()
    working = (
        max(0.0, peak_after - rss_before)
        if measured_peak and peak_after is not None and rss_before is not None
        else None
    )
    per_frame: dict[int, float] = {}
    for batch in range(1, s.hop + 1):
        say(f"renderer at batch {batch}")
        motion = rng.standard_normal((batch, contract.MOTION_DIM)).astype(np.float32)
        per_frame[batch] = _median_ms(partial(renderer.render, motion), s.repeats, clock) / batch

    say("audio encoder")
    encode = encoder_from_session(models[contract.AUDIO_ENCODER.name])
    window_frames = round(s.context_s * contract.FPS) + s.hop + s.lookahead
    window = (rng.standard_normal(window_frames * contract.SAMPLES_PER_FRAME) * 0.1).astype(
        np.float32
    )
    audio_ms = _median_ms(
        lambda: window_features(encode, window, last_frames=s.hop + s.lookahead), s.repeats, clock
    )

    say("sampler")
    velocity = velocity_from_session(DeviceGraph(models[contract.VELOCITY.name]))
    conditions = ProjectedConditions.zeros(contract.CLIP_FRAMES)
    noise = fixed_noise(25)(0)
    ref = rng.standard_normal(contract.MOTION_DIM).astype(np.float32)

    def sample() -> None:
        sample_chunk(
            velocity,
            noise=noise,
            ref_motion=ref,
            conditions=conditions,
            context=ChunkContext.zeros(),
            cfg_scale=s.cfg_scale,
            nfe=s.nfe,
        )

    sampler_ms = _median_ms(sample, s.repeats, clock)
    notices = tuple(
        n for name in models.sessions for n in getattr(models[name], "notices", [])
    ) + tuple(renderer.notices)
    return BenchResult(
        provider=models.summary(),
        on_gpu=models.on_gpu,
        precision=precision,
        settings=s,
        avatar_encoding_ms=avatar_ms,
        renderer_ms_per_frame=per_frame,
        audio_encoder_ms_per_hop=audio_ms,
        sampler_ms_per_hop=sampler_ms,
        renderer_working_mb_per_frame=working,
        peak_rss_mb=_peak_mb(),
        machine=f"{platform.machine()} {platform.processor() or platform.system()}".strip(),
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        notices=notices,
        graphs="" if graphs is None else str(graphs.resolve()),
        backend=running_choice(models).label,
        trials=trials,
    )
