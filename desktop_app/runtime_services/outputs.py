"""The app's output settings as the runtime's look of the composed picture (any thread; pure
translation: the sinks themselves are `runtime.sinks.outputs`)."""

from __future__ import annotations

from desktop_app.settings import Output
from runtime.sinks.virtual_camera import VirtualCameraConfig


def hex_rgb(colour: str) -> tuple[int, int, int]:
    """'#1e2430' -> (30, 36, 48)."""
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))


def camera_config(output: Output, backend: str | None = None) -> VirtualCameraConfig:
    """The app's output settings (and the pyvirtualcam backend) as the runtime's look."""
    return VirtualCameraConfig(
        width=output.width,
        height=output.height,
        mirror=output.mirror,
        background=hex_rgb(output.background_colour)
        if output.background == "colour"
        else (0, 0, 0),
        blur=output.background == "blur",
        backend=backend,
    )
