"""int8 with the renderer's motion stage left in f32 (full-size recipe graphs): how far plain
NNCF post-training quantization lands from fp32, and how fast it runs against ONNX Runtime fp32.

The motion stage (`runtime.model.compile.quantize.MOTION_STAGE`: everything outside
/frame_decoder/, whose top-1 picks move whole patches when they flip) is NNCF's ignored scope;
two variants quantize the rest: the synthesis network's convolutions only, and its convolutions
and MatMuls. No accuracy control (that is `--precision int8`'s job, minutes to an hour at full
size): this measures where it starts. Calibration: the golden avatar with 8 motion latents
drawn around the golden ones (sigma 0.3); the error is measured on the golden latents, so it
is if anything optimistic. Timing: batch 1, OpenVINO with f32 inference precision (the int8
layers run int8), interleaved with ONNX Runtime fp32 in the same run.

    python tests/bench/bench_int8_scope.py --version v2   # results/int8_scope.{md,json}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runtime.model import contract  # noqa: E402
from runtime.model.compile.quantize import MOTION_STAGE  # noqa: E402
from runtime.model.execution.backends import TOLERANCE  # noqa: E402
from runtime.model.versions import VERSIONS  # noqa: E402
from tests.support.data import GOLDEN  # noqa: E402

VARIANTS = {"convolutions": ["MatMul", "Softmax"], "convolutions + MatMuls": []}
"""Variant -> op types NNCF also leaves in f32 (beside the motion stage)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--version", default="v2", choices=sorted(VERSIONS))
    parser.add_argument("--graphs", type=Path, help="compiled graphs (default: bench_backends')")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)

    import nncf
    import onnxruntime as ort
    import openvino as ov

    from models.recipe import golden_version_dir
    from tests.bench.bench_backends import DEFAULT_WORK, interleaved, prepare

    os.environ.setdefault("IMTALKER_CACHE_DIR", str(DEFAULT_WORK / "cache"))
    graphs = args.graphs or prepare(DEFAULT_WORK, args.version)
    golden = dict(
        np.load(golden_version_dir(GOLDEN, VERSIONS[args.version]) / "renderer_golden.npz")
    )
    cpu = ["CPUExecutionProvider"]
    encoder = ort.InferenceSession(str(graphs / contract.AVATAR_ENCODER.filename), providers=cpu)
    encoded = encoder.run(None, {"source": golden["source"]})
    avatar = dict(zip([o.name for o in encoder.get_outputs()], encoded, strict=True))
    del encoder
    reference = ort.InferenceSession(str(graphs / contract.RENDERER.filename), providers=cpu)
    names = [i.name for i in reference.get_inputs()]

    def feeds(motion: np.ndarray) -> dict[str, np.ndarray]:
        return {n: motion[None].astype(np.float32) if n == "motion" else avatar[n] for n in names}

    latents = golden["motion_latents"]
    fp32 = np.concatenate([reference.run(["frames"], feeds(m))[0] for m in latents])
    rng = np.random.default_rng(0)
    calibration = [
        feeds(latents[i % len(latents)] + 0.3 * rng.standard_normal(latents.shape[1]))
        for i in range(8)
    ]
    core = ov.Core()
    rows: list[dict[str, Any]] = []
    runs: dict[str, Callable[[], object]] = {
        "onnxruntime fp32": lambda: reference.run(["frames"], feeds(latents[0]))
    }
    for variant, types in VARIANTS.items():
        model = core.read_model(str(graphs / contract.RENDERER.filename))
        model.reshape(
            {n: [1, contract.MOTION_DIM] if n == "motion" else list(avatar[n].shape) for n in names}
        )
        started = time.perf_counter()
        quantized = nncf.quantize(
            model,
            nncf.Dataset(calibration),
            preset=nncf.QuantizationPreset.MIXED,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration),
            ignored_scope=nncf.IgnoredScope(patterns=[MOTION_STAGE], types=types, validate=False),
        )
        seconds = time.perf_counter() - started
        compiled = core.compile_model(
            quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1}
        )
        request = compiled.create_infer_request()
        frames = np.concatenate(
            [request.infer(feeds(m))[compiled.output(0)].copy() for m in latents]
        )
        d = np.abs(frames.astype(np.float64) - fp32)
        mean, p99 = float(d.mean()), float(np.percentile(d, 99))
        rows.append(
            {
                "variant": variant,
                "quantize_s": seconds,
                "frames_mean_abs_diff": mean,
                "frames_p99_abs_diff": p99,
                "times_mean_limit": mean / TOLERANCE.frames_mean,
                "within_tolerance": TOLERANCE.frames_ok(mean, p99),
            }
        )
        runs[f"int8 ({variant})"] = lambda r=request: r.infer(feeds(latents[0]))
    ms = {k: 1000 * statistics.median(v) for k, v in interleaved(runs, args.repeats).items()}
    base = ms["onnxruntime fp32"]
    for row in rows:
        row["ms_per_frame"] = ms[f"int8 ({row['variant']})"]
        row["x_vs_onnxruntime_fp32"] = base / row["ms_per_frame"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"# int8 with the motion stage in f32 ({args.version}, full-size recipe graphs)",
        "",
        f"Plain NNCF PTQ (no accuracy control), 8 calibration inputs, golden latents; batch 1, "
        f"load average {load}; ONNX Runtime fp32 {base:.0f} ms/frame in the same run. "
        f"Tolerance: mean |d| <= {TOLERANCE.frames_mean}, p99 <= {TOLERANCE.frames_p99}.",
        "",
        "| int8 layers | frames mean / p99 | x mean limit | within | ms/frame | x ORT fp32 |",
        "|---|---|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['frames_mean_abs_diff']:.2e} / {r['frames_p99_abs_diff']:.2e}"
            f" | {r['times_mean_limit']:.1f} | {'yes' if r['within_tolerance'] else 'no'} | "
            f"{r['ms_per_frame']:.0f} | {r['x_vs_onnxruntime_fp32']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8_scope.md").write_text(text)
    payload = {"version": args.version, "load": load, "onnxruntime_ms": base, "rows": rows}
    (args.out / "int8_scope.json").write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
