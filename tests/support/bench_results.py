"""Timing-run results as the set-up's timing run (`imtalker-cam bench`) leaves them in the
cache dir, for tests of what the app says before the first Go Live."""

from __future__ import annotations

from pathlib import Path

from runtime.core import paths
from runtime.engine.bench import BenchResult, BenchSettings, write_result

SLOW_INTERVAL_TEXT = "about 1 new picture every 3 s"
"""What `write_slow_bench`'s figures give: a slideshow, one picture per fixed part + render
(0.4 s audio + 1.8 s sampler at the default 9 steps + 0.8 s one frame)."""


def write_slow_bench(graphs: Path, *, backend: str = "") -> BenchResult:
    """A CPU far from real time (about 75x slower), measured on `graphs` (on `backend`, a
    `BackendChoice` label; "": a result from before the label was kept, ONNX Runtime), kept in
    the cache dir (`IMTALKER_CACHE_DIR`) as the set-up's timing run keeps it."""
    result = BenchResult(
        provider="CPU, 2 threads",  # the model set's summary line, as the bench keeps it
        on_gpu=False,
        precision="fp32",
        settings=BenchSettings(),
        avatar_encoding_ms=900.0,
        renderer_ms_per_frame={1: 800.0},
        audio_encoder_ms_per_hop=400.0,
        sampler_ms_per_hop=1800.0,
        renderer_working_mb_per_frame=None,
        peak_rss_mb=None,
        graphs=str(graphs),
        backend=backend,
    )
    write_result(result, paths.cache_dir())
    return result
