"""ONNX Runtime vs PyTorch eager, stage by stage, in the same run (CPU, recipe weights).

    .venv/bin/python tests/bench/bench_onnx.py [--work DIR] [--weights DIR] [--graphs DIR]
        [--repeats N] [--repeats-small N] [--threads N] [--batches 1,4,8] [--stages ...]
        [--out DIR]

Recipe checkpoints (`models.recipe_checkpoints`) and the graphs exported from them
(`python -m models.export`, 2-3 min) are built into --work (default tests/output/bench_onnx/)
unless they are already there, or taken from --weights / --graphs; so repeated runs are quick.
The PyTorch models are loaded from the same checkpoints the graphs were exported from.

Stages (ORT runs through `runtime.model.execution.sessions`, the app's own session code):
- renderer per frame at batch 1 and 4 (8 with `--batches 1,4,8` and ~20 GB free): ORT
  `DeviceRenderer` (avatar on the device once) vs `IMTRenderer.render_precomputed`; plus ORT
  IOBinding vs a plain `GraphSession.run`
- sampler per 50-frame chunk, nfe 10 (the reference default: 9 Euler steps), CFG 3: ORT = the
  app's numpy loop over the velocity graph (`runtime.engine.motion_sampler.sample_chunk`) vs
  `FMGenerator.sample_chunk`
- audio encoder on 2 s of audio, reported per second of audio
- avatar encoding (one source photo): ORT `avatar_encoder` vs `encode_source + precompute_source`

The machine is shared, so ORT and torch calls are interleaved (one of each per round, order
alternating, after one warm-up each) and the speed-up is reported both as the ratio of the
fastest runs and as the median of the per-round ratios. FLOPs are counted on the PyTorch
modules with `torch.utils.flop_counter.FlopCounterMode` (matmul/conv/attention; the ONNX graph
does the same work) and set against the best float32 2048x2048 matmul (torch or numpy) sampled
at the start and after every stage. End to end: seconds of compute per second of audio-driven
video = audio encoder (1 s) + sampler (25 frames = half a chunk) + renderer (25 frames).

Prints a table and writes results/onnx_vs_torch.json and results/onnx_vs_torch.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `tests.bench` importable
    sys.path.insert(0, str(ROOT))

from models.generator.generator import Conditions  # noqa: E402
from models.loading import LoadedModels, load_models  # noqa: E402
from models.recipe_checkpoints import write_recipe_checkpoints  # noqa: E402
from runtime.engine.motion_sampler import (  # noqa: E402
    ChunkContext,
    ProjectedConditions,
    sample_chunk,
    velocity_from_session,
)
from runtime.model import contract  # noqa: E402
from runtime.model.execution.device_graphs import DeviceRenderer  # noqa: E402
from runtime.model.execution.sessions import GraphSession, SessionOptions  # noqa: E402
from tests.bench.bench_pytorch import count_flops, matmul_peak_gflops  # noqa: E402
from tests.support.data import GOLDEN  # noqa: E402
from tests.support.stub_graphs import write_stub_graphs  # noqa: E402

DEFAULT_WORK = ROOT / "tests" / "output" / "bench_onnx"
FPS = contract.FPS
AUDIO_SECONDS = 2
STAGES = ("renderer", "sampler", "audio_encoder", "avatar_encoder")
# Peak memory growth per rendered frame (measured at batch 1, 2 and 8): ORT with the app's
# session settings (memory pattern off for the renderer) and torch eager; used to skip batch
# sizes this machine cannot hold. ORT at batch 8 was OOM-killed at 20 GB on a 23 GB machine
# before the attention was chunked (2.2 GB per frame then; ~0.3 GB since, `imtalker-cam bench`).
ORT_GB_PER_FRAME = 0.6
TORCH_GB_PER_FRAME = 1.1
MARGIN_GB = 1.5


@dataclass
class Row:
    stage: str
    unit: str  # what one "per unit" time covers
    batch: int
    units_per_call: float  # frames, chunks, seconds of audio or avatars in one call
    gflop_per_unit: float
    ort_min_ms: float  # per unit, fastest run
    ort_median_ms: float
    torch_min_ms: float
    torch_median_ms: float
    speedup: float  # torch_min / ort_min (> 1: ORT faster)
    speedup_median: float  # median over rounds of torch / ort
    ort_gflops: float
    torch_gflops: float
    max_abs_diff: float  # ORT output vs torch output
    mean_abs_diff: float
    ort_peak_fraction: float = 0.0
    torch_peak_fraction: float = 0.0


@dataclass
class Pair:
    """Interleaved timings of two implementations of one call (ms per call)."""

    a: list[float]
    b: list[float]

    @property
    def ratio_of_mins(self) -> float:
        return min(self.b) / min(self.a)

    @property
    def median_ratio(self) -> float:
        return statistics.median(b / a for a, b in zip(self.a, self.b, strict=True))


Measured = tuple[Pair, object, object]  # timings, last ORT output, last torch output


def _ms(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1e3, out


def interleaved(
    fn_a: Callable[[], object], fn_b: Callable[[], object], repeats: int, *, quiet: bool = False
) -> Measured:
    """One warm-up each, then `repeats` rounds, a before b in even rounds and after it in odd
    ones (so neither side always runs second); returns timings and last outputs."""
    out_a, out_b = fn_a(), fn_b()
    a: list[float] = []
    b: list[float] = []
    for i in range(repeats):
        if i % 2 == 0:
            ta, out_a = _ms(fn_a)
            tb, out_b = _ms(fn_b)
        else:
            tb, out_b = _ms(fn_b)
            ta, out_a = _ms(fn_a)
        a.append(ta)
        b.append(tb)
        if not quiet:
            print(f"    round: {ta:9.1f} ms | {tb:9.1f} ms", flush=True)
    return Pair(a, b), out_a, out_b


def timed(
    fn: Callable[[], object], repeats: int, *, quiet: bool = False
) -> tuple[list[float], object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t, out = _ms(fn)
        times.append(t)
        if not quiet:
            print(f"    run: {t:9.1f} ms", flush=True)
    return times, out


def _np(x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.numpy()
    named = x.named() if hasattr(x, "named") else x  # the avatar encoder's per-avatar tensors
    if isinstance(named, dict):
        return np.concatenate([_np(named[t.name]).ravel() for t in contract.AVATAR_TENSORS])
    return np.asarray(x)


def compare(
    rows: list[Row],
    *,
    stage: str,
    unit: str,
    batch: int,
    units: float,
    torch_fn: Callable[[], object],
    repeats: int,
    ort_fn: Callable[[], object] | None = None,
    flops: int | None = None,
    measure: Callable[[], Measured] | None = None,
) -> None:
    """Time `ort_fn` against `torch_fn` interleaved, or as `measure` does it."""
    print(f"  {stage} (batch {batch}): ORT | torch", flush=True)
    if flops is None:
        with torch.no_grad():
            flops = count_flops(torch_fn)
    if measure is not None:
        pair, out_ort, out_torch = measure()
    elif ort_fn is not None:
        pair, out_ort, out_torch = interleaved(ort_fn, torch_fn, repeats)
    else:
        raise ValueError("compare needs ort_fn or measure")
    gflop = flops / 1e9 / units
    diff = np.abs(_np(out_ort) - _np(out_torch))
    o_min, t_min = min(pair.a) / units, min(pair.b) / units
    rows.append(
        Row(
            stage=stage,
            unit=unit,
            batch=batch,
            units_per_call=units,
            gflop_per_unit=gflop,
            ort_min_ms=o_min,
            ort_median_ms=statistics.median(pair.a) / units,
            torch_min_ms=t_min,
            torch_median_ms=statistics.median(pair.b) / units,
            speedup=pair.ratio_of_mins,
            speedup_median=pair.median_ratio,
            ort_gflops=gflop / (o_min / 1e3),
            torch_gflops=gflop / (t_min / 1e3),
            max_abs_diff=float(np.max(diff)),
            mean_abs_diff=float(np.mean(diff)),
        )
    )
    print(
        f"    ORT {o_min:.1f} ms, torch {t_min:.1f} ms per {unit}: "
        f"ORT x{pair.ratio_of_mins:.2f} (median of rounds x{pair.median_ratio:.2f})",
        flush=True,
    )


# -- inputs and sessions ----------------------------------------------------------------------


def prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    weights = args.weights or args.work / "weights"
    graphs = args.graphs or args.work / "graphs"
    if not (weights / "renderer.ckpt").is_file():
        print(f"writing recipe checkpoints into {weights}", flush=True)
        write_recipe_checkpoints(weights, golden_dir=GOLDEN)
    if not all((graphs / g.filename).is_file() for g in contract.GRAPHS):
        print(f"exporting graphs into {graphs} (2-3 min)", flush=True)
        cmd = [sys.executable, "-m", "models.export", "--weights", str(weights)]
        subprocess.run([*cmd, "--out", str(graphs)], check=True, cwd=ROOT)
    return weights, graphs


def _cpu(threads: int) -> SessionOptions:
    return SessionOptions(providers=("CPUExecutionProvider",), intra_op_threads=threads)


def session(graphs: Path, spec: contract.GraphSpec, threads: int) -> GraphSession:
    return GraphSession(spec, graphs / spec.filename, options=_cpu(threads))


# -- stages -----------------------------------------------------------------------------------


@dataclass
class PeakSample:
    when: str
    torch: float
    numpy: float


class Peak:
    """float32 2048x2048 matmul GFLOP/s (torch and numpy), sampled between stages; the best
    sample is the reference (the machine is shared, so any one sample may be depressed)."""

    def __init__(self, repeats: int) -> None:
        self.repeats = repeats
        self.samples: list[PeakSample] = []

    def sample(self, when: str) -> None:
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((2048, 2048), dtype=np.float32) for _ in range(2))
        times, _ = timed(lambda: a @ b, max(self.repeats, 5), quiet=True)
        numpy_peak = 2 * 2048**3 / (min(times) / 1e3) / 1e9
        torch_peak = matmul_peak_gflops(self.repeats)
        self.samples.append(PeakSample(when, torch_peak, numpy_peak))
        print(f"  matmul peak ({when}): torch {torch_peak:.1f}, numpy {numpy_peak:.1f} GFLOP/s")

    @property
    def best(self) -> float:
        return max(max(s.torch, s.numpy) for s in self.samples)


def mem_available_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return float("inf")


def bench_renderer(
    rows: list[Row],
    binding_rows: list[dict[str, Any]],
    notes: list[str],
    models: LoadedModels,
    graphs: Path,
    *,
    threads: int,
    batches: Sequence[int],
    repeats: int,
) -> None:
    renderer = models.renderer
    source = torch.from_numpy(np.load(GOLDEN / "renderer_golden.npz")["source"])
    with torch.no_grad():
        cache = renderer.precompute_source(renderer.encode_source(source))
        # Per-frame work does not depend on the batch (the avatar tensors broadcast).
        flops_per_frame = count_flops(
            lambda: renderer.render_precomputed(torch.zeros(1, contract.MOTION_DIM), cache)
        )
    avatar = {name: t.numpy() for name, t in cache.named().items()}
    g = torch.Generator().manual_seed(0)
    for batch in batches:
        free = mem_available_gb()
        both = batch * (ORT_GB_PER_FRAME + TORCH_GB_PER_FRAME) + MARGIN_GB
        one = batch * max(ORT_GB_PER_FRAME, TORCH_GB_PER_FRAME) + MARGIN_GB
        if free < one:
            note = (
                f"renderer batch {batch} skipped: needs ~{one:.0f} GB of free memory "
                f"(ORT ~{ORT_GB_PER_FRAME}, torch ~{TORCH_GB_PER_FRAME} GB per frame), "
                f"{free:.1f} GB available"
            )
            print(f"  {note}", flush=True)
            notes.append(note)
            continue
        motion = torch.randn(batch, contract.MOTION_DIM, generator=g)
        motion_np = motion.numpy()

        def torch_fn(m: torch.Tensor = motion) -> torch.Tensor:
            return renderer.render_precomputed(m, cache)

        def ort_and_torch(m: np.ndarray = motion_np, together: bool = free >= both) -> Measured:
            # A fresh session per batch size: the CPU arena keeps its peak until the session
            # ends (when `render` goes).
            device = DeviceRenderer(session(graphs, contract.RENDERER, threads))
            device.use(avatar)
            render = device.render
            if together:
                return interleaved(partial(render, m), torch_fn, repeats)
            # Both engines' buffers do not fit at once: all ORT runs, free the session, then
            # all torch runs.
            ort_times, out_ort = timed(partial(render, m), repeats)
            del render, device
            free_now = mem_available_gb()
            if free_now < len(m) * TORCH_GB_PER_FRAME + MARGIN_GB:  # others took memory since
                raise MemoryError(f"{free_now:.1f} GB free after the ORT runs")
            torch_times, out_torch = timed(torch_fn, repeats)
            return Pair(ort_times, torch_times), out_ort, out_torch

        if free < both:
            notes.append(
                f"renderer batch {batch}: ORT and torch timed one after the other, not "
                f"interleaved (both at once need ~{both:.0f} GB, {free:.1f} GB available)"
            )
        try:
            compare(
                rows,
                stage="renderer",
                unit="frame",
                batch=batch,
                units=batch,
                torch_fn=torch_fn,
                repeats=repeats,
                flops=flops_per_frame * batch,
                measure=ort_and_torch,
            )
        except MemoryError as exc:
            notes.append(f"renderer batch {batch} abandoned: {exc}")
            print(f"  renderer batch {batch} abandoned: {exc}", flush=True)
    # IOBinding (avatar bound once) vs a plain run feeding all 13 inputs, batch 1 (live):
    # on the real graph, and on the stub renderer (same inputs, next to no compute) where the
    # per-call overhead the binding saves is not buried in seconds of compute.
    with tempfile.TemporaryDirectory() as tmp:
        stub = write_stub_graphs(Path(tmp)) / contract.RENDERER.filename
        for label, path, rounds in (
            ("renderer", graphs / contract.RENDERER.filename, max(repeats, 5)),
            ("stub renderer (overhead only)", stub, 200),
        ):
            sess = GraphSession(contract.RENDERER, path, options=_cpu(threads))
            bound = DeviceRenderer(sess)
            bound.use(avatar)
            motion_np = torch.randn(1, contract.MOTION_DIM, generator=g).numpy()
            feeds = {**avatar, "motion": motion_np}

            def plain(s: GraphSession = sess, f: dict[str, np.ndarray] = feeds) -> np.ndarray:
                return s.run(f)["frames"]

            print(f"  {label}: IOBinding vs plain run (batch 1): bound | plain", flush=True)
            pair, out_b, out_p = interleaved(
                partial(bound.render, motion_np),
                plain,
                rounds,
                quiet=rounds > 10,
            )
            binding_rows.append(
                {
                    "graph": label,
                    "batch": 1,
                    "rounds": rounds,
                    "bound_min_ms": min(pair.a),
                    "plain_min_ms": min(pair.b),
                    "bound_median_ms": statistics.median(pair.a),
                    "plain_median_ms": statistics.median(pair.b),
                    "plain_over_bound": pair.ratio_of_mins,
                    "plain_over_bound_median": pair.median_ratio,
                    "max_abs_diff": float(np.max(np.abs(_np(out_b) - _np(out_p)))),
                }
            )
            print(f"    plain / bound: x{pair.ratio_of_mins:.3f}", flush=True)


def bench_sampler(
    rows: list[Row], models: LoadedModels, graphs: Path, *, threads: int, repeats: int, nfe: int
) -> None:
    gen = models.generator
    z = np.load(GOLDEN / "generator_golden.npz")
    step = {k.removeprefix("step_"): z[k] for k in z.files if k.startswith("step_")}
    noise, ref = z["noise_seed25"], z["ref_motion"]
    current = ProjectedConditions(
        audio=step["a"][0], gaze=step["gaze"][0], pose=step["pose"][0], cam=step["cam"][0]
    )
    context = ChunkContext(
        motion=step["prev_x"][0],
        conditions=ProjectedConditions(
            audio=step["prev_a"][0],
            gaze=step["prev_gaze"][0],
            pose=step["prev_pose"][0],
            cam=step["prev_cam"][0],
        ),
    )
    velocity = velocity_from_session(session(graphs, contract.VELOCITY, threads))

    def ort_chunk() -> np.ndarray:
        return sample_chunk(
            velocity,
            noise=noise[0],
            ref_motion=ref[0],
            conditions=current,
            context=context,
            cfg_scale=3.0,
            nfe=nfe,
        )

    t = {k: torch.from_numpy(v) for k, v in step.items()}
    cur_t = Conditions(audio=t["a"], gaze=t["gaze"], pose=t["pose"], cam=t["cam"])
    prev_t = Conditions(
        audio=t["prev_a"], gaze=t["prev_gaze"], pose=t["prev_pose"], cam=t["prev_cam"]
    )
    noise_t, ref_t = torch.from_numpy(noise), torch.from_numpy(ref)

    def torch_chunk() -> torch.Tensor:
        x = gen.sample_chunk(noise_t, ref_t, cur_t, prev_t, t["prev_x"], cfg_scale=3.0, nfe=nfe)
        return x[0]

    compare(
        rows,
        stage=f"sampler nfe {nfe} cfg 3",
        unit="50-frame chunk",
        batch=1,
        units=1,
        ort_fn=ort_chunk,
        torch_fn=torch_chunk,
        repeats=repeats,
    )


def bench_audio_encoder(
    rows: list[Row], models: LoadedModels, graphs: Path, *, threads: int, repeats: int
) -> None:
    audio = np.load(GOLDEN / "generator_golden.npz")["audio_normalized"]
    audio = np.ascontiguousarray(audio[: AUDIO_SECONDS * contract.SAMPLE_RATE][None])
    sess = session(graphs, contract.AUDIO_ENCODER, threads)
    audio_t = torch.from_numpy(audio)
    compare(
        rows,
        stage="audio_encoder",
        unit="second of audio",
        batch=1,
        units=AUDIO_SECONDS,
        ort_fn=lambda: sess.run({"audio": audio})["features"],
        torch_fn=lambda: models.audio_encoder(audio_t),
        repeats=repeats,
    )


def bench_avatar_encoder(
    rows: list[Row], models: LoadedModels, graphs: Path, *, threads: int, repeats: int
) -> None:
    renderer = models.renderer
    source = np.load(GOLDEN / "renderer_golden.npz")["source"]
    source_t = torch.from_numpy(source)
    sess = session(graphs, contract.AVATAR_ENCODER, threads)
    compare(
        rows,
        stage="avatar_encoder",
        unit="avatar",
        batch=1,
        units=1,
        ort_fn=lambda: sess.run({"source": source}),
        torch_fn=lambda: renderer.precompute_source(renderer.encode_source(source_t)),
        repeats=repeats,
    )


# -- summary ----------------------------------------------------------------------------------


def end_to_end(rows: list[Row]) -> dict[str, Any]:
    """Seconds of compute per second of audio-driven video, per engine."""
    by_stage = {r.stage: r for r in rows if r.stage != "renderer"}
    renders = {r.batch: r for r in rows if r.stage == "renderer"}
    audio = by_stage.get("audio_encoder")
    sampler = next((r for r in rows if r.stage.startswith("sampler")), None)
    if audio is None or sampler is None or not renders:
        return {}
    out: dict[str, Any] = {}
    for engine in ("ort", "torch"):
        audio_s = getattr(audio, f"{engine}_min_ms") / 1e3  # per second of audio
        sampler_s = getattr(sampler, f"{engine}_min_ms") / 1e3 * FPS / contract.CLIP_FRAMES
        per_batch = {
            b: audio_s + sampler_s + getattr(r, f"{engine}_min_ms") / 1e3 * FPS
            for b, r in renders.items()
        }
        best = min(per_batch, key=lambda b: per_batch[b])
        out[engine] = {
            "audio_encoder_s": audio_s,
            "sampler_s": sampler_s,
            "seconds_per_video_second_by_render_batch": per_batch,
            "best_render_batch": best,
            "seconds_per_video_second": per_batch[best],
        }
    ort_total = out["ort"]["seconds_per_video_second"]
    out["speedup"] = out["torch"]["seconds_per_video_second"] / ort_total
    return out


def markdown(
    rows: list[Row], binding: list[dict[str, Any]], e2e: dict[str, Any], meta: dict[str, Any]
) -> str:
    lines = [
        "# ONNX Runtime vs PyTorch eager (same run, CPU, recipe weights)",
        "",
        f"onnxruntime {meta['onnxruntime']} ({meta['ort_provider']}, {meta['threads']} intra-op "
        f"threads, graph optimisation 'all'), torch {meta['torch']} ({meta['threads']} threads), "
        f"{meta['machine']}, {meta['cores']} cores. float32 matmul peak "
        f"{meta['matmul_peak_gflops']:.1f} GFLOP/s (best 2048x2048 matmul of torch and numpy, "
        f"sampled {len(meta['matmul_peak_samples'])} times: "
        + ", ".join(f"{max(p['torch'], p['numpy']):.0f}" for p in meta["matmul_peak_samples"])
        + f"). {meta['repeats']} interleaved rounds for the renderer, {meta['repeats_small']} "
        f"for the other stages, after one warm-up each; load average {meta['load_start']} at "
        f"start, {meta['load_end']} at end (shared machine: compare ratios, not absolute "
        "times).",
        "",
        "Times are per unit (the fastest round); speed-up = torch / ORT (> 1: ORT faster), as "
        "the ratio of the fastest runs and as the median of the per-round ratios.",
        "",
        "| stage | unit | batch | GFLOP/unit | ORT ms | torch ms | speed-up | median | "
        "ORT GFLOP/s | torch GFLOP/s | ORT % peak | torch % peak | max / mean abs diff |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.stage} | {r.unit} | {r.batch} | {r.gflop_per_unit:.2f} | {r.ort_min_ms:.1f} "
            f"| {r.torch_min_ms:.1f} | {r.speedup:.2f} | {r.speedup_median:.2f} "
            f"| {r.ort_gflops:.1f} | {r.torch_gflops:.1f} | {100 * r.ort_peak_fraction:.0f} "
            f"| {100 * r.torch_peak_fraction:.0f} | {r.max_abs_diff:.1e} / {r.mean_abs_diff:.1e} |"
        )
    if binding:
        lines += [
            "",
            "Renderer at batch 1, ORT IOBinding (`DeviceRenderer`: avatar on the device once) vs "
            "a plain `run` feeding all 13 inputs per call; the stub graph has the same inputs and "
            "next to no compute, so it shows the per-call overhead alone:",
            "",
            "| graph | rounds | bound ms | plain ms | plain / bound (fastest) | median of rounds "
            "| max abs diff |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for b in binding:
            lines.append(
                f"| {b['graph']} | {b['rounds']} | {b['bound_min_ms']:.3f} "
                f"| {b['plain_min_ms']:.3f} | {b['plain_over_bound']:.3f} "
                f"| {b['plain_over_bound_median']:.3f} | {b['max_abs_diff']:.1e} |"
            )
    if e2e:
        lines += [
            "",
            "End to end, seconds of compute per second of audio-driven video "
            "(audio encoder + sampler for 25 frames + renderer for 25 frames):",
            "",
            "| engine | audio enc s | sampler s | renderer batch | total s | real-time factor |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for engine in ("ort", "torch"):
            e = e2e[engine]
            for batch, total in e["seconds_per_video_second_by_render_batch"].items():
                lines.append(
                    f"| {engine} | {e['audio_encoder_s']:.2f} | {e['sampler_s']:.2f} | {batch} "
                    f"| {total:.1f} | {1 / total:.3f} |"
                )
        lines += ["", f"End-to-end ORT speed-up (best batches): x{e2e['speedup']:.2f}."]
    lines += ["", *[f"- {n}" for n in meta["notes"]]]
    return "\n".join(lines) + "\n"


def load_average() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--weights", type=Path, help="existing recipe checkpoints folder")
    parser.add_argument("--graphs", type=Path, help="existing exported graphs folder")
    parser.add_argument("--repeats", type=int, default=3, help="rounds for the renderer")
    parser.add_argument("--repeats-small", type=int, default=7, help="rounds for other stages")
    parser.add_argument("--threads", type=int, default=0, help="0: one per usable core")
    parser.add_argument(
        "--batches", default="1,4", help="renderer batch sizes (8 needs ~20 GB free for ORT)"
    )
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; choose from {STAGES}")

    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    weights, graphs = prepare(args)
    models = load_models(weights)
    for m in (models.renderer, models.generator, models.audio_encoder):
        m.requires_grad_(False)  # FlopCounterMode's module tracker trips over grad params

    load_start = load_average()
    peak = Peak(args.repeats)
    peak.sample("start")
    rows: list[Row] = []
    binding: list[dict[str, Any]] = []
    notes: list[str] = []
    small = {"threads": threads, "repeats": args.repeats_small}
    for stage in stages:
        if stage == "renderer":
            batches = [int(b) for b in args.batches.split(",") if b]
            bench_renderer(
                rows,
                binding,
                notes,
                models,
                graphs,
                threads=threads,
                batches=batches,
                repeats=args.repeats,
            )
        elif stage == "audio_encoder":
            bench_audio_encoder(rows, models, graphs, **small)
        elif stage == "sampler":
            bench_sampler(rows, models, graphs, nfe=args.nfe, **small)
        elif stage == "avatar_encoder":
            bench_avatar_encoder(rows, models, graphs, **small)
        peak.sample(f"after {stage}")
    for r in rows:
        r.ort_peak_fraction = r.ort_gflops / peak.best
        r.torch_peak_fraction = r.torch_gflops / peak.best
    e2e = end_to_end(rows)
    notes += [
        f"sampler: nfe {args.nfe} = {args.nfe - 1} Euler steps, each one velocity evaluation "
        "of a batch-2 (CFG) transformer forward; ORT runs the app's numpy Euler loop",
        "FLOPs: FlopCounterMode on the PyTorch call (matmul, conv, attention; elementwise ops "
        "not counted), the same work as the ONNX graph",
        "renderer ORT path: runtime.model.execution.device_graphs.DeviceRenderer (IOBinding, "
        "avatar tensors uploaded once per avatar)",
        "the conditioner (four Linear+LayerNorm projections, < 1 ms) is left out of the end "
        "to end sum",
    ]
    meta = {
        "onnxruntime": ort.__version__,
        "ort_provider": "CPUExecutionProvider",
        "torch": torch.__version__,
        "threads": threads,
        "cores": len(os.sched_getaffinity(0)),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "matmul_peak_gflops": peak.best,
        "matmul_peak_samples": [asdict(p) for p in peak.samples],
        "load_start": load_start,
        "load_end": load_average(),
        "repeats": args.repeats,
        "repeats_small": args.repeats_small,
        "nfe": args.nfe,
        "stages": stages,
        "notes": notes,
    }
    payload = {
        "meta": meta,
        "results": [asdict(r) for r in rows],
        "iobinding": binding,
        "end_to_end": e2e,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "onnx_vs_torch.json").write_text(json.dumps(payload, indent=2) + "\n")
    md = markdown(rows, binding, e2e, meta)
    (args.out / "onnx_vs_torch.md").write_text(md)
    sys.stdout.write("\n" + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
