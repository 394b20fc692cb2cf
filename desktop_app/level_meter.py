"""A microphone level meter in dB (GUI thread), drawn like OBS Studio's audio mixer.

The bar spans -60..0 dBFS: green up to -20 dB, yellow to -9 dB, red above; the RMS level is
the filled bar, the peak a bright tick, and the highest recent peak is held for a moment.
A peak at or above -0.5 dBFS lights the clip mark for two seconds, so a short clip is seen.
Readings arrive 30 times a second from the capture side (`set_level`); `reset()` empties it.
The noise gate's threshold, when set (`set_gate`), is a white mark with the bar below it dimmed:
sound that stays left of the mark reaches the avatar as silence.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from desktop_app.services import AudioLevel

FLOOR_DB = -60.0
YELLOW_DB = -20.0
RED_DB = -9.0
CLIP_DB = -0.5
HOLD_S = 1.5
CLIP_HOLD_S = 2.0
_CLIP_W = 22

_GREEN = (QColor("#3ecf8e"), QColor("#1a2c26"))  # (lit, unlit)
_YELLOW = (QColor("#f5c542"), QColor("#2f2b1c"))
_RED = (QColor("#e5484d"), QColor("#341d20"))


def fraction(db: float) -> float:
    """Where `db` sits on the bar (0 at the floor, 1 at 0 dBFS)."""
    return min(1.0, max(0.0, (db - FLOOR_DB) / -FLOOR_DB))


class LevelMeter(QWidget):
    level_changed = Signal(float)  # RMS in dBFS, after each reading

    def __init__(
        self, parent: QWidget | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(parent)
        self._clock = clock
        self.setAccessibleName("Microphone level")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(120)
        self.rms_db = FLOOR_DB
        self.peak_db = FLOOR_DB
        self._held_db = FLOOR_DB
        self._held_at = 0.0
        self._clip_at = -CLIP_HOLD_S
        self.updates = 0
        self.gate_db: float | None = None

    def sizeHint(self) -> QSize:
        return QSize(220, 16)

    def minimumSizeHint(self) -> QSize:
        return QSize(120, 16)

    @property
    def clipping(self) -> bool:
        return self._clock() - self._clip_at < CLIP_HOLD_S

    def text(self) -> str:
        """The reading in words (the accessible description)."""
        if self.rms_db <= FLOOR_DB:
            return "silent"
        return f"{self.rms_db:.0f} dB, peak {self.peak_db:.0f} dB" + (
            ", clipping" if self.clipping else ""
        )

    def set_level(self, level: AudioLevel) -> None:
        now = self._clock()
        self.rms_db = max(FLOOR_DB, level.rms_db)
        self.peak_db = max(FLOOR_DB, level.peak_db)
        if self.peak_db >= self._held_db or now - self._held_at > HOLD_S:
            self._held_db, self._held_at = self.peak_db, now
        if level.peak_db >= CLIP_DB:
            self._clip_at = now
        self.updates += 1
        self.setAccessibleDescription(self.text())
        self.update()
        self.level_changed.emit(self.rms_db)

    def set_gate(self, db: float | None) -> None:
        self.gate_db = db
        self.setToolTip(
            "" if db is None else f"Noise gate at {db:.0f} dB: quieter sound does not move the lips"
        )
        self.update()

    def reset(self) -> None:
        self.rms_db = self.peak_db = self._held_db = FLOOR_DB
        self._clip_at = -CLIP_HOLD_S
        self.setAccessibleDescription(self.text())
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        h = self.height()
        bar_h = min(12.0, h - 4.0)
        top = (h - bar_h) / 2
        width = self.width() - _CLIP_W - 4
        enabled = self.isEnabled()
        zones = ((FLOOR_DB, YELLOW_DB, _GREEN), (YELLOW_DB, RED_DB, _YELLOW), (RED_DB, 0.0, _RED))
        level = fraction(self.rms_db) * width
        for lo, hi, (lit, unlit) in zones:
            x0, x1 = fraction(lo) * width, fraction(hi) * width
            p.fillRect(QRectF(x0, top, x1 - x0, bar_h), unlit)
            if enabled and level > x0:
                p.fillRect(QRectF(x0, top, min(level, x1) - x0, bar_h), lit)
        if enabled:
            for db, colour in (
                (self.peak_db, QColor("#ffffff")),
                (self._held_db, QColor("#cfd5e0")),
            ):
                if db > FLOOR_DB:
                    x = fraction(db) * width
                    p.fillRect(QRectF(x - 1, top - 1, 2, bar_h + 2), colour)
        if self.gate_db is not None:
            x = fraction(self.gate_db) * width
            p.fillRect(QRectF(0, top, x, bar_h), QColor(0, 0, 0, 110))
            p.fillRect(QRectF(x - 1, top - 3, 2, bar_h + 6), QColor("#ffffff"))
        clip = QRectF(width + 4, top, _CLIP_W, bar_h)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(_RED[0] if enabled and self.clipping else _RED[1])
        p.drawRoundedRect(clip, 3, 3)
        p.end()
