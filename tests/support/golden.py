"""The golden README's comparisons, in one place (tests/data/golden/README.md, "Tolerances").

Frames are compared by mean and 99th-percentile |d| (the renderer's top-1 resampler may flip a
choice on rounding noise and move a few pixels a lot); latents and features by relative error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LATENT_REL_TOL = 1e-4
"""||d|| / ||ref|| for latents, features and one velocity evaluation (float32)."""
SAMPLER_REL_TOL = 1e-3
"""||d|| / ||ref|| for the multi-step sampler."""
FRAME_MEAN_TOL = 1e-4
FRAME_P99_TOL = 2e-3


def as_array(x: Any) -> np.ndarray:
    """numpy arrays pass through; torch tensors (tests only) are detached to numpy."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def rel_err(actual: Any, expected: Any) -> float:
    a, e = as_array(actual), as_array(expected)
    assert a.shape == e.shape, (a.shape, e.shape)
    return float(np.linalg.norm(a - e) / np.linalg.norm(e))


def assert_frames_close(actual: Any, expected: Any) -> None:
    a, e = as_array(actual), as_array(expected)
    assert a.shape == e.shape, (a.shape, e.shape)
    d = np.abs(a - e)
    mean, p99 = float(d.mean()), float(np.percentile(d, 99))
    assert mean <= FRAME_MEAN_TOL, f"mean |d| {mean:.3g}"
    assert p99 <= FRAME_P99_TOL, f"99th percentile |d| {p99:.3g}"
