"""Latency remote compute adds on loopback, frame by frame, in real time (no Ray).

    .venv/bin/python tests/bench/bench_remote_latency.py [--seconds 10] [--hop 1]
        [--out tests/bench/results/remote_latency.md]

The same file input through the live engine twice, one after the other (on 2 cores side by
side they slow each other): local stub compute, then the render server's session code
(`runtime.server.connection.handle`) on an in-process WebSocket server on 127.0.0.1 with the
same stub graphs. For every first publication it takes the frame's capture time, when its
pixels were there (rendered locally / arrived from the server) and when the pacer sent it,
and prints per path: arrival (pixels - capture) and end to end (sent - capture) p50/p95, the
pacer's playout delay at the end, repeats and drops. The first 2 s (start-up) are left out.

Prints a table and writes it as Markdown.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from runtime.engine.live.engine import EngineConfig, FileInput, LiveControls, LiveEngine  # noqa: E402
from runtime.engine.live.remote import RemoteCompute, remote_avatar  # noqa: E402
from runtime.remote.client import RemoteConfig  # noqa: E402
from tests.support.data import FIXTURES  # noqa: E402
from tests.support.live import Tap, grey_avatar, stub_models, wav_16k  # noqa: E402
from tests.support.remote import TOKEN, serving  # noqa: E402

SETTLE_S = 2.0


def run(engine: LiveEngine, tap: Tap, avatar: object, hop: int, seconds: float) -> dict[str, float]:
    engine.start(avatar, LiveControls(hop=hop))  # type: ignore[arg-type]
    try:
        time.sleep(seconds)
        delay = engine._pacer.delay_s  # what the jitter buffer settled on
        counters = engine.stats().latency.counters
    finally:
        engine.stop()
    with tap.lock:
        frames = list(tap.frames)
    t_first = min((t for t, f in frames if f.index >= 0), default=0.0)
    seen: set[int] = set()
    arrival, e2e = [], []
    for t, f in frames:
        if f.index < 0 or f.index in seen or t < t_first + SETTLE_S:
            continue
        seen.add(f.index)
        arrival.append((f.timing.pixels - f.timing.capture) * 1e3)
        e2e.append((f.timing.sent - f.timing.capture) * 1e3)
    return {
        "frames": float(len(e2e)),
        "arrival_p50": float(np.percentile(arrival, 50)),
        "arrival_p95": float(np.percentile(arrival, 95)),
        "e2e_p50": float(np.percentile(e2e, 50)),
        "e2e_p95": float(np.percentile(e2e, 95)),
        "delay": delay * 1e3,
        "repeated": float(counters.get("repeated", 0)),
        "dropped": float(counters.get("dropped", 0)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--hop", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "tests/bench/results/remote_latency.md")
    args = ap.parse_args()
    speech = wav_16k(FIXTURES / "audio_1.wav")
    audio = np.concatenate([speech] * 3)
    with tempfile.TemporaryDirectory() as tmp:
        models = stub_models(Path(tmp))
        grid_tap = Tap()
        grid = LiveEngine(
            models=models,
            source=FileInput(audio=audio),
            config=EngineConfig(align_ticks=False),
            sinks=[grid_tap.preview()],
        )
        rows = {
            "local, ticks not moved (before)": run(
                grid, grid_tap, grey_avatar(models, 120), args.hop, args.seconds
            )
        }
        local_tap = Tap()
        local = LiveEngine(
            models=models,
            source=FileInput(audio=audio),
            config=EngineConfig(),
            sinks=[local_tap.preview()],
        )
        rows["local (default: ticks moved)"] = run(
            local, local_tap, grey_avatar(models, 120), args.hop, args.seconds
        )
        with serving(models, capacity=1) as server:
            remote_tap = Tap()
            remote = LiveEngine(
                models=None,
                source=FileInput(audio=audio),
                config=EngineConfig(),
                sinks=[remote_tap.preview()],
                compute=RemoteCompute(
                    config=RemoteConfig(url=server.url, token=TOKEN, frame_format="jpeg")
                ),
            )
            size = models.source_size
            image = np.full((size, size, 3), 120, np.uint8)
            rows["remote"] = run(
                remote, remote_tap, remote_avatar(image, "grey"), args.hop, args.seconds
            )
    head = (
        "| path | frames | arrival p50 | arrival p95 | end-to-end p50 | end-to-end p95 "
        "| playout delay | repeated | dropped |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['frames']:.0f} | {r['arrival_p50']:.1f} ms | {r['arrival_p95']:.1f} ms "
            f"| {r['e2e_p50']:.1f} ms | {r['e2e_p95']:.1f} ms | {r['delay']:.1f} ms "
            f"| {r['repeated']:.0f} | {r['dropped']:.0f} |"
        )
    lines.append("")
    for base in ("local, ticks not moved (before)", "local (default: ticks moved)"):
        added = rows["remote"]["e2e_p50"] - rows[base]["e2e_p50"]
        lines.append(f"remote vs {base} (end-to-end p50): {added:+.1f} ms (hop {args.hop})  ")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
