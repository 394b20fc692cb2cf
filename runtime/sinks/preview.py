"""In-process preview: hands each published frame to a callback (pacer thread).

The GUI wraps the callback in a queued Qt signal; the callback must only hand the frame over,
never block. `new_frames_only` skips repeats of the frame already shown.
"""

from __future__ import annotations

from collections.abc import Callable

from runtime.sinks.frame import LiveFrame


class PreviewSink:
    def __init__(
        self, callback: Callable[[LiveFrame], None], *, new_frames_only: bool = False
    ) -> None:
        self._callback = callback
        self._new_only = new_frames_only

    @property
    def name(self) -> str:
        return "preview"

    def open(self, *, fps: float) -> None:
        pass

    def send(self, frame: LiveFrame, repeat: bool) -> None:
        if repeat and self._new_only:
            return
        self._callback(frame)

    def close(self, timeout: float = 1.0) -> None:
        pass
