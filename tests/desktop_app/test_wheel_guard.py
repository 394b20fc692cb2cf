"""The mouse wheel over the settings scrolls the panel; it changes a combo box, spin box or
slider only while that control has focus (issue 24, item 3)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QScrollArea, QSpinBox, QWidget
from pytestqt.qtbot import QtBot

from desktop_app import app as desktop
from desktop_app import wheel_guard
from desktop_app.controls_panel import ControlsPanel
from desktop_app.panels import scrolling
from desktop_app.settings import Output, Pose, Quality


@pytest.fixture
def guard(qapp: QApplication) -> Iterator[wheel_guard.WheelGuard]:
    installed = wheel_guard.install(qapp)
    yield installed
    qapp.removeEventFilter(installed)
    installed.setParent(None)  # gone with this fixture: the next install makes a new one


def wheel_down(widget: QWidget) -> None:
    """One notch down over the middle of `widget`, delivered as Qt delivers a real one."""
    centre = widget.rect().center()
    event = QWheelEvent(
        QPointF(centre),
        QPointF(widget.mapToGlobal(centre)),
        QPoint(0, 0),
        QPoint(0, -120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


def panel(qtbot: QtBot) -> tuple[QScrollArea, ControlsPanel]:
    controls = ControlsPanel(pose=Pose(natural=False), quality=Quality(), output=Output())
    area = scrolling(controls, None)  # type: ignore[arg-type]
    qtbot.addWidget(area)
    area.resize(320, 260)  # far shorter than the panel: it must scroll
    area.show()
    qtbot.waitExposed(area)
    return area, controls


def test_wheel_over_unfocused_controls_scrolls_the_panel(
    qtbot: QtBot, guard: wheel_guard.WheelGuard
) -> None:
    area, controls = panel(qtbot)
    bar = area.verticalScrollBar()
    assert bar.maximum() > 0
    changed: list[object] = []
    controls.quality_changed.connect(changed.append)
    controls.pose_changed.connect(changed.append)
    before = (controls.hop.currentIndex(), controls.steps.currentIndex(), controls.cfg.value())
    yaw = controls.pose_sliders["yaw"]
    for widget in (controls.hop, controls.steps, controls.cfg, yaw):
        area.ensureWidgetVisible(widget)
        if bar.value() == bar.maximum():
            bar.setValue(bar.maximum() - bar.singleStep() * 3)
        start = bar.value()
        wheel_down(widget)
        assert bar.value() > start, f"the panel did not scroll over {widget.accessibleName()}"
    after = (controls.hop.currentIndex(), controls.steps.currentIndex(), controls.cfg.value())
    assert after == before
    assert yaw.value() == 0
    assert changed == []
    for widget in (controls.hop, controls.steps, controls.cfg, yaw):
        assert widget.focusPolicy() != Qt.FocusPolicy.WheelFocus  # the wheel gives no focus


def test_a_focused_control_still_takes_the_wheel(
    qtbot: QtBot, guard: wheel_guard.WheelGuard
) -> None:
    _, controls = panel(qtbot)
    controls.hop.setFocus()
    qtbot.waitUntil(controls.hop.hasFocus)
    start = controls.hop.currentIndex()
    wheel_down(controls.hop)
    assert controls.hop.currentIndex() == start + 1


def test_spin_boxes_made_later_are_guarded_and_the_app_installs_the_guard(
    qtbot: QtBot, qapp: QApplication
) -> None:
    palette, sheet = qapp.palette(), qapp.styleSheet()
    app = desktop.create_app([])
    guard = app.findChild(wheel_guard.WheelGuard)
    try:
        assert isinstance(guard, wheel_guard.WheelGuard)
        assert wheel_guard.install(app) is guard  # installed once
        spin = QSpinBox()
        spin.setValue(5)
        spin.setFocusPolicy(Qt.FocusPolicy.WheelFocus)
        qtbot.addWidget(spin)
        spin.show()
        qtbot.waitExposed(spin)
        assert spin.focusPolicy() == Qt.FocusPolicy.StrongFocus
        wheel_down(spin)
        assert spin.value() == 5
    finally:
        app.removeEventFilter(guard)
        guard.setParent(None)
        app.setStyleSheet(sheet)
        app.setPalette(palette)
