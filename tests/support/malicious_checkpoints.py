"""Checkpoints that run code when fully unpickled (for the loader's and the store's refusals).

`MarkerPayload` writes a marker file when unpickled, so a test can tell whether anything in a
file ran; the checkpoint readers must refuse it by the global's name without running it.
"""

from __future__ import annotations

from pathlib import Path

import torch


def plant_marker(path: str) -> int:
    Path(path).write_text("code from the checkpoint ran")
    return 0


class MarkerPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (plant_marker, (str(self.marker),))


def with_payload(path: Path, payload: object, *, protocol: int = 2) -> Path:
    """A Lightning-style checkpoint at `path` whose hyper_parameters are `payload`."""
    torch.save(
        {"state_dict": {"gen.w": torch.ones(2)}, "hyper_parameters": payload},
        path,
        pickle_protocol=protocol,
    )
    return path
