"""GPU check: the real graphs (or the PyTorch port) on an NVIDIA GPU, timed and checked against
CPU float32. Run by tests/bench/gpu_check.sh; needs no network, no virtual environment and no
tests/data (weights come from the model code's own state-dict shapes with a fixed seed).

    python3 tests/bench/gpu_check.py [--out DIR] [--versions v1,v2] [--budget-s 420]
    python3 tests/bench/gpu_check.py --self-test --out DIR     # CPU, tiny, for CI

With onnxruntime-gpu whose CUDA provider initialises: exports the renderer, velocity and
avatar-encoder graphs (fp32 + the exporter's fp16 variants) from the seeded weights and runs
them through the app's own session code (`runtime.model.execution.device_graphs`): CUDA, CUDA + CUDA
graphs, CUDA fp16, TensorRT (fp16) when compiled in; renderer per frame at batch 1, 2, 5, 8 and
the sampler per hop (nfe 10). Without it but with torch + CUDA: the PyTorch port on the GPU,
renderer at batch 1, 2, 5, 8 in fp32 and fp16/bf16 autocast, with and without CUDA graphs
(torch.compile(mode="reduce-overhead")), sampler per hop; both model versions. Every GPU output
is compared with CPU float32 of the same weights and inputs at the golden tolerances (fp32:
frames mean |d| <= 1e-4, p99 <= 2e-3, motion rel <= 1e-3 after the sampler; fp16/bf16: mean
<= 2e-3, p99 <= 2e-2, motion rel <= 1e-2, no NaN/Inf).

`--self-test` runs the same code on the CPU with a tiny renderer and generator (and the ORT
branch on tiny stub graphs), so tests/test_gpu_check.py keeps it from rotting.

Writes DIR/gpu_<gpu>.json and .md (default tests/bench/results/), naming the GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TOL = {
    "fp32": {"mean": 1e-4, "p99": 2e-3, "motion_rel": 1e-3},
    "fp16": {"mean": 2e-3, "p99": 2e-2, "motion_rel": 1e-2},
}
TOL["bf16"] = TOL["fp16"]
BATCHES = (1, 2, 5, 8)
SEED = 1234


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.skipped: list[str] = []

    def left(self, what: str) -> bool:
        if time.monotonic() < self.end:
            return True
        self.skipped.append(what)
        return False


def timed_ms(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def frame_agreement(got: np.ndarray, ref: np.ndarray, precision: str) -> dict[str, Any]:
    got = np.asarray(got, np.float64)
    d = np.abs(got - np.asarray(ref, np.float64))
    tol = TOL[precision]
    mean, p99 = float(d.mean()), float(np.percentile(d, 99))
    finite = bool(np.isfinite(got).all())
    ok = finite and mean <= tol["mean"] and p99 <= tol["p99"]
    return {"mean": mean, "p99": p99, "finite": finite, "ok": ok}


def motion_agreement(got: np.ndarray, ref: np.ndarray, precision: str) -> dict[str, Any]:
    got = np.asarray(got, np.float64)
    rel = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-12))
    finite = bool(np.isfinite(got).all())
    return {"rel": rel, "finite": finite, "ok": finite and rel <= TOL[precision]["motion_rel"]}


# -- models from the code's own shapes -----------------------------------------------------------


def tiny_configs(version: Any) -> tuple[Any, Any]:
    """A renderer and generator small enough for the CPU self-test (same code paths)."""
    from models.generator import GeneratorConfig
    from models.renderer import RendererConfig

    r = RendererConfig.for_version(version)
    # Four levels from 64 px (the motion decoder's coarsest map is always 8 px); the 16 px
    # level is the cross-attention map that guides the two resampled fine levels.
    renderer = dataclasses.replace(
        r,
        image_size=64 * 2**r.identity_extra_down_blocks,
        spatial_dims=(64, 32, 16, 8),
        feature_dims=(8, 8, 16, 16),
        swin_res_threshold=32,
        motion_encoder_channels=(16, 16, 16, 16, 16),
        motion_encoder_stem=8,
        identity_dim=64,
        motion_const_channels=8,
    )
    generator = dataclasses.replace(GeneratorConfig.for_version(version), hidden_size=64, depth=2)
    return renderer, generator


def seeded_models(version: Any, *, tiny: bool) -> tuple[Any, Any]:
    import torch

    from models.generator import FMGenerator, GeneratorConfig
    from models.renderer import IMTRenderer, RendererConfig

    torch.manual_seed(SEED)
    if tiny:
        rc, gc = tiny_configs(version)
    else:
        rc, gc = RendererConfig.for_version(version), GeneratorConfig.for_version(version)
    return IMTRenderer(rc).eval(), FMGenerator(gc).eval()


# -- the PyTorch port on a device ----------------------------------------------------------------


def torch_branch(
    version: Any,
    device: str,
    *,
    tiny: bool,
    repeats: int,
    budget: Budget,
    compile_too: bool,
    batches: tuple[int, ...] = BATCHES,
) -> list[dict[str, Any]]:
    import torch

    rows: list[dict[str, Any]] = []
    renderer, generator = seeded_models(version, tiny=tiny)
    size = renderer.config.image_size
    g = torch.Generator().manual_seed(SEED)
    source = torch.rand(1, 3, size, size, generator=g)
    motions = {b: torch.randn(b, 32, generator=g) * 0.5 for b in batches}
    with torch.no_grad():
        cache = renderer.precompute_source(renderer.encode_source(source))
        ref_frames = {b: renderer.render_precomputed(motions[b], cache).numpy() for b in batches}
    # Sampler inputs (one chunk, CFG), and its CPU float32 result.
    gcfg = generator.config
    clip = gcfg.clip_frames
    feats = torch.randn(1, clip, gcfg.audio_feature_dim, generator=g) * 0.1
    x0 = torch.randn(1, 1, clip, gcfg.motion_dim, generator=g)  # (chunks, batch, frames, dim)
    ref_x = torch.randn(1, gcfg.motion_dim, generator=g) * 0.5

    def sample(gen: Any, dev: str) -> Any:
        return gen.sample(feats.to(dev), ref_x.to(dev), cfg_scale=3.0, nfe=10, noise=x0.to(dev))

    with torch.no_grad():
        ref_motion = sample(generator, "cpu").numpy()

    on_cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    renderer_d, generator_d = renderer.to(device), generator.to(device)
    cache_d = type(cache)(
        id_latent=cache.id_latent.to(device),
        fine_appearance=tuple(t.to(device) for t in cache.fine_appearance),
        cross_keys=tuple(t.to(device) for t in cache.cross_keys),
        cross_values=tuple(t.to(device) for t in cache.cross_values),
    )
    precisions = ["fp32", "fp16", "bf16"] if on_cuda else ["fp32", "bf16"]
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
    for precision in precisions:
        modes = (
            ["eager"] + (["cuda_graph"] if on_cuda else []) + (["compile"] if compile_too else [])
        )
        for mode in modes:
            for batch in batches:
                if not budget.left(f"{version.name} renderer {precision} {mode} b{batch}"):
                    continue
                motion = motions[batch].to(device)

                def render(m: Any = motion, p: str = precision) -> Any:
                    with (
                        torch.no_grad(),
                        torch.autocast(
                            device.split(":")[0],
                            dtype=dtypes.get(p, torch.float32),
                            enabled=p != "fp32",
                        ),
                    ):
                        return renderer_d.render_precomputed(m, cache_d)

                fn: Callable[[], Any] = render
                try:
                    if mode == "cuda_graph":
                        fn = _cuda_graphed(render, torch)
                    elif mode == "compile":
                        compiled = torch.compile(render, mode="reduce-overhead")
                        fn = compiled
                    ms = timed_ms(fn, repeats, sync) / batch
                    out = fn().float().cpu().numpy()
                    agree = frame_agreement(out, ref_frames[batch], precision)
                    rows.append(
                        {
                            "version": version.name,
                            "backend": f"torch {device}",
                            "stage": "renderer",
                            "precision": precision,
                            "mode": mode,
                            "batch": batch,
                            "ms_per_frame": ms,
                            **agree,
                        }
                    )
                except Exception as exc:  # a mode this GPU or torch build cannot do
                    rows.append(
                        {
                            "version": version.name,
                            "backend": f"torch {device}",
                            "stage": "renderer",
                            "precision": precision,
                            "mode": mode,
                            "batch": batch,
                            "error": f"{type(exc).__name__}: {exc}"[:300],
                            "ok": False,
                        }
                    )
        if not budget.left(f"{version.name} sampler {precision}"):
            continue
        with (
            torch.no_grad(),
            torch.autocast(
                device.split(":")[0],
                dtype=dtypes.get(precision, torch.float32),
                enabled=precision != "fp32",
            ),
        ):
            ms = timed_ms(lambda: sample(generator_d, device), repeats, sync)
            motion_out = sample(generator_d, device).float().cpu().numpy()
        rows.append(
            {
                "version": version.name,
                "backend": f"torch {device}",
                "stage": "sampler (50 frames, nfe 10, cfg 3)",
                "precision": precision,
                "mode": "eager",
                "batch": 1,
                "ms_per_hop": ms,
                **motion_agreement(motion_out, ref_motion, precision),
            }
        )
    return rows


def _cuda_graphed(fn: Callable[[], Any], torch: Any) -> Callable[[], Any]:
    """Capture `fn` (fixed inputs) once as a CUDA graph; replay returns the static output."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static = fn()

    def replay() -> Any:
        graph.replay()
        return static

    return replay


# -- the real graphs through ONNX Runtime --------------------------------------------------------


def export_graphs(version: Any, out: Path, *, tiny: bool) -> Path:
    """Seeded full-size graphs (renderer, velocity, avatar encoder + fp16 variants); with
    `tiny`, the contract's stub graphs instead (the self-test's stand-in)."""
    if tiny:
        from tests.support import stub_graphs

        return stub_graphs.write_stub_graphs(out)
    from models import export
    from models.audio_encoder import AudioEncoder
    from models.loading import LoadedModels
    from runtime.model import contract

    renderer, generator = seeded_models(version, tiny=False)
    loaded = LoadedModels(
        renderer=renderer, generator=generator, audio_encoder=AudioEncoder().eval(), version=version
    )
    modules = export.graph_modules(loaded)
    for spec in contract.graphs(version):
        if spec.name not in ("renderer", "velocity", "avatar_encoder"):
            continue
        path = out / spec.filename
        export.export_graph(modules[spec.name], spec, path)
        if spec.name in contract.FP16_GRAPHS:
            export.export_fp16(path, out / spec.fp16_filename)
    return out


def ort_branch(
    version: Any, graphs: Path, *, providers: list[str], repeats: int, budget: Budget
) -> list[dict[str, Any]]:
    import onnxruntime as ort

    from runtime.engine.motion_sampler import (
        ChunkContext,
        ProjectedConditions,
        fixed_noise,
        sample_chunk,
        velocity_from_session,
    )
    from runtime.model import contract
    from runtime.model.execution.device_graphs import DeviceGraph, DeviceRenderer
    from runtime.model.execution.sessions import GraphSession, SessionOptions

    rows: list[dict[str, Any]] = []
    specs = {s.name: s for s in contract.graphs(version)}
    rng = np.random.default_rng(SEED)
    cpu = SessionOptions(providers=("CPUExecutionProvider",))
    enc = GraphSession(specs["avatar_encoder"], graphs / "avatar_encoder.onnx", options=cpu)
    size = int(specs["avatar_encoder"].input("source").shape[2])
    out = enc.run({"source": rng.random((1, 3, size, size), dtype=np.float32)})
    avatar = {t.name: out[t.name] for t in contract.AVATAR_TENSORS}
    motions = {b: (rng.standard_normal((b, 32)) * 0.5).astype(np.float32) for b in BATCHES}
    conditions = ProjectedConditions.zeros(contract.CLIP_FRAMES)
    noise = fixed_noise(25)(0)
    ref_x = (rng.standard_normal(32) * 0.5).astype(np.float32)

    def run_sampler(session: GraphSession) -> np.ndarray:
        return sample_chunk(
            velocity_from_session(DeviceGraph(session)),
            noise=noise,
            ref_motion=ref_x,
            conditions=conditions,
            context=ChunkContext.zeros(),
            cfg_scale=3.0,
            nfe=10,
        )

    ref_r = DeviceRenderer(GraphSession(contract.RENDERER, graphs / "renderer.onnx", options=cpu))
    ref_r.use(avatar)
    ref_frames = {b: ref_r.render(motions[b]).copy() for b in BATCHES}
    ref_motion = run_sampler(GraphSession(specs["velocity"], graphs / "velocity.onnx", options=cpu))

    configs: list[tuple[str, str, SessionOptions]] = []
    for provider in providers:
        short = provider.replace("ExecutionProvider", "")
        base = SessionOptions(providers=(provider, "CPUExecutionProvider"))
        configs.append((short, "fp32", base))
        configs.append((short, "fp16", dataclasses.replace(base, precision="fp16")))
        if provider == "CUDAExecutionProvider":
            configs.append(
                (f"{short}+graph", "fp32", dataclasses.replace(base, enable_cuda_graph=True))
            )
        if provider == "TensorrtExecutionProvider":
            trt_cache = Path(tempfile.mkdtemp(prefix="trt-"))
            configs[-2:] = [
                (short, "fp32", dataclasses.replace(base, tensorrt_cache_dir=trt_cache)),
                (
                    short,
                    "fp16",
                    dataclasses.replace(
                        base, precision="fp16", tensorrt_fp16=True, tensorrt_cache_dir=trt_cache
                    ),
                ),
            ]
    sync = lambda: None  # noqa: E731 - ORT runs are synchronous
    for backend, precision, options in configs:
        if not budget.left(f"{version.name} ORT {backend} {precision}"):
            continue
        row_base = {
            "version": version.name,
            "backend": f"onnxruntime {backend}",
            "precision": precision,
        }
        try:
            r_path = graphs / contract.RENDERER.filename_for(precision)
            device = DeviceRenderer(GraphSession(contract.RENDERER, r_path, options=options))
            device.use(avatar)
            for batch in BATCHES:
                ms = timed_ms(lambda b=batch, d=device: d.render(motions[b]), repeats, sync)
                ms /= batch
                agree = frame_agreement(device.render(motions[batch]), ref_frames[batch], precision)
                rows.append(
                    {
                        **row_base,
                        "stage": "renderer",
                        "batch": batch,
                        "ms_per_frame": ms,
                        "provider_used": device.session.provider,
                        "notices": list(device.notices),
                        **agree,
                    }
                )
            v_path = graphs / specs["velocity"].filename_for(precision)
            velocity = GraphSession(specs["velocity"], v_path, options=options)
            ms = timed_ms(lambda v=velocity: run_sampler(v), repeats, sync)
            rows.append(
                {
                    **row_base,
                    "stage": "sampler (50 frames, nfe 10, cfg 3)",
                    "batch": 1,
                    "ms_per_hop": ms,
                    "provider_used": velocity.provider,
                    **motion_agreement(run_sampler(velocity), ref_motion, precision),
                }
            )
        except Exception as exc:
            rows.append(
                {
                    **row_base,
                    "stage": "renderer",
                    "error": f"{type(exc).__name__}: {exc}"[:300],
                    "ok": False,
                }
            )
    del ort
    return rows


# -- report ---------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform()}
    try:
        import torch

        env["torch"] = torch.__version__
        env["cuda_available"] = bool(torch.cuda.is_available())
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
            env["torch_cuda"] = torch.version.cuda
    except ImportError:
        env["torch"] = None
    try:
        import onnxruntime as ort

        env["onnxruntime"] = ort.__version__
        env["ort_providers"] = ort.get_available_providers()
    except ImportError:
        env["onnxruntime"] = None
    try:
        from runtime.model.execution.cuda_env import read_driver

        driver = read_driver()
        env["driver"] = driver.driver_version
        env["driver_max_cuda"] = driver.max_cuda
        if driver.gpus and "gpu" not in env:
            env["gpu"] = driver.gpus[0].name
    except Exception as exc:
        env["driver_error"] = str(exc)
    return env


def usable_ort_gpu_providers() -> list[str]:
    try:
        from runtime.model.execution.providers import CUDA, TENSORRT, probe_provider
    except ImportError:
        return []
    return [p for p in (CUDA, TENSORRT) if probe_provider(p).initialises]


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# GPU check: {env.get('gpu', 'no GPU')}",
        "",
        f"{report['created']}; branch: {report['branch']}; {report['elapsed_s']:.0f} s; "
        f"torch {env.get('torch')}, onnxruntime {env.get('onnxruntime')}, driver "
        f"{env.get('driver')} (CUDA up to {env.get('driver_max_cuda')}).",
        "",
        "| version | backend | stage | precision | mode | batch | ms | agrees | detail |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        ms = r.get("ms_per_frame", r.get("ms_per_hop"))
        unit = " /frame" if "ms_per_frame" in r else " /hop"
        detail = r.get("error") or (
            f"mean {r['mean']:.2e}, p99 {r['p99']:.2e}"
            if "mean" in r
            else f"rel {r.get('rel', 0):.2e}"
        )
        lines.append(
            f"| {r['version']} | {r['backend']} | {r['stage']} | {r['precision']} | "
            f"{r.get('mode', '-')} | {r.get('batch', '-')} | "
            f"{'-' if ms is None else f'{ms:.2f}{unit}'} | "
            f"{'yes' if r.get('ok') else 'NO'} | {detail} |"
        )
    if report["skipped"]:
        lines += ["", "Skipped for time: " + ", ".join(report["skipped"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--self-test", action="store_true", help="CPU, tiny models (CI)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "bench" / "results")
    parser.add_argument("--versions", default="v1,v2")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args(argv)

    import torch

    from runtime.model.versions import VERSIONS

    started = time.monotonic()
    budget = Budget(args.budget_s)
    versions = [VERSIONS[v] for v in args.versions.split(",")]
    env = environment()
    rows: list[dict[str, Any]] = []
    ort_gpu = [] if args.self_test else usable_ort_gpu_providers()
    with tempfile.TemporaryDirectory() as tmp:
        for version in versions:
            if args.self_test:
                rows += torch_branch(
                    version,
                    "cpu",
                    tiny=True,
                    repeats=1,
                    budget=budget,
                    compile_too=False,
                    batches=(1, 2),
                )
                graphs = export_graphs(version, Path(tmp) / version.name, tiny=True)
                if version.name == "v1":  # the stubs follow v1's contract
                    rows += ort_branch(
                        version,
                        graphs,
                        providers=["CPUExecutionProvider"],
                        repeats=1,
                        budget=budget,
                    )
            elif ort_gpu:
                graphs = export_graphs(version, Path(tmp) / version.name, tiny=False)
                rows += ort_branch(
                    version, graphs, providers=ort_gpu, repeats=args.repeats, budget=budget
                )
            elif torch.cuda.is_available():
                rows += torch_branch(
                    version,
                    "cuda",
                    tiny=False,
                    repeats=args.repeats,
                    budget=budget,
                    compile_too=not args.no_compile,
                )
            else:
                print("no CUDA: neither onnxruntime-gpu nor torch sees a GPU (use --self-test)")
                return 2
    name = (
        "selftest_cpu"
        if args.self_test
        else re.sub(r"[^a-z0-9]+", "_", env.get("gpu", "gpu").lower()).strip("_")
    )
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "branch": "self-test (CPU, tiny models)"
        if args.self_test
        else ("onnxruntime" if ort_gpu else "pytorch"),
        "environment": env,
        "elapsed_s": time.monotonic() - started,
        "rows": rows,
        "skipped": budget.skipped,
        "all_agree": all(r.get("ok") for r in rows),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"gpu_{name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / f"gpu_{name}.md").write_text(markdown(report))
    sys.stdout.write(markdown(report))
    return 0 if report["all_agree"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
