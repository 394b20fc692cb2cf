"""Live controls (GUI thread): head pose and gaze, expressiveness, quality/speed and output.

Each group reports a whole frozen value (`Pose`, `Quality`, `Output`) when any of its
widgets changes, so the receiver never sees half an update. The pose sliders stay usable while
"Natural" is on (a line under it says why they are dimmed): moving one switches Natural off,
as users expect. While live, `show_apply_note` says when a change will be seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QResizeEvent, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from desktop_app.elided_combo import ElidedComboBox
from desktop_app.settings import (
    BACKEND_CHOICES,
    CFG_RANGE,
    HOP_CHOICES,
    POSE_LIMITS,
    PRECISION_CHOICES,
    RESOLUTIONS,
    STEPS_CHOICES,
    BackgroundMode,
    Output,
    Pose,
    Quality,
)
from runtime.model.versions import DEFAULT_VERSION

# Slider units per unit of the value: degrees are whole, gaze and cfg get two decimals.
_POSE_UNITS = {"yaw": 1, "pitch": 1, "roll": 1, "gaze_x": 100, "gaze_y": 100}
_POSE_LABELS = {
    "yaw": ("Head &yaw", "Turn the head left or right (degrees)"),
    "pitch": ("Head &pitch", "Tilt the head up or down (degrees)"),
    "roll": ("Head r&oll", "Lean the head sideways (degrees)"),
    "gaze_x": ("&Gaze left/right", "Where the eyes look, left to right"),
    "gaze_y": ("Ga&ze up/down", "Where the eyes look, up to down"),
}
_CFG_UNITS = 10
_PRECISION_LABELS = {
    "fp32": "Full (fp32)",
    "fp16": "Half (fp16, GPU)",
    "bf16": "bf16 (OpenVINO)",
    "bf16-mixed": "bf16 mixed (OpenVINO)",
}
BF16_NEEDS_OPENVINO = "bf16 runs on OpenVINO only: choose Backend OpenVINO first."
_OPENVINO_ONLY = ("bf16", "bf16-mixed")
_BACKEND_LABELS = {
    "auto": "Auto",
    "onnxruntime": "ONNX Runtime",
    "openvino": "OpenVINO",
}
BACKEND_TIP = (
    "Which runtime computes the face. Auto: an NVIDIA GPU when there is one, else what the "
    "set-up's timing run measured fastest. OpenVINO: Intel CPUs and GPUs (bf16 on newer "
    "Intel and AMD CPUs). Applies the next time you go live."
)
# The CLI's --nfe counts the sampler's time-grid points, one more than its steps: each item
# says both, so "Steps 9" and "--nfe 10" are seen to be one setting.
_STEPS_LABELS = {
    1: "1 · fastest (--nfe 2)",
    2: "2 (--nfe 3)",
    4: "4 · balanced (--nfe 5)",
    9: "9 · best (--nfe 10)",
}
STEPS_TIP = (
    "Euler steps of the motion sampler: more steps, smoother motion, more work per frame. "
    "The command line's --nfe counts the points of the sampler's time grid, one more than the "
    "steps: Steps 9 here is --nfe 10 there."
)
APPLY_NOTE_MS = 5000
NATURAL_HINT = "Natural is on: the voice moves the head and eyes. Move a slider to steer them."
STEER_HINT = "The sliders steer the head and eyes. Tick Natural to let the voice do it."
_HOP_NAMES = {
    0: "Auto",
    1: "1 frame",
    2: "2 frames",
    5: "5 frames",
    10: "10 frames",
    25: "25 frames",
}
# The delay with instant compute (tests/bench/results/live_latency.md, lookahead 2, p95): the
# least a hop can give; this computer's work adds to it, so the list says "from" until a live
# session has measured the delay of that choice here.
_HOP_LEAST_S = {1: 0.16, 2: 0.2, 5: 0.32, 10: 0.52, 25: 1.1}
HOP_TIP = (
    "Frames made per step: fewer frames, a shorter delay but more work. The delay is the time "
    "between a sound and the avatar's lips; 'here' is what was measured live on this computer. "
    "Auto picks the shortest delay this computer keeps up with."
)


def hop_label(hop: int, measured_s: float | None) -> str:
    """A Hop item: its name and the delay it gives ('~5.0 s here' once measured live)."""
    name = _HOP_NAMES[hop]
    if measured_s is not None:
        return f"{name} · ~{measured_s:.1f} s here"
    if hop == 0:
        return f"{name} · shortest"
    return f"{name} · ≥ {_HOP_LEAST_S[hop]:.1f} s"


_BACKGROUNDS: tuple[tuple[BackgroundMode, str], ...] = (
    ("blur", "Blurred picture"),
    ("colour", "Solid colour"),
    ("none", "Black bars"),
)


def _apply_text(seconds: float) -> str:
    return f"Changes show in about {seconds:.0f} s (the live delay)."


def _format_pose(name: str, value: float) -> str:
    return f"{value:+.0f}°" if _POSE_UNITS[name] == 1 else f"{value:+.2f}"


def _pose_formatter(name: str) -> Callable[[int], str]:
    """How a pose slider's raw position reads beside it."""
    units = _POSE_UNITS[name]
    return lambda raw: _format_pose(name, raw / units)


class _ValueSlider(QWidget):
    """A slider with its current value written beside it."""

    def __init__(
        self,
        minimum: int,
        maximum: int,
        fmt: Callable[[int], str],
        name: str,
        parent: QWidget | None,
    ) -> None:
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setMinimumWidth(48)
        self.slider.setRange(minimum, maximum)
        self.slider.setAccessibleName(name)
        self.slider.setPageStep(max(1, (maximum - minimum) // 10))
        self.value_label = QLabel(self)
        self.value_label.setMinimumWidth(40)
        self.value_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self._fmt = fmt
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.value_label)
        self.slider.valueChanged.connect(self._show)
        self._show(self.slider.value())

    def _show(self, raw: int) -> None:
        text = self._fmt(raw)
        self.value_label.setText(text)
        self.slider.setAccessibleDescription(text)


class ControlsPanel(QWidget):
    pose_changed = Signal(object)  # Pose
    quality_changed = Signal(object)  # Quality
    output_changed = Signal(object)  # Output
    FEWER_STEPS_TIP = (
        "When no hop keeps up at the chosen steps, use fewer (down to 4) before showing a "
        "slideshow. Fewer steps change the motion a little."
    )
    """4 Euler steps: the engine's DEFAULT_MIN_NFE (5 time-grid points; widgets do not import
    the runtime, a test keeps the two in step)."""

    def __init__(
        self, *, pose: Pose, quality: Quality, output: Output, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._pose = pose
        self._quality = quality
        self._output = output
        self._loading = False
        self._model_cfg = DEFAULT_VERSION.default_cfg
        self._cfg_chosen = False

        # ---- pose and gaze
        pose_box = QGroupBox("Head pose and gaze", self)
        self.apply_note = QLabel(self)
        self.apply_note.setObjectName("ApplyNote")
        self.apply_note.setWordWrap(True)
        self.apply_note.setAccessibleName("When changes apply")
        # Floats over the top of the panel, outside the layout: a note that comes and goes
        # must not move the controls under the pointer.
        self.apply_note.hide()
        self._note_timer = QTimer(self)
        self._note_timer.setSingleShot(True)
        self._note_timer.setInterval(APPLY_NOTE_MS)
        self._note_timer.timeout.connect(self.apply_note.hide)
        self.natural = QCheckBox("&Natural head motion", pose_box)
        self.natural.setAccessibleName("Natural head motion")
        self.natural.setToolTip(
            "On: the model moves the head and eyes by itself. Off: the sliders steer them."
        )
        self.natural_hint = QLabel(NATURAL_HINT, pose_box)
        self.natural_hint.setObjectName("Hint")
        self.natural_hint.setWordWrap(True)
        self.pose_sliders: dict[str, QSlider] = {}
        pose_form = QFormLayout()
        pose_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        pose_form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        for name, (label, tip) in _POSE_LABELS.items():
            limit = round(POSE_LIMITS[name] * _POSE_UNITS[name])
            row = _ValueSlider(
                -limit,
                limit,
                _pose_formatter(name),
                label.replace("&", ""),
                pose_box,
            )
            row.slider.setToolTip(tip)
            text = QLabel(label, pose_box)
            text.setBuddy(row.slider)
            pose_form.addRow(text, row)
            self.pose_sliders[name] = row.slider
        self.reset_pose = QPushButton("R&eset pose", pose_box)
        self.reset_pose.setAccessibleName("Reset head pose and gaze")
        pose_layout = QVBoxLayout(pose_box)
        pose_layout.addWidget(self.natural)
        pose_layout.addWidget(self.natural_hint)
        pose_layout.addLayout(pose_form)
        pose_layout.addWidget(self.reset_pose, 0, Qt.AlignmentFlag.AlignRight)

        # ---- expressiveness and quality/speed
        quality_box = QGroupBox("Expression and quality", self)
        self._cfg_row = _ValueSlider(
            round(CFG_RANGE[0] * _CFG_UNITS),
            round(CFG_RANGE[1] * _CFG_UNITS),
            lambda raw: f"{raw / _CFG_UNITS:.1f}",
            "Expressiveness",
            quality_box,
        )
        self.cfg = self._cfg_row.slider
        self.cfg.setToolTip("How strongly the voice drives the face (audio guidance scale)")
        self.steps = ElidedComboBox(quality_box, help_tip=STEPS_TIP)
        self.steps.setAccessibleName("Sampler steps")
        for s in STEPS_CHOICES:
            self.steps.addItem(_STEPS_LABELS[s], s)
            self.steps.setItemData(self.steps.count() - 1, STEPS_TIP, Qt.ItemDataRole.ToolTipRole)
        self.fewer_steps = QCheckBox("Fewer steps if behind", quality_box)
        self.fewer_steps.setAccessibleName("Auto may use fewer sampler steps when behind")
        self.fewer_steps.setToolTip(self.FEWER_STEPS_TIP)
        self.hop = ElidedComboBox(quality_box, help_tip=HOP_TIP)
        self.hop.setAccessibleName("Hop size")
        self._measured_delay: dict[int, float] = {}  # hop choice -> seconds, from live stats
        for h in HOP_CHOICES:
            self.hop.addItem(hop_label(h, None), h)
        self.precision = QComboBox(quality_box)
        self.precision.setAccessibleName("Precision")
        self.precision.setToolTip(
            "Half precision (fp16) is for NVIDIA GPUs; on a CPU it is slower. bf16 is for "
            "OpenVINO on CPUs with AVX-512 BF16 or AMX: about twice as fast, a little less "
            "exact. bf16 mixed keeps the most sensitive parts in fp32: as exact as fp32 to "
            "the eye, most of the speed. Applies the next time you go live."
        )
        for value in PRECISION_CHOICES:
            self.precision.addItem(_PRECISION_LABELS[value], value)
        self.backend = QComboBox(quality_box)
        self.backend.setAccessibleName("Backend")
        self.backend.setToolTip(BACKEND_TIP)
        for value in BACKEND_CHOICES:
            self.backend.addItem(_BACKEND_LABELS[value], value)
        quality_form = QFormLayout(quality_box)
        quality_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        quality_form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        for label, widget in (
            ("E&xpressiveness", self._cfg_row),
            ("Steps", self.steps),
            ("", self.fewer_steps),
            ("Hop · delay", self.hop),
            ("Precision", self.precision),
            ("Backend", self.backend),
        ):
            if not label:
                quality_form.addRow(widget)
                continue
            text = QLabel(label, quality_box)
            text.setBuddy(self.cfg if widget is self._cfg_row else widget)
            quality_form.addRow(text, widget)

        # ---- output
        output_box = QGroupBox("Output", self)
        self.mirror = QCheckBox("M&irror the picture", output_box)
        self.mirror.setAccessibleName("Mirror")
        self.resolution = QComboBox(output_box)
        self.resolution.setAccessibleName("Output resolution")
        for w, h in RESOLUTIONS:
            self.resolution.addItem(f"{w} × {h}", f"{w}x{h}")
        self.background = QComboBox(output_box)
        self.background.setAccessibleName("Background")
        self.background.setToolTip("What fills the sides when the output is wider than the face")
        for mode, title in _BACKGROUNDS:
            self.background.addItem(title, mode)
        self.colour = QPushButton(output_box)
        self.colour.setAccessibleName("Background colour")
        self.colour.setToolTip("Choose the background colour")
        output_form = QFormLayout(output_box)
        output_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        output_form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        output_rows: tuple[tuple[str, QWidget], ...] = (
            ("Resol&ution", self.resolution),
            ("&Background", self.background),
            ("&Colour", self.colour),
        )
        for label, field in output_rows:
            caption = QLabel(label, output_box)
            caption.setBuddy(field)
            output_form.addRow(caption, field)
        output_form.addRow(self.mirror)

        for combo in (self.resolution, self.background):
            # Sized by a short minimum, not the longest item: the panel fits a narrow window.
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(6)
        for combo in (self.steps, self.hop):
            # As wide as their longest item: in a narrow panel the row wraps (the label goes
            # above) rather than cutting the delay or the --nfe off.
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)

        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.addWidget(pose_box)
        root.addWidget(quality_box)
        root.addWidget(output_box)
        root.addStretch(1)

        self.set_values(pose=pose, quality=quality, output=output)
        self.natural.toggled.connect(self._pose_edited)
        for slider in self.pose_sliders.values():
            slider.valueChanged.connect(self._slider_moved)
        self.reset_pose.clicked.connect(self.reset)
        self.cfg.valueChanged.connect(self._cfg_moved)
        self.steps.currentIndexChanged.connect(self._quality_edited)
        self.fewer_steps.toggled.connect(self._quality_edited)
        self.hop.currentIndexChanged.connect(self._quality_edited)
        self.precision.currentIndexChanged.connect(self._quality_edited)
        self.backend.currentIndexChanged.connect(self._backend_edited)
        self.mirror.toggled.connect(self._output_edited)
        self.resolution.currentIndexChanged.connect(self._output_edited)
        self.background.currentIndexChanged.connect(self._output_edited)
        self.colour.clicked.connect(self._pick_colour)

    def tab_chain(self) -> list[QWidget]:
        """The panel's controls in keyboard order (top to bottom as shown)."""
        return [
            self.natural,
            *self.pose_sliders.values(),
            self.reset_pose,
            self.cfg,
            self.steps,
            self.fewer_steps,
            self.hop,
            self.resolution,
            self.background,
            self.colour,
            self.mirror,
        ]

    # ---- values

    @property
    def pose(self) -> Pose:
        return self._pose

    @property
    def quality(self) -> Quality:
        return self._quality

    @property
    def output(self) -> Output:
        return self._output

    def set_values(self, *, pose: Pose, quality: Quality, output: Output) -> None:
        """Show these values without emitting change signals."""
        self._loading = True
        try:
            self.natural.setChecked(pose.natural)
            for name, slider in self.pose_sliders.items():
                slider.setValue(round(getattr(pose, name) * _POSE_UNITS[name]))
            cfg = self._model_cfg if quality.cfg_scale is None else quality.cfg_scale
            self.cfg.setValue(round(cfg * _CFG_UNITS))
            self.steps.setCurrentIndex(max(0, self.steps.findData(quality.steps)))
            self.fewer_steps.setChecked(quality.fewer_steps)
            self.hop.setCurrentIndex(max(0, self.hop.findData(quality.hop)))
            self.precision.setCurrentIndex(max(0, self.precision.findData(quality.precision)))
            self.backend.setCurrentIndex(max(0, self.backend.findData(quality.backend)))
            self._offer_bf16()
            self.mirror.setChecked(output.mirror)
            size = f"{output.width}x{output.height}"
            index = self.resolution.findData(size)
            if index < 0:
                self.resolution.addItem(f"{output.width} × {output.height}", size)
                index = self.resolution.count() - 1
            self.resolution.setCurrentIndex(index)
            self.background.setCurrentIndex(max(0, self.background.findData(output.background)))
            self._show_colour(output.background_colour)
        finally:
            self._loading = False
        self._pose, self._quality, self._output = pose, quality, output
        self._sync_enabled()

    def reset(self) -> None:
        """Back to the default pose: Natural on and every slider centred, whatever it was."""
        self._loading = True
        try:
            self.natural.setChecked(True)
            for slider in self.pose_sliders.values():
                slider.setValue(0)
        finally:
            self._loading = False
        self._pose_edited()

    def _place_note(self) -> None:
        """Over the top of the visible part of the panel (it may be scrolled)."""
        top = 0
        area = self.parentWidget()
        if area is not None and area.parentWidget() is not None:  # a scroll area's viewport
            top = max(0, -self.y())
        width = self.width()
        self.apply_note.setGeometry(0, top, width, self.apply_note.heightForWidth(width))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.apply_note.isVisible():
            self._place_note()

    def show_live_delay(self, latency_ms: float | None) -> None:
        """While live: the delay measured for the Hop choice in use, written into its item, so
        the list says what each choice tried here gives (not only its least)."""
        if latency_ms is None:
            return
        hop = int(self.hop.currentData())
        seconds = round(latency_ms / 1000, 1)
        if self._measured_delay.get(hop) == seconds:
            return
        self._measured_delay[hop] = seconds
        self.hop.setItemText(self.hop.currentIndex(), hop_label(hop, seconds))

    def show_apply_note(self, seconds: float) -> None:
        """Say that a change shows only after the pipeline's latency (for a few seconds)."""
        self.apply_note.setText(_apply_text(seconds))
        self._place_note()
        self.apply_note.show()
        self.apply_note.raise_()
        self._note_timer.start()

    def _sync_enabled(self) -> None:
        natural = self.natural.isChecked()
        self.natural_hint.setText(NATURAL_HINT if natural else STEER_HINT)
        for slider in self.pose_sliders.values():
            # Dimmed, not disabled: moving one is how the user takes over from Natural.
            slider.setProperty("inactive", natural)
            slider.style().unpolish(slider)
            slider.style().polish(slider)
        self.colour.setEnabled(self._output.background == "colour")

    def _slider_moved(self) -> None:
        if self._loading:
            return
        if self.natural.isChecked():
            self._loading = True
            try:
                self.natural.setChecked(False)
            finally:
                self._loading = False
        self._pose_edited()

    def _pose_edited(self) -> None:
        if self._loading:
            return
        values = {
            name: slider.value() / _POSE_UNITS[name] for name, slider in self.pose_sliders.items()
        }
        self._pose = Pose(natural=self.natural.isChecked(), **values)
        self._sync_enabled()
        self.pose_changed.emit(self._pose)

    def set_backend_unavailable(self, backend: str, reason: str | None) -> None:
        """Grey out `backend` in the Backend choice with `reason` as its tooltip (None: it
        can be chosen). A saved choice stays selected: going live then says what is wrong."""
        model = self.backend.model()
        assert isinstance(model, QStandardItemModel)
        item = model.item(self.backend.findData(backend))
        item.setEnabled(reason is None)
        item.setToolTip(reason or "")

    def set_model_default_cfg(self, cfg: float) -> None:
        """The installed model's own expressiveness (2.0 for IMTalker v2, 3.0 for v1), shown
        while the user has not chosen one."""
        self._model_cfg = cfg
        if self._quality.cfg_scale is None:
            self._loading = True
            try:
                self.cfg.setValue(round(cfg * _CFG_UNITS))
            finally:
                self._loading = False

    def _cfg_moved(self) -> None:
        if not self._loading:
            self._cfg_chosen = True
        self._quality_edited()

    def _offer_bf16(self) -> None:
        """bf16 and bf16-mixed only with the OpenVINO backend (ONNX Runtime has no bf16)."""
        model = self.precision.model()
        assert isinstance(model, QStandardItemModel)
        openvino = self.backend.currentData() == "openvino"
        for precision in _OPENVINO_ONLY:
            item = model.item(self.precision.findData(precision))
            item.setEnabled(openvino)
            item.setToolTip("" if openvino else BF16_NEEDS_OPENVINO)

    def _backend_edited(self) -> None:
        self._offer_bf16()
        openvino = self.backend.currentData() == "openvino"
        if not openvino and self.precision.currentData() in _OPENVINO_ONLY:
            self._loading = True  # one quality change, below, for both combos
            try:
                self.precision.setCurrentIndex(self.precision.findData("fp32"))
            finally:
                self._loading = False
        self._quality_edited()

    def _quality_edited(self) -> None:
        if self._loading:
            return
        chosen = self._cfg_chosen or self._quality.cfg_scale is not None
        self._quality = Quality(
            cfg_scale=self.cfg.value() / _CFG_UNITS if chosen else None,
            steps=int(self.steps.currentData()),
            fewer_steps=self.fewer_steps.isChecked(),
            hop=int(self.hop.currentData()),
            precision=str(self.precision.currentData()),
            backend=str(self.backend.currentData()),
        )
        self.quality_changed.emit(self._quality)

    def _output_edited(self) -> None:
        if self._loading or self.resolution.currentIndex() < 0:
            return
        # Item data is "WxH": PySide6 cannot keep a tuple in an item.
        width, height = str(self.resolution.currentData()).split("x")
        self._output = replace(
            self._output,
            width=int(width),
            height=int(height),
            mirror=self.mirror.isChecked(),
            background=self.background.currentData(),
        )
        self._sync_enabled()
        self.output_changed.emit(self._output)

    def _pick_colour(self) -> None:
        chosen = QColorDialog.getColor(
            QColor(self._output.background_colour), self, "Background colour"
        )
        if chosen.isValid():
            self.set_background_colour(chosen.name())

    def set_background_colour(self, colour: str) -> None:
        self._show_colour(colour)
        self._output = replace(self._output, background_colour=colour)
        self.output_changed.emit(self._output)

    def _show_colour(self, colour: str) -> None:
        self.colour.setText(colour.upper())
        self.colour.setStyleSheet(
            f"QPushButton {{ border-left: 18px solid {colour}; text-align: left; }}"
        )
