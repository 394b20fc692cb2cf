"""When to offer the CUDA runtime (GUI thread; asking the driver and the package index runs on
this controller's worker).

Once per start, after the model is set up, unless the user said "Don't ask again" or the model
runs on a render server: the runtime decides whether fetching would help (`CudaRuntime.offer`)
and only then does the dialog open; a failed look-up at start-up is only logged. Help › Fetch
the CUDA runtime asks again whatever the setting, and says why there is nothing to fetch or
what went wrong.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QWidget

from desktop_app.cuda_dialog import CudaFetchDialog
from desktop_app.services import CudaOffer, CudaRuntime
from desktop_app.tasks import TaskRunner
from desktop_app.window_context import WindowContext

logger = logging.getLogger(__name__)

NOTHING_TO_FETCH = (
    "There is nothing to fetch: no NVIDIA driver answers, this build runs on the CPU only, "
    "the driver is too old for it, or a CUDA runtime is installed already (see "
    "`imtalker-cam doctor`)."
)
INSTALLED_STATUS = "CUDA runtime installed: the next Go Live runs the model on the GPU."


class CudaOfferController(QObject):
    def __init__(
        self,
        cuda: CudaRuntime | None,
        *,
        ctx: WindowContext,
        dialog_parent: QWidget,
    ) -> None:
        super().__init__(dialog_parent)
        self._cuda = cuda
        self._ctx = ctx
        self._parent = dialog_parent
        self._runner = TaskRunner("cuda-offer", self)
        self._asked_at_start = False
        self.dialog: CudaFetchDialog | None = None

    @property
    def available(self) -> bool:
        """Whether this app can fetch the CUDA runtime at all (the Help item shows)."""
        return self._cuda is not None

    @property
    def looking(self) -> bool:
        """Whether the runtime is being asked for an offer right now."""
        return self._runner.busy

    def check_at_startup(self) -> None:
        """Offer once per start when the runtime says it would help."""
        settings = self._ctx.settings.settings
        if (
            self._cuda is None
            or self._asked_at_start
            or settings.cuda_offer_declined
            or settings.compute.mode == "remote"
        ):
            return
        self._asked_at_start = True
        self._runner.submit(
            self._cuda.offer,
            on_done=lambda offer: self._show(offer, asked=False),
            on_error=lambda exc: logger.info("no CUDA runtime offer at start-up: %s", exc),
        )

    def open_from_help(self) -> None:
        if self._cuda is None or self.dialog is not None or self._runner.busy:
            return
        self._ctx.messages.status("Asking the NVIDIA driver and the package index…")
        self._runner.submit(
            self._cuda.offer,
            on_done=lambda offer: self._show(offer, asked=True),
            on_error=lambda exc: self._ctx.messages.error(str(exc)),
        )

    def _show(self, offer: CudaOffer | None, *, asked: bool) -> None:
        if self._ctx.messages.closing or self.dialog is not None or self._cuda is None:
            return
        if asked:
            self._ctx.messages.status("")
        if offer is None:
            if asked:
                self._ctx.messages.info(NOTHING_TO_FETCH)
            return
        self.dialog = CudaFetchDialog(self._cuda, offer, self._parent)
        self.dialog.installed.connect(lambda: self._ctx.messages.status(INSTALLED_STATUS, 10000))
        self.dialog.finished.connect(self._closed)
        self.dialog.open()

    def _closed(self) -> None:
        dialog, self.dialog = self.dialog, None
        if dialog is None:
            return
        if dialog.dont_ask.isChecked():
            prefs = self._ctx.settings
            prefs.update(replace(prefs.settings, cuda_offer_declined=True))
        dialog.deleteLater()

    def close(self) -> None:
        """The window closes: cancel a download and end the workers."""
        if self.dialog is not None:
            self.dialog.reject()
        self._runner.shutdown(timeout=30)
