"""PyTorch eager CPU benchmark of the IMTalker pipeline stages (recipe weights).

    .venv/bin/python tests/bench/bench_pytorch.py [--repeats N] [--threads N] [--out DIR]
                                                  [--versions v1,v2]

Times each stage (min and median of N runs after one warm-up), counts its FLOPs with
torch.utils.flop_counter.FlopCounterMode, and reports achieved GFLOP/s against a float32
matmul peak (2048x2048, best of several measurements in the same run). Stages:

- audio encoder on 2 s of 16 kHz audio (50 frames)
- one generator velocity evaluation (batch 1, CFG => internally batch 2)
- one sampler call: 50 frames, nfe 10 (9 Euler evaluations), CFG 3
- renderer avatar encoding (encode_source + precompute_source), per avatar
- renderer motion encoding of driving frames at batch 1 and 4, per frame
- renderer frames at batch 1 and 4 (render_precomputed), per frame

every stage for each model version (v2: 512 px encoder input, RoPE generator), side by side.
Prints a table and writes results/pytorch_eager.json and results/pytorch_eager.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from models.audio_encoder import AudioEncoder, audio_encoder_state_dict
from models.generator import FMGenerator, GeneratorConfig
from models.recipe import golden_version_dir, read_manifest, recipe_state_dict
from runtime.model.versions import VERSIONS, ModelVersion
from tests.support.data import GOLDEN

ROOT = Path(__file__).resolve().parents[2]
FRAME_BUDGET_MS = 40.0  # 25 fps


@dataclass
class Result:
    version: str
    stage: str
    batch: int
    median_ms: float
    min_ms: float
    per_frame_ms: float | None  # from the fastest run
    gflop: float
    gflops_achieved: float  # from the fastest run (the machine is shared; min is least noisy)
    peak_fraction: float = 0.0  # filled in against the best matmul peak of the run


def time_call(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up (allocations, one-time kernel selection)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def count_flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


PEAKS: list[float] = []
"""Every matmul peak measured in this run; the best one is the reference (shared machine)."""


def matmul_peak_gflops(repeats: int, n: int = 2048) -> float:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    times = time_call(lambda: a @ b, max(repeats, 5))
    peak = 2 * n**3 / (min(times) / 1e3) / 1e9
    PEAKS.append(peak)
    return peak


def load_recipe(model: torch.nn.Module, version: ModelVersion, manifest_name: str) -> None:
    state = model.state_dict()
    manifest = read_manifest(golden_version_dir(GOLDEN, version) / manifest_name)
    state.update(recipe_state_dict(manifest))
    model.load_state_dict(state, strict=True)
    # FlopCounterMode's module tracker trips over parameters that require grad.
    model.requires_grad_(False)


def bench(
    results: list[Result],
    version: ModelVersion,
    stage: str,
    fn: Callable[[], object],
    *,
    repeats: int,
    batch: int = 1,
    frames: int | None = None,
) -> None:
    matmul_peak_gflops(repeats)  # next to every stage, so a quiet moment is not missed
    with torch.no_grad():
        flops = count_flops(fn)
        times = time_call(fn, repeats)
    best = min(times)
    results.append(
        Result(
            version=version.name,
            stage=stage,
            batch=batch,
            median_ms=statistics.median(times),
            min_ms=best,
            per_frame_ms=best / frames if frames else None,
            gflop=flops / 1e9,
            gflops_achieved=flops / (best / 1e3) / 1e9,
        )
    )
    print(
        f"  {version.name} {stage}: min {best:.1f} ms, median {statistics.median(times):.1f} ms",
        flush=True,
    )


def bench_generator(results: list[Result], repeats: int, version: ModelVersion) -> None:
    golden = np.load(golden_version_dir(GOLDEN, version) / "generator_golden.npz")
    audio = torch.from_numpy(golden["audio_normalized"][:32_000])[None]  # 2 s, already normalised
    encoder = AudioEncoder().eval()
    wav2vec2 = recipe_state_dict(read_manifest(GOLDEN / "wav2vec2_manifest.json"))
    encoder.load_state_dict(audio_encoder_state_dict(wav2vec2), strict=True)
    encoder.requires_grad_(False)
    bench(results, version, "audio_encoder_2s", lambda: encoder(audio), repeats=repeats)

    gen = FMGenerator(GeneratorConfig.for_version(version)).eval()
    load_recipe(gen, version, "generator_manifest.json")
    with torch.no_grad():
        feats = encoder(audio)  # (1, 50, 768)
    ref = torch.from_numpy(golden["ref_motion"])
    step = [torch.from_numpy(golden[f"step_{k}"]) for k in _STEP_KEYS]
    t = torch.from_numpy(golden["step_t"])
    bench(
        results,
        version,
        "generator_velocity_cfg",
        lambda: gen.velocity(t, *step, 3.0),
        repeats=repeats,
    )
    bench(
        results,
        version,
        "generator_sample_50f_nfe10_cfg3",
        lambda: gen.sample(feats, ref, cfg_scale=3.0, nfe=10, seed=25),
        repeats=repeats,
        frames=50,
    )


_STEP_KEYS = (
    "x", "prev_x", "ref_x", "a", "prev_a", "gaze", "prev_gaze",
    "pose", "prev_pose", "cam", "prev_cam",
)  # fmt: skip


def bench_renderer(results: list[Result], repeats: int, version: ModelVersion) -> str | None:
    """Returns a note when the renderer could not be benchmarked."""
    try:
        from models.renderer import IMTRenderer, RendererConfig
    except ImportError as exc:
        return f"models.renderer not importable ({exc}); renderer not benchmarked"
    renderer = IMTRenderer(RendererConfig.for_version(version)).eval()
    try:
        load_recipe(renderer, version, "renderer_manifest.json")
    except RuntimeError as exc:
        return f"{version.name} renderer recipe weights do not load strictly ({exc})"
    golden = np.load(golden_version_dir(GOLDEN, version) / "renderer_golden.npz")
    source = torch.from_numpy(golden["source"])
    driving = torch.from_numpy(golden["driving"])

    def encode() -> object:
        return renderer.precompute_source(renderer.encode_source(source))

    bench(results, version, "avatar_encoding", encode, repeats=repeats)
    for batch in (1, 4):
        frames = driving.expand(batch, -1, -1, -1).contiguous()
        bench(
            results,
            version,
            f"motion_encoding_b{batch}",
            lambda f=frames: renderer.encode_motion(f),
            repeats=repeats,
            batch=batch,
            frames=batch,
        )
    with torch.no_grad():
        cache = renderer.precompute_source(renderer.encode_source(source))
    g = torch.Generator().manual_seed(0)
    for batch in (1, 4):
        motion = torch.randn(batch, 32, generator=g)
        bench(
            results,
            version,
            f"renderer_render_b{batch}",
            lambda m=motion: renderer.render_precomputed(m, cache),
            repeats=repeats,
            batch=batch,
            frames=batch,
        )
    return None


def side_by_side(results: list[Result]) -> list[str]:
    """One row per stage, one column per version: per-frame ms (else call ms), fastest run."""
    versions = list(dict.fromkeys(r.version for r in results))
    stages = list(dict.fromkeys(r.stage for r in results))
    by_key = {(r.version, r.stage): r for r in results}
    lines = [
        "| stage | " + " | ".join(f"{v} ms" for v in versions) + " |",
        "|---|" + "---:|" * len(versions),
    ]
    for stage in stages:
        cells = []
        for v in versions:
            r = by_key.get((v, stage))
            value = None if r is None else (r.per_frame_ms or r.min_ms)
            cells.append("" if value is None else f"{value:.1f}")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return lines


def markdown(results: list[Result], meta: dict[str, Any]) -> str:
    lines = [
        "# PyTorch eager CPU benchmark",
        "",
        f"torch {meta['torch']}, {meta['threads']} threads, {meta['machine']}; "
        f"float32 matmul peak {meta['matmul_peak_gflops']:.1f} GFLOP/s (2048x2048), "
        f"{meta['repeats']} runs after one warm-up; GFLOP/s and per-frame times from the "
        "fastest run (the machine is shared). Recipe weights.",
        "",
        "Side by side (per frame for the per-frame stages, else per call; fastest run):",
        "",
        *side_by_side(results),
        "",
        "| version | stage | batch | min ms | median ms | per frame ms | GFLOP | GFLOP/s "
        "| % of peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        per_frame = f"{r.per_frame_ms:.1f}" if r.per_frame_ms is not None else ""
        lines.append(
            f"| {r.version} | {r.stage} | {r.batch} | {r.min_ms:.1f} | {r.median_ms:.1f} "
            f"| {per_frame} "
            f"| {r.gflop:.2f} "
            f"| {r.gflops_achieved:.1f} | {100 * r.peak_fraction:.0f} |"
        )
    lines += ["", f"Real-time budget at 25 fps: {FRAME_BUDGET_MS:.0f} ms per frame."]
    lines += [f"- {n}" for n in meta["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--skip-renderer", action="store_true")
    parser.add_argument("--skip-generator", action="store_true")
    parser.add_argument("--versions", default=",".join(VERSIONS), help="e.g. v1,v2 or v2")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)

    load_before = os.getloadavg()[0]
    peak_before = matmul_peak_gflops(args.repeats)
    print(f"float32 matmul peak: {peak_before:.1f} GFLOP/s", flush=True)
    results: list[Result] = []
    notes: list[str] = []
    versions = [VERSIONS[name] for name in args.versions.split(",")]
    for version in versions:
        if args.skip_generator:
            notes.append(f"{version.name} generator skipped (--skip-generator)")
        else:
            bench_generator(results, args.repeats, version)
        if args.skip_renderer:
            notes.append(f"{version.name} renderer skipped (--skip-renderer)")
        else:
            note = bench_renderer(results, args.repeats, version)
            if note:
                notes.append(note)
    peak_after = matmul_peak_gflops(args.repeats)
    peak = max(PEAKS)
    for r in results:
        r.peak_fraction = r.gflops_achieved / peak
    notes.append(
        f"matmul peak measured {len(PEAKS)} times (before every stage): start "
        f"{peak_before:.1f}, end {peak_after:.1f}, min {min(PEAKS):.1f}, max {peak:.1f} GFLOP/s; "
        "the max is the reference (a big spread means the machine was busy)"
    )
    notes.append(
        f"1-minute load average at start {load_before:.1f}, at end {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs; above the CPU count the timings are inflated (other processes), "
        "and with 2 threads OpenMP barriers make small ops much slower; try --threads 1"
    )
    notes.append(
        "sampler: nfe 10 = 9 Euler velocity evaluations, each a batch-2 forward (CFG); "
        "FLOPs count matmul/conv/attention only (FlopCounterMode), not elementwise ops"
    )

    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "matmul_peak_gflops": peak,
        "matmul_peaks_gflops": PEAKS,
        "repeats": args.repeats,
        "frame_budget_ms": FRAME_BUDGET_MS,
        "notes": notes,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "results": [asdict(r) for r in results]}
    (args.out / "pytorch_eager.json").write_text(json.dumps(payload, indent=2) + "\n")
    md = markdown(results, meta)
    (args.out / "pytorch_eager.md").write_text(md)
    print()
    print(md)


if __name__ == "__main__":
    main()
