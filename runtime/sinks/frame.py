"""What the pacer hands the sinks: one output frame and its timing (created on the inference
worker, published on the pacer thread, read by sinks on their own threads; immutable).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runtime.core.timing import FrameTiming

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class LiveFrame:
    """One output frame: RGB uint8 (H, W, 3), its index in the output timeline, its timing."""

    index: int
    image: Image
    timing: FrameTiming


PublishFn = Callable[[LiveFrame, bool], None]
"""(frame with `timing.sent` set, is_repeat) -> None; runs on the pacer thread."""
