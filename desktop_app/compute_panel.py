"""Where the model runs (GUI thread): "Compute: this computer / remote server (URL, token)" in
the Controls tab. `compute_choice` takes a change into the settings (from the next Go Live).

With a render server (`imtalker-cam serve`), everything that touches this computer's hardware
stays here (microphone, camera, preview, recording, the virtual microphone); only the model
runs there. No model needs to be installed here for it.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.settings import Compute


class ComputePanel(QGroupBox):
    compute_changed = Signal(object)  # Compute

    def __init__(self, compute: Compute, parent: QWidget | None = None) -> None:
        super().__init__("Compute", parent)
        self.setAccessibleName("Compute")
        self.local = QRadioButton("This computer", self)
        self.local.setAccessibleName("Compute on this computer")
        self.remote = QRadioButton("Remote server", self)
        self.remote.setAccessibleName("Compute on a remote server")
        self.remote.setToolTip(
            "Render on a GPU server running `imtalker-cam serve`; the microphone, camera and "
            "recording stay on this computer"
        )
        group = QButtonGroup(self)
        group.addButton(self.local)
        group.addButton(self.remote)
        self.url = QLineEdit(self)
        self.url.setAccessibleName("Server address")
        self.url.setPlaceholderText("wss://gpu.example.com or ws://127.0.0.1:8765")
        self.token = QLineEdit(self)
        self.token.setAccessibleName("Server token")
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("shown once by the server on its first start")
        self.note = QLabel("", self)
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.local)
        layout.addWidget(self.remote)
        form = QFormLayout()
        form.addRow("Address", self.url)
        form.addRow("Token", self.token)
        layout.addLayout(form)
        layout.addWidget(self.note)
        self.set_value(compute)
        self.local.toggled.connect(self._edited)
        self.url.editingFinished.connect(self._edited)
        self.token.editingFinished.connect(self._edited)

    @property
    def value(self) -> Compute:
        return Compute(
            mode="remote" if self.remote.isChecked() else "local",
            url=self.url.text().strip(),
            token=self.token.text().strip(),
        )

    def set_value(self, compute: Compute) -> None:
        (self.remote if compute.mode == "remote" else self.local).setChecked(True)
        self.url.setText(compute.url)
        self.token.setText(compute.token)
        self._sync()

    def tab_chain(self) -> list[QWidget]:
        return [self.local, self.remote, self.url, self.token]

    def _sync(self) -> None:
        remote = self.remote.isChecked()
        self.url.setEnabled(remote)
        self.token.setEnabled(remote)
        value = self.value
        if remote and not value.url.startswith(("ws://", "wss://")):
            self.note.setText("Enter the server's address (ws:// or wss://).")
        elif remote and not value.token:
            self.note.setText("Enter the server's token.")
        else:
            self.note.setText("")

    def _edited(self) -> None:
        self._sync()
        self.compute_changed.emit(self.value)
