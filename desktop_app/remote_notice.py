"""A render server that cannot be reached, said in the window (GUI thread).

While the link fails ("cannot reach the render server at ...: connection refused (attempt 3,
retrying in 0.5 s)", `LiveStats.remote_problem`), the alert bar says so with a button to stop
and edit the address (the Go Live button is Stop meanwhile); before the first picture the
preview says it instead of "Starting…". The alert follows the attempts and goes when the server
answers or the session stops; once dismissed it stays away until the server has been reached.
"""

from __future__ import annotations

from collections.abc import Callable

from desktop_app.alerts import AlertBar
from desktop_app.preview import PreviewWidget
from desktop_app.services import LiveStats

TOPIC = "remote"
EDIT_TEXT = "Stop and edit the address…"


class RemoteNotice:
    def __init__(
        self, *, alerts: AlertBar, preview: PreviewWidget, edit: Callable[[], object]
    ) -> None:
        self._alerts = alerts
        self._preview = preview
        self._edit = edit
        self._shown: str | None = None  # the sentence shown last, while the problem lasts

    def follow(self, stats: LiveStats) -> None:
        """Every stats reading while live: show, update or clear the notice."""
        problem = stats.remote_problem
        if problem is None:
            if self._shown is not None and self._preview.current_frame is None:
                self._preview.clear_live(
                    "Connected to the render server: the first picture is on its way…"
                )
            self.clear()
            return
        text = problem[:1].upper() + problem[1:] + "."
        if text == self._shown:
            return
        dismissed = self._shown is not None and self._alerts.topic != TOPIC
        self._shown = text
        if self._preview.current_frame is None:
            self._preview.clear_live(text)
        if not dismissed:
            self._alerts.show_alert(TOPIC, text, severity="warning", action=(EDIT_TEXT, self._edit))

    def clear(self) -> None:
        """The server answered, or the session ended."""
        if self._shown is None:
            return
        self._shown = None
        self._alerts.clear(TOPIC)
