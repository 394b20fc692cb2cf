"""The live engine's own overhead (stub graphs) and its latency budget (full-size graphs).

    .venv/bin/python tests/bench/bench_live.py [--seconds 30] [--graphs DIR] [--repeats 3]
        [--skip-stub] [--out tests/bench/results/live.json]

Stub run: the real engine (capture from a fake 48 kHz microphone playing fixture speech,
resampling, sliding-window features, the hop sampler, 25 fps pacing, a 1280x720 virtual camera
through a fake pyvirtualcam backend, a preview sink) with tiny stub graphs that keep the real
I/O contract and cost almost nothing. It shows what the pipeline itself costs: frames per second
it can move, latency added by buffering, timing steadiness, memory over time (run with
`--seconds 600` for the 10-minute flat-memory check).

Full-size: with --graphs (exported recipe-weight or real graphs), every stage of one hop is
timed the way the engine calls it, giving the per-stage latency budget and the real-time factor
on this machine (not real time on a 2-core CPU).

Prints a table and writes the results as JSON (merged into an existing file by section).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soxr

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from runtime.engine.features import encoder_from_session, window_features  # noqa: E402
from runtime.engine.live.avatar import encode_avatar, render, to_uint8  # noqa: E402
from runtime.engine.live.engine import EngineConfig, LiveEngine, MicrophoneInput  # noqa: E402
from runtime.engine.motion_sampler import (  # noqa: E402
    ChunkContext,
    RawConditions,
    conditioner_from_session,
    fixed_noise,
    project_conditions,
    sample_chunk,
    velocity_from_session,
)
from runtime.model.contract import AUDIO_FEATURE_DIM, CLIP_FRAMES, FPS, SAMPLES_PER_FRAME  # noqa: E402
from runtime.model.execution.model_set import open_model_set  # noqa: E402
from runtime.model.execution.sessions import SessionOptions  # noqa: E402
from runtime.sinks.preview import PreviewSink  # noqa: E402
from runtime.sinks.virtual_camera import VirtualCameraConfig, VirtualCameraSink  # noqa: E402
from tests.support.data import FIXTURES  # noqa: E402
from tests.support.fakes import virtual_camera as fakecam  # noqa: E402
from tests.support.fakes.sound_device import FakeSoundDevice  # noqa: E402
from tests.support.live import grey_avatar, stub_models, wav_16k  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stub_run(seconds: float) -> dict[str, Any]:
    fakecam.register()
    models = stub_models(Path(tempfile.mkdtemp()))
    speech = wav_16k(FIXTURES / "audio_1.wav")
    dev = FakeSoundDevice(soxr.resample(speech, 16000, 48000).astype(np.float32), 48000, loop=True)
    engine = LiveEngine(
        models=models,
        source=MicrophoneInput(sd=dev),
        config=EngineConfig(),
        sinks=[
            VirtualCameraSink(VirtualCameraConfig(width=1280, height=720, backend="fake")),
            PreviewSink(lambda frame: None),
        ],
    )
    fakecam.RecordingBackend.probe = staticmethod(lambda f: None)  # keep nothing per frame
    engine.start(grey_avatar(models, 100))
    rss: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        time.sleep(1.0)
        rss.append((time.perf_counter() - t0, rss_mib()))
        del dev.deliveries[:-100]  # the fake's own log, not the engine's memory
    stats = engine.stats()
    stop_t = time.perf_counter()
    stopped = engine.stop()
    stop_s = time.perf_counter() - stop_t
    cam = fakecam.RecordingBackend.instances[-1]
    times = np.array(cam.times)
    gaps = np.diff(times) * 1e3
    lat = stats.latency
    hop_ms = lat.compute["hop"].mean_ms
    warm = [r for t, r in rss if t >= min(10.0, seconds / 3)]
    slope = float(np.polyfit(np.arange(len(warm)), warm, 1)[0] * 60) if len(warm) > 2 else 0.0
    return {
        "seconds": seconds,
        "output_fps": (len(times) - 1) / (times[-1] - times[0]),
        "frame_interval_ms": {
            "p1": float(np.percentile(gaps, 1)),
            "p50": float(np.percentile(gaps, 50)),
            "p99": float(np.percentile(gaps, 99)),
            "max": float(gaps.max()),
        },
        "latency_p50_ms": lat.latency_p50_ms,
        "latency_p95_ms": lat.latency_p95_ms,
        "budget_ms": {
            "structural (hop + lookahead audio)": (5 + 2) / FPS * 1e3,
            "capture -> features ready": lat.to_features_ms,
            "capture -> motion ready": lat.to_motion_ms,
            "capture -> pixels ready": lat.to_pixels_ms,
            "pixels ready -> sent (playout buffer)": lat.latency_p50_ms - lat.to_pixels_ms,
        },
        "compute_ms": {k: v.__dict__ for k, v in lat.compute.items()},
        "pipeline_frames_per_s": 5 / (hop_ms / 1e3) if hop_ms > 0 else None,
        "real_time_factor": lat.real_time_factor,
        "counters": lat.counters,
        "skipped_frames": stats.skipped_frames,
        "audio_overflows": stats.audio.overflows if stats.audio else None,
        "rss_mib": {"start": rss[0][1], "end": rss[-1][1], "slope_mib_per_min": slope},
        "stop_s": stop_s,
        "stopped_cleanly": stopped,
    }


def timed(fn: Any, repeats: int) -> dict[str, float]:
    fn()  # warm-up
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return {"min_ms": min(runs) * 1e3, "median_ms": statistics.median(runs) * 1e3}


def full_size(
    graphs: Path, repeats: int, hop: int = 5, look: int = 2, nfe: int = 10
) -> dict[str, Any]:
    """One hop's stages with full-size graphs, called exactly as the engine calls them."""
    models = open_model_set(graphs, options=SessionOptions(providers=("CPUExecutionProvider",)))
    from runtime.media.face_crop import prepare_avatar

    image = prepare_avatar(FIXTURES / "source_1.png", size=models.source_size).image
    avatar = encode_avatar(models["avatar_encoder"], image, size=models.source_size)
    encode = encoder_from_session(models["audio_encoder"])
    velocity = velocity_from_session(models["velocity"])
    conditioner = conditioner_from_session(models["conditioner"])
    speech = wav_16k(FIXTURES / "audio_1.wav")
    window = speech[: (CLIP_FRAMES + hop + look) * SAMPLES_PER_FRAME]
    feats = np.zeros((hop + look, AUDIO_FEATURE_DIM), np.float32)

    def features() -> None:
        nonlocal feats
        feats = window_features(encode, window, last_frames=hop + look)

    def motion() -> None:
        conds = project_conditions(conditioner, feats, RawConditions()).padded_to(CLIP_FRAMES)
        sample_chunk(
            velocity,
            noise=fixed_noise(25)(0),
            ref_motion=avatar.source_motion,
            conditions=conds,
            context=ChunkContext.zeros(),
            cfg_scale=3.0,
            nfe=nfe,
        )

    def render_one() -> None:
        to_uint8(render(models["renderer"], avatar, avatar.source_motion[None]))

    stages = {
        f"features ({CLIP_FRAMES + hop + look}-frame window)": timed(features, repeats),
        f"motion (conditioner + {nfe - 1} velocity evaluations, cfg 3)": timed(motion, repeats),
        "render (one frame)": timed(render_one, max(1, repeats // 2)),
    }
    per_hop = (
        stages[f"features ({CLIP_FRAMES + hop + look}-frame window)"]["median_ms"]
        + stages[f"motion (conditioner + {nfe - 1} velocity evaluations, cfg 3)"]["median_ms"]
        + hop * stages["render (one frame)"]["median_ms"]
    )
    media_ms = hop / FPS * 1e3
    return {
        "graphs": str(graphs),
        "hop": hop,
        "lookahead": look,
        "nfe": nfe,
        "stages": stages,
        "hop_compute_ms": per_hop,
        "hop_media_ms": media_ms,
        "real_time_factor": per_hop / media_ms,
        "latency_budget_ms": {
            "hop + lookahead audio": (hop + look) / FPS * 1e3,
            "compute of one hop": per_hop,
            "playout margin (one frame)": 1e3 / FPS,
            "total if real time": (hop + look + 1) / FPS * 1e3 + per_hop,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--graphs", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-stub", action="store_true")
    parser.add_argument("--section", default=None, help="JSON key for the stub run")
    parser.add_argument("--out", type=Path, default=ROOT / "tests/bench/results/live.json")
    args = parser.parse_args(argv)
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["machine"] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    if not args.skip_stub:
        key = args.section or f"stub_{int(args.seconds)}s"
        r = stub_run(args.seconds)
        results[key] = r
        print(f"\nStub graphs, {args.seconds:.0f} s live (the pipeline's own cost)")
        print(f"  output fps                 {r['output_fps']:8.3f}")
        fi = r["frame_interval_ms"]
        print(f"  frame interval p1/50/99    {fi['p1']:6.1f} {fi['p50']:6.1f} {fi['p99']:6.1f} ms")
        print(
            f"  latency p50 / p95          {r['latency_p50_ms']:6.0f} {r['latency_p95_ms']:6.0f} ms"
        )
        for k, v in r["budget_ms"].items():
            print(f"    {k:38s} {v:7.1f} ms")
        for k, v in r["compute_ms"].items():
            print(f"  compute {k:10s} mean {v['mean_ms']:6.2f} ms  p95 {v['p95_ms']:6.2f} ms")
        print(f"  frames/s the pipeline can move   {r['pipeline_frames_per_s']:8.1f}")
        print(f"  real-time factor           {r['real_time_factor']:8.3f}")
        print(f"  counters                   {r['counters']}")
        rs = r["rss_mib"]
        print(
            f"  RSS MiB start/end, slope   {rs['start']:.0f} / {rs['end']:.0f}, "
            f"{rs['slope_mib_per_min']:+.2f} MiB/min"
        )
        print(
            f"  stop() took                {r['stop_s'] * 1e3:.0f} ms "
            f"(clean: {r['stopped_cleanly']})"
        )
    if args.graphs is not None:
        f = full_size(args.graphs, args.repeats)
        results["full_size_cpu"] = f
        print(
            f"\nFull-size graphs on this CPU (hop {f['hop']}, lookahead {f['lookahead']}, "
            f"nfe {f['nfe']})"
        )
        for k, v in f["stages"].items():
            print(f"  {k:52s} {v['median_ms']:9.0f} ms")
        print(
            f"  one hop ({f['hop_media_ms']:.0f} ms of video)                          "
            f"{f['hop_compute_ms']:9.0f} ms  -> real-time factor {f['real_time_factor']:.1f}"
        )
        for k, v in f["latency_budget_ms"].items():
            print(f"    {k:38s} {v:9.0f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
