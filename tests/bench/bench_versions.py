"""IMTalker v1 and v2 side by side through ONNX Runtime (CPU, recipe weights): what the 512-px
encoders of v2 cost.

    .venv/bin/python tests/bench/bench_versions.py [--work DIR] [--repeats N] [--threads N]
        [--out DIR]

For each version, recipe checkpoints (`models.recipe_checkpoints --version`) and their graphs
(compiled as the app compiles them: `runtime.model.compile.cache` running the exporter in a
child process, ~1-3 min each) are built into --work (default tests/output/bench_versions/)
unless already there. Stages, each through the app's own session code and input preparation:

- avatar encoding, per avatar: `prepare_avatar` at the version's size + the `avatar_encoder`
  graph (what switching avatars costs);
- motion encoding, per driving frame: the `motion_encoder` graph at batch 1 and 4 on frames
  resized to the version's size (video-driven render, webcam mode);
- renderer, per frame, batch 1 (`DeviceRenderer`, as the app renders; the same 512x512 output
  for both versions).

The machine is shared, so the versions are interleaved (one call of each per round, order
alternating, after one warm-up each); the table gives the fastest and the median run and the
v2/v1 ratio of the fastest. Prints a table and writes results/versions.json and
results/versions.md. (bench_onnx.py compares ORT with PyTorch for one version.)
"""

from __future__ import annotations

import argparse
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

from models.recipe_checkpoints import write_recipe_checkpoints  # noqa: E402
from runtime.engine.live.avatar import encode_avatar  # noqa: E402
from runtime.engine.offline import image_to_tensor, resize_driving_frame  # noqa: E402
from runtime.media.face_crop import prepare_avatar  # noqa: E402
from runtime.media.video_file import VideoReader  # noqa: E402
from runtime.model.compile import cache as compiled_cache  # noqa: E402
from runtime.model.compile.weights import WeightsFolder  # noqa: E402
from runtime.model.execution.device_graphs import DeviceRenderer  # noqa: E402
from runtime.model.execution.model_set import open_model_set  # noqa: E402
from runtime.model.execution.sessions import ModelSet, SessionOptions  # noqa: E402
from tests.support.data import FIXTURES, GOLDEN  # noqa: E402

DEFAULT_WORK = ROOT / "tests" / "output" / "bench_versions"
VERSIONS = ("v1", "v2")


def prepare(work: Path, version: str) -> Path:
    """The compiled graphs of `version`'s recipe checkpoints (built once into `work`)."""
    weights = work / f"weights_{version}"
    if not (weights / "generator.ckpt").is_file():
        print(f"writing {version} recipe checkpoints into {weights}", flush=True)
        write_recipe_checkpoints(weights, golden_dir=GOLDEN, extras=True, version=version)
    print(f"compiling {version} (cached after the first run)", flush=True)
    return compiled_cache.convert(WeightsFolder(weights), root=work / "compiled")


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, rounds interleaved with alternating order."""
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


def driving_frames(count: int) -> list[np.ndarray]:
    with VideoReader(FIXTURES / "driving_1.mp4") as reader:
        return [f for _, f in zip(range(count), reader, strict=False)]


def stage_fns(
    models: dict[str, ModelSet], photo: Path, frames: list[np.ndarray]
) -> dict[str, dict[str, Callable[[], object]]]:
    """stage -> version -> one call (the per-item divisor is in `PER`)."""
    out: dict[str, dict[str, Callable[[], object]]] = {
        "avatar encoding": {},
        "motion encoding b1": {},
        "motion encoding b4": {},
        "renderer b1": {},
    }
    for version, m in models.items():
        size = m.source_size
        encoder = m["avatar_encoder"]
        out["avatar encoding"][version] = lambda s=size, e=encoder: encode_avatar(
            e, prepare_avatar(photo, size=s).image, size=s
        )
        crops = np.concatenate(
            [image_to_tensor(resize_driving_frame(f, size), size) for f in frames]
        )
        motion = m["motion_encoder"]
        out["motion encoding b1"][version] = lambda c=crops, g=motion: g.run({"image": c[:1]})
        out["motion encoding b4"][version] = lambda c=crops, g=motion: g.run({"image": c[:4]})
        avatar = encode_avatar(encoder, prepare_avatar(photo, size=size).image, size=size)
        bound = DeviceRenderer(m["renderer"])
        bound.use(avatar.tensors)
        latent = avatar.source_motion[None]
        out["renderer b1"][version] = lambda b=bound, z=latent: b.render(z)
    return out


PER = {"avatar encoding": 1, "motion encoding b1": 1, "motion encoding b4": 4, "renderer b1": 1}
UNIT = {
    "avatar encoding": "ms / avatar",
    "motion encoding b1": "ms / frame",
    "motion encoding b4": "ms / frame",
    "renderer b1": "ms / frame",
}


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# IMTalker v1 vs v2 through ONNX Runtime (CPU, recipe weights)",
        "",
        f"{meta['cpu']}, {meta['threads']} intra-op threads, load average {meta['load']} "
        f"at the start, {meta['repeats']} interleaved rounds.",
        "",
        "| stage | unit | v1 best | v1 median | v2 best | v2 median | v2 / v1 (best) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['stage']} | {r['unit']} | {r['v1_best']:.1f} | {r['v1_median']:.1f} | "
            f"{r['v2_best']:.1f} | {r['v2_median']:.1f} | {r['ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: one per usable core")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("IMTALKER_CACHE_DIR", str(args.work / "cache"))
    options = SessionOptions(providers=("CPUExecutionProvider",), intra_op_threads=args.threads)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    models = {v: open_model_set(prepare(args.work, v), options=options) for v in VERSIONS}
    for version, m in models.items():
        assert m.version.name == version, (version, m.version.name)
    photo = FIXTURES / "source_1.png"
    fns = stage_fns(models, photo, driving_frames(4))
    rows = []
    for stage, by_version in fns.items():
        print(f"timing {stage}", flush=True)
        times = interleaved(dict(by_version), args.repeats)
        per = PER[stage]
        ms = {v: [1000 * t / per for t in ts] for v, ts in times.items()}
        row = {"stage": stage, "unit": UNIT[stage]}
        for v in VERSIONS:
            row[f"{v}_best"] = min(ms[v])
            row[f"{v}_median"] = statistics.median(ms[v])
        row["ratio"] = row["v2_best"] / row["v1_best"]
        rows.append(row)
    threads = models["v1"]["renderer"].intra_op_threads
    meta = {
        "cpu": platform.processor() or platform.machine(),
        "threads": threads,
        "load": load,
        "repeats": args.repeats,
    }
    text = markdown(rows, meta)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "versions.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (args.out / "versions.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
