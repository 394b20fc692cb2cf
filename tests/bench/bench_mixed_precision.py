"""Which renderer stages must keep fp32 when OpenVINO runs the rest in bf16: the measured
sensitivity behind `runtime.model.execution.precision_plans.RENDERER_FP32` (issue 22).

    .venv/bin/python tests/bench/bench_mixed_precision.py [--work DIR] [--graphs-v1 DIR]
        [--graphs-v2 DIR] [--out DIR]

Per model version (full-size recipe graphs, built into --work as bench_versions.py builds them
unless given), on the golden source and motion latents (renderer_golden.npz), frames against
ONNX Runtime fp32: the whole renderer in bf16; everything but the first stage in bf16; then
each later stage put back to fp32 on top of that, one at a time; then the plan the app uses.
The stages and the chain are the app's own (`runtime.model.execution.openvino_stages`,
`precision_plans.renderer_stages`). Within tolerance: frames mean |d| <= 2e-3 and p99 <= 2e-2
(`TOLERANCE`). Timing is not measured here (bench_backends.py times bf16-mixed against the
other candidates). Writes results/mixed_precision.json and results/mixed_precision.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnxruntime as ort  # noqa: E402
import openvino as ov  # noqa: E402
from bench_versions import prepare  # noqa: E402

from models.recipe import golden_version_dir  # noqa: E402
from runtime.engine.backend_trials import psnr_db  # noqa: E402
from runtime.model import contract  # noqa: E402
from runtime.model.execution.backends import TOLERANCE  # noqa: E402
from runtime.model.execution.openvino_stages import StagedCompiled, StagePlan  # noqa: E402
from runtime.model.execution.precision_plans import renderer_fp32, renderer_stages  # noqa: E402
from tests.support.data import GOLDEN  # noqa: E402

DEFAULT_WORK = ROOT / "tests" / "output" / "bench_versions"


def golden_feeds(graphs: Path, version: str) -> list[dict[str, np.ndarray]]:
    """Renderer inputs for each golden motion latent: the avatar tensors of the golden source
    (through the exported avatar encoder) and one latent at batch 1."""
    golden = np.load(golden_version_dir(GOLDEN, version) / "renderer_golden.npz")
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    encoder = ort.InferenceSession(
        str(graphs / "avatar_encoder.onnx"), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in encoder.get_outputs()]
    tensors = dict(zip(names, encoder.run(None, {"source": golden["source"]}), strict=True))
    latents = golden["motion_latents"]
    return [
        {"motion": latents[i : i + 1], **{s.name: tensors[s.name] for s in contract.AVATAR_TENSORS}}
        for i in range(latents.shape[0])
    ]


def measure(version: str, graphs: Path) -> list[dict[str, Any]]:
    feeds = golden_feeds(graphs, version)
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    reference = ort.InferenceSession(
        str(graphs / "renderer.onnx"), options, providers=["CPUExecutionProvider"]
    )
    expected = [reference.run(["frames"], f)[0] for f in feeds]
    core = ov.Core()
    stages = renderer_stages()
    first = stages[0][0]
    compiled: dict[tuple[str, str], ov.CompiledModel] = {}

    def run(fp32: frozenset[str]) -> dict[str, Any]:
        model = core.read_model(str(graphs / "renderer.onnx"))
        model.reshape({k: ov.PartialShape(list(v.shape)) for k, v in feeds[0].items()})

        def compile_stage(part: ov.Model, hint: str) -> ov.CompiledModel:
            key = (part.get_friendly_name(), hint)
            if key not in compiled:  # each stage compiles once per precision
                config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
                compiled[key] = core.compile_model(part, "CPU", config)
            return compiled[key]

        # Stages kept apart (not merged as the session does): their times are read one by one.
        request = StagedCompiled(model, StagePlan(stages=stages, fp32=fp32), compile_stage,
                                 merge=False).create_infer_request()  # fmt: skip
        frames = np.concatenate([request.infer(f)["frames"] for f in feeds])
        ref = np.concatenate(expected)
        d = np.abs(frames.astype(np.float64) - ref)
        mean, p99 = float(d.mean()), float(np.percentile(d, 99))
        return {
            "version": version,
            "fp32": sorted(fp32),
            "mean_abs_diff": mean,
            "p99_abs_diff": p99,
            "psnr_db": psnr_db(frames, ref),
            "within_tolerance": TOLERANCE.frames_ok(mean, p99),
        }

    rows = [run(frozenset()), run(frozenset({first}))]
    for name, _ in stages[1:]:
        rows.append(run(frozenset({first, name})))
        print(f"{version}: {first}+{name}: {rows[-1]['mean_abs_diff']:.2e}", flush=True)
    chosen = run(renderer_fp32(version))
    chosen["plan"] = True
    rows.append(chosen)
    rows.append({"version": version, "stage_ms": stage_times(compiled)})
    return rows


def stage_times(compiled: dict[tuple[str, str], ov.CompiledModel]) -> dict[str, dict[str, float]]:
    """Per stage, the median of 5 runs in f32 and in bf16 (alternating, same inputs)."""
    out: dict[str, dict[str, float]] = {}
    requests = {key: c.create_infer_request() for key, c in compiled.items()}
    rng = np.random.default_rng(0)
    for request in requests.values():
        for port in request.get_compiled_model().inputs:
            shape = list(port.get_shape())
            request.set_tensor(port, ov.Tensor(rng.standard_normal(shape).astype(np.float32)))
        request.infer()  # first run: the plugin's lazy set-up
    times: dict[tuple[str, str], list[float]] = {key: [] for key in requests}
    for _ in range(5):
        for key, request in requests.items():
            started = time.perf_counter()
            request.infer()
            times[key].append((time.perf_counter() - started) * 1000)
    for (name, hint), values in times.items():
        out.setdefault(name.rsplit(".", 1)[-1], {})[hint] = statistics.median(values)
    return out


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# bf16-mixed: which renderer stages keep fp32 (full-size recipe graphs)",
        "",
        f"{meta['cpu']}, OpenVINO {meta['openvino']}; golden source and motion latents of each "
        "version; frames against ONNX Runtime fp32. Stages: `motion` = everything before the "
        "synthesis network (motion decoding, cross-attention, top-1 picks); `up<i>` = the "
        "up-convolution and fusing block of pyramid level i (up0 ... up4 make the 16x16, "
        "32x32, 64x64, 128x128 and 256x256 maps); `at<i>` = its self-attention; `head` = the "
        "RGB head.",
        "",
        "| version | fp32 stages (rest bf16) | frames mean / p99 | PSNR dB | within |",
        "|---|---|---|---:|---|",
    ]
    for r in rows:
        if "stage_ms" in r:
            continue
        kept = ", ".join(r["fp32"]) or "none (all bf16)"
        if r.get("plan"):
            kept = f"**{kept} (the plan)**"
        lines.append(
            f"| {r['version']} | {kept} | {r['mean_abs_diff']:.2e} / {r['p99_abs_diff']:.2e} | "
            f"{r['psnr_db']:.1f} | {'yes' if r['within_tolerance'] else 'no'} |"
        )
    for r in rows:
        if "stage_ms" not in r:
            continue
        lines += [
            "",
            f"Cost per stage, {r['version']} (ms per frame at batch 1, median of 5, f32 and bf16 "
            "alternating in the same run; what keeping a stage in fp32 costs is the difference):",
            "",
            "| stage | f32 ms | bf16 ms | saved by bf16 |",
            "|---|---:|---:|---:|",
        ]
        total = {"f32": 0.0, "bf16": 0.0}
        for stage, ms in r["stage_ms"].items():
            if "f32" in ms and "bf16" in ms:
                total["f32"] += ms["f32"]
                total["bf16"] += ms["bf16"]
                lines.append(f"| {stage} | {ms['f32']:.0f} | {ms['bf16']:.0f} | "
                             f"{ms['f32'] - ms['bf16']:.0f} |")  # fmt: skip
        lines.append(f"| all | {total['f32']:.0f} | {total['bf16']:.0f} | "
                     f"{total['f32'] - total['bf16']:.0f} |")  # fmt: skip
    lines += [
        "",
        "Errors do not add up stage by stage: bf16 rounding in one stage moves the inputs of the "
        "next, and the first stage's top-1 picks turn small differences into whole moved "
        "patches, so the plan is checked as a whole (last row per version), and bench checks it "
        "again on the user's own avatar before `--backend auto` may take it.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--graphs-v1", type=Path)
    parser.add_argument("--graphs-v2", type=Path)
    parser.add_argument("--versions", nargs="+", default=["v1", "v2"])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for version in args.versions:
        given = getattr(args, f"graphs_{version}")
        graphs = given if given is not None else prepare(args.work, version)
        rows += measure(version, graphs)
    from bench_backends import cpu_name

    meta = {"cpu": cpu_name(), "openvino": ov.get_version()}
    text = markdown(rows, meta)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mixed_precision.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2)
    )
    (args.out / "mixed_precision.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
