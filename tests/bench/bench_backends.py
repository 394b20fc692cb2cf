"""ONNX Runtime against OpenVINO on this CPU, per model version (full-size recipe graphs): the
renderer per frame, the audio encoder and the sampler per hop, the whole CPU hop, memory per
frame, and each candidate's error against ONNX Runtime fp32 on the golden inputs (issue 22).

    .venv/bin/python tests/bench/bench_backends.py [--work DIR] [--graphs-v1 DIR]
        [--graphs-v2 DIR] [--repeats N] [--threads N] [--out DIR]

Candidates: ONNX Runtime CPU fp32 (the project's sessions, the reference), OpenVINO CPU fp32 and,
where the CPU runs it natively (AVX-512 BF16/AMX), OpenVINO CPU bf16. Graphs are built into
--work as bench_versions.py builds them unless given. Every stage runs through the app's own
code (`DeviceRenderer`, `window_features`, `sample_chunk` on `DeviceGraph`); the candidates are
interleaved (one call of each per round, order alternating, after a warm-up), and the ratios
are of the medians in the same run, because the machine is shared. A hop is what the live
engine computes on a CPU: the audio encoder window, one 50-frame sampler chunk (nfe 10) and
hop x the renderer at batch 1 (hop 5).

Accuracy: frames from the golden source and motion (renderer_golden.npz) and the sampler's
motion from the golden conditions (generator_golden.npz), against ONNX Runtime fp32; within
tolerance means frames mean |d| <= 2e-3 and p99 <= 2e-2, motion rel <= 1e-2
(`runtime.model.execution.backends.TOLERANCE`). Memory per frame: the rise of peak resident
memory over one batch-1 render (Linux; each candidate after a fresh peak window).
Writes results/backends.json and results/backends.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from models.recipe import golden_version_dir  # noqa: E402
from models.recipe_checkpoints import write_recipe_checkpoints  # noqa: E402
from runtime.engine.backend_trials import options_for, psnr_db  # noqa: E402
from runtime.engine.features import encoder_from_session, window_features  # noqa: E402
from runtime.engine.motion_sampler import (  # noqa: E402
    ChunkContext,
    ProjectedConditions,
    RawConditions,
    conditioner_from_session,
    fixed_noise,
    sample_chunk,
    sample_motion,
    velocity_from_session,
)
from runtime.model import contract  # noqa: E402
from runtime.model.compile import cache as compiled_cache  # noqa: E402
from runtime.model.compile.weights import WeightsFolder  # noqa: E402
from runtime.model.execution.backends import (  # noqa: E402
    REFERENCE,
    TOLERANCE,
    BackendChoice,
    candidates,
)
from runtime.model.execution.device_graphs import DeviceGraph, DeviceRenderer  # noqa: E402
from runtime.model.execution.model_set import open_model_set  # noqa: E402
from runtime.model.execution.openvino_sessions import bf16_supported  # noqa: E402
from runtime.model.execution.sessions import SessionOptions  # noqa: E402
from runtime.model.versions import VERSIONS  # noqa: E402
from tests.support.data import GOLDEN  # noqa: E402
from tests.support.golden import rel_err  # noqa: E402

DEFAULT_WORK = ROOT / "tests" / "output" / "bench_backends"
HOP = 5
CONTEXT_S = 2.0
LOOKAHEAD = 2
NFE = 10


def prepare(work: Path, version: str) -> Path:
    weights = work / f"weights_{version}"
    if not (weights / "generator.ckpt").is_file():
        print(f"writing {version} recipe checkpoints into {weights}", flush=True)
        write_recipe_checkpoints(weights, golden_dir=GOLDEN, extras=True, version=version)
    print(f"compiling {version} (cached after the first run)", flush=True)
    return compiled_cache.convert(WeightsFolder(weights), root=work / f"compiled_{version}")


def _status(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def compile_renderer(candidate: Candidate) -> None:
    """Compile the renderer for batch 1 before memory is measured: OpenVINO compiles (and
    repacks the weights) at the first run of a shape, which is loading, not working memory."""
    session = candidate.models["renderer"]
    compiled_for = getattr(session, "compiled_for", None)
    if compiled_for is not None:
        compiled_for(candidate.render_shapes)


def resident_mb() -> float | None:
    """Resident memory (Linux), after handing freed heap back to the system."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return _status("VmRSS:")


def working_mb(render: Callable[[], object]) -> float | None:
    """Peak resident memory's rise over one call (Linux)."""
    before = resident_mb()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    render()
    peak = _status("VmHWM:")
    return None if before is None or peak is None else max(0.0, peak - before)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    names = list(fns)
    for name in names:
        fns[name]()  # warm-up
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


class Candidate:
    """One backend's sessions for one version, bound as the live engine binds them."""

    def __init__(self, graphs: Path, options: SessionOptions, version: str) -> None:
        # Not the motion encoder (unused here): three candidates' graphs are open at once.
        used = ["avatar_encoder", "renderer", "velocity", "audio_encoder", "conditioner"]
        self.models = open_model_set(graphs, options=options, names=used)
        golden_dir = golden_version_dir(GOLDEN, VERSIONS[version])
        self.golden_r = dict(np.load(golden_dir / "renderer_golden.npz"))
        self.golden_g = dict(np.load(golden_dir / "generator_golden.npz"))
        encoded = self.models["avatar_encoder"].run({"source": self.golden_r["source"]})
        avatar = {t.name: encoded[t.name] for t in contract.AVATAR_TENSORS}
        self.renderer = DeviceRenderer(self.models["renderer"])
        self.renderer.use(avatar)
        self.render_shapes = {"motion": (1, contract.MOTION_DIM)} | {
            name: tuple(np.shape(a)) for name, a in avatar.items()
        }
        self.velocity = velocity_from_session(DeviceGraph(self.models["velocity"]))
        self.encode = encoder_from_session(self.models["audio_encoder"])
        rng = np.random.default_rng(0)
        frames = round(CONTEXT_S * contract.FPS) + HOP + LOOKAHEAD
        self.window = (rng.standard_normal(frames * contract.SAMPLES_PER_FRAME) * 0.1).astype(
            np.float32
        )
        self.ref = rng.standard_normal(contract.MOTION_DIM).astype(np.float32)

    def render(self) -> object:
        return self.renderer.render(self.golden_r["motion_latents"][:1])

    def audio(self) -> object:
        return window_features(self.encode, self.window, last_frames=HOP + LOOKAHEAD)

    def sampler(self) -> object:
        return sample_chunk(
            self.velocity,
            noise=fixed_noise(25)(0),
            ref_motion=self.ref,
            conditions=ProjectedConditions.zeros(contract.CLIP_FRAMES),
            context=ChunkContext.zeros(),
            cfg_scale=3.0,
            nfe=NFE,
        )

    def golden_frames(self) -> np.ndarray:
        return self.renderer.render(self.golden_r["motion_latents"]).copy()

    def golden_motion(self) -> np.ndarray:
        g = self.golden_g
        return sample_motion(
            self.velocity,
            conditioner_from_session(self.models["conditioner"]),
            audio_features=g["audio_features"][0],
            ref_motion=g["ref_motion"][0],
            raw_conditions=RawConditions(gaze=g["gaze"], pose=g["pose"], cam=g["cam"]),
            cfg_scale=3.0,
            nfe=NFE,
            noise=fixed_noise(25),
        )


def bench_version(
    version: str, graphs: Path, choices: Sequence[BackendChoice], base: SessionOptions,
    repeats: int,
) -> list[dict[str, Any]]:  # fmt: skip
    print(f"{version}: opening {len(choices)} candidates", flush=True)
    cands: dict[str, Candidate] = {}
    memory: dict[str, float | None] = {}
    footprint: dict[str, float | None] = {}
    for choice in choices:
        # One candidate at a time: what opening it, compiling the renderer and one render left
        # resident (the whole footprint), and the peak rise over that render after the compile
        # (the working memory of a frame, what ONNX Runtime's arena grows by at its first run).
        before = resident_mb()
        cand = cands[choice.label] = Candidate(graphs, options_for(base, choice), version)
        compile_renderer(cand)
        memory[choice.label] = working_mb(cand.render)
        after = resident_mb()
        footprint[choice.label] = None if before is None or after is None else after - before
    frames = {label: c.golden_frames() for label, c in cands.items()}
    motion = {label: c.golden_motion() for label, c in cands.items()}
    times: dict[str, dict[str, list[float]]] = {}
    for stage in ("render", "audio", "sampler"):
        print(f"{version}: timing {stage}", flush=True)
        fns = {label: getattr(c, stage) for label, c in cands.items()}
        times[stage] = interleaved(fns, repeats)
    ref = REFERENCE.label
    med = {s: {k: 1000 * statistics.median(v) for k, v in t.items()} for s, t in times.items()}
    hop = {k: med["audio"][k] + med["sampler"][k] + HOP * med["render"][k] for k in cands}
    rows = []
    for label, c in cands.items():
        d = np.abs(frames[label].astype(np.float64) - frames[ref])
        mean, p99 = float(d.mean()), float(np.percentile(d, 99))
        rel = rel_err(motion[label], motion[ref])
        psnr = psnr_db(frames[label], frames[ref])
        rows.append(
            {
                "version": version,
                "candidate": label,
                "in_use": c.models.summary(),
                "renderer_ms_per_frame": med["render"][label],
                "renderer_ms_runs": [1000 * t for t in times["render"][label]],
                "audio_ms_per_hop": med["audio"][label],
                "sampler_ms_per_hop": med["sampler"][label],
                "hop_ms": hop[label],
                "renderer_x": med["render"][ref] / med["render"][label],
                "hop_x": hop[ref] / hop[label],
                "working_mb_per_frame": memory[label],
                "footprint_mb": footprint[label],
                "frames_mean_abs_diff": mean,
                "frames_p99_abs_diff": p99,
                "frames_psnr_db": None if np.isinf(psnr) else psnr,
                "motion_rel_diff": rel,
                "within_tolerance": TOLERANCE.frames_ok(mean, p99) and TOLERANCE.motion_ok(rel),
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# ONNX Runtime vs OpenVINO on the CPU (full-size recipe graphs)",
        "",
        f"{meta['cpu']} (flags: {meta['flags']}), {meta['threads']} threads, load average "
        f"{meta['load']} at the start, {meta['repeats']} interleaved rounds; ratios are of "
        f"medians in the same run against ONNX Runtime CPU fp32. Hop = audio encoder + sampler "
        f"(nfe {NFE}) + {HOP} x renderer at batch 1. MB/frame: the peak resident memory's rise "
        f"over the first batch-1 render once the renderer is compiled (the working memory of a "
        f"frame); footprint: what opening the candidate's graphs, compiling and that render "
        f"left resident.",
        "",
        "| version | candidate | renderer ms/frame | x | audio ms/hop | sampler ms/hop | "
        "hop ms | x | MB/frame | footprint MB | frames mean / p99 | PSNR dB | motion rel | "
        "within |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        mb = "-" if r["working_mb_per_frame"] is None else f"{r['working_mb_per_frame']:.0f}"
        foot = r.get("footprint_mb")
        mb += " | " + ("-" if foot is None else f"{foot:.0f}")
        psnr = "exact" if r["frames_psnr_db"] is None else f"{r['frames_psnr_db']:.1f}"
        lines.append(
            f"| {r['version']} | {r['candidate']} | {r['renderer_ms_per_frame']:.0f} | "
            f"{r['renderer_x']:.2f} | {r['audio_ms_per_hop']:.0f} | "
            f"{r['sampler_ms_per_hop']:.0f} | {r['hop_ms']:.0f} | {r['hop_x']:.2f} | {mb} | "
            f"{r['frames_mean_abs_diff']:.1e} / {r['frames_p99_abs_diff']:.1e} | {psnr} | "
            f"{r['motion_rel_diff']:.1e} | {'yes' if r['within_tolerance'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--graphs-v1", type=Path)
    parser.add_argument("--graphs-v2", type=Path)
    parser.add_argument("--versions", nargs="+", default=["v1", "v2"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: one per usable core")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    os.environ.setdefault("IMTALKER_CACHE_DIR", str(args.work / "cache"))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    bf16 = bf16_supported()
    choices = candidates(openvino=True, openvino_devices=("CPU",), bf16=bf16)
    base = SessionOptions(intra_op_threads=args.threads)
    rows: list[dict[str, Any]] = []
    for version in args.versions:
        given = getattr(args, f"graphs_{version}")
        graphs = given if given is not None else prepare(args.work, version)
        rows += bench_version(version, graphs, choices, base, args.repeats)
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    wanted = ("avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
    # Each version usually runs in a process of its own (two full-size sets at once do not fit
    # in 24 GB): rows of the versions not run now are kept from the results file.
    kept: list[dict[str, Any]] = []
    loads: dict[str, str] = {}
    previous = args.out / "backends.json"
    if previous.exists():
        old = json.loads(previous.read_text())
        kept = [r for r in old.get("rows", []) if r["version"] not in args.versions]
        loads = {
            v: text
            for v, text in old.get("meta", {}).get("load_by_version", {}).items()
            if any(r["version"] == v for r in kept)
        }
    loads.update({v: load for v in args.versions})
    rows = sorted(kept + rows, key=lambda r: str(r["version"]))
    meta = {
        "cpu": cpu_name(),
        "flags": " ".join(f for f in wanted if f in flags) or "unknown",
        "threads": rows[0]["in_use"].split(", ")[-1].split()[0] if rows else "",
        "load": " / ".join(f"{text} ({v})" for v, text in sorted(loads.items())),
        "load_by_version": loads,
        "repeats": args.repeats,
        "bf16_native": bf16,
    }
    text = markdown(rows, meta)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backends.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (args.out / "backends.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
