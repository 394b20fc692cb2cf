"""Call audio (GUI thread): the virtual microphone, the noise gate, mute and push-to-talk.

The group reports a whole frozen `CallAudio` when any setting changes; mute and the
push-to-talk key are reported on their own (`muted_changed`, `talking_changed`), since they are
momentary. The push-to-talk and mute keys are watched by an application-wide event filter, so
they work whichever widget has the focus; leaving the app counts as letting go of the key, so
the microphone never stays open behind the user's back. With "Keys work in other apps" (where
`global_hotkeys.support()` allows) a system-wide listener reports the same keys while the call
app has the focus.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QKeySequenceEdit,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_app import global_hotkeys
from desktop_app.global_hotkeys import GlobalKeys, HotkeySupport
from desktop_app.services import VirtualMicInfo
from desktop_app.settings import GATE_RANGE, MAX_MIC_DELAY_RANGE, MIC_OFFSET_RANGE, CallAudio

VMIC_NAME = "imtalker-cam Microphone"
VMIC_HINT = (
    f'Call apps (Zoom, Teams, Meet, OBS) then choose "{VMIC_NAME}" as the microphone: your voice '
    "arrives delayed to match the avatar's lips. Takes effect the next time you go live."
)


class CallAudioPanel(QGroupBox):
    call_audio_changed = Signal(object)  # CallAudio
    muted_changed = Signal(bool)
    talking_changed = Signal(bool)

    def __init__(
        self,
        call_audio: CallAudio,
        parent: QWidget | None = None,
        *,
        hotkeys: HotkeySupport | None = None,
        keyboard: Any = None,
    ) -> None:
        """`hotkeys`/`keyboard`: whether system-wide keys work here and the `pynput.keyboard`
        module (found out and imported when not given; tests pass a fake keyboard)."""
        super().__init__("Call audio", parent)
        self.hotkeys = hotkeys or global_hotkeys.support()
        self._global: GlobalKeys | None = None
        if self.hotkeys.available:
            module = keyboard if keyboard is not None else global_hotkeys.load_keyboard()
            self._global = GlobalKeys(module, self)
            self._global.pressed.connect(self._global_pressed)
            self._global.released.connect(self._global_released)
            app = QApplication.instance()
            if app is not None:  # the listener's thread never outlives the app
                app.aboutToQuit.connect(self.stop_global_keys)
        self._watching: list[str] = []
        self._value = call_audio
        self._talking = False
        self._filtering = False
        self._info: VirtualMicInfo | None = None
        self._live = False

        self.virtual_mic = QCheckBox("&Delayed virtual microphone", self)
        self.virtual_mic.setToolTip(VMIC_HINT)
        self.virtual_mic.setAccessibleName("Delayed virtual microphone")
        self.vmic_state = QLabel(self)
        self.vmic_state.setWordWrap(True)
        self.vmic_state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.vmic_state.setAccessibleName("Virtual microphone state")
        self.offset = QSpinBox(self)
        self.offset.setRange(int(MIC_OFFSET_RANGE.lo), int(MIC_OFFSET_RANGE.hi))
        self.offset.setSingleStep(10)
        self.offset.setSuffix(" ms")
        self.offset.setAccessibleName("Extra microphone delay")
        self.offset.setToolTip(
            "Added to the measured delay: more if the call app shows video later than it "
            "plays sound, less if the voice now comes after the lips"
        )

        self.max_delay = QSpinBox(self)
        self.max_delay.setRange(int(MAX_MIC_DELAY_RANGE.lo), int(MAX_MIC_DELAY_RANGE.hi))
        self.max_delay.setSingleStep(100)
        self.max_delay.setSuffix(" ms")
        self.max_delay.setAccessibleName("Longest microphone delay")
        self.max_delay.setToolTip(
            "The call never hears your voice later than this. When the video is further "
            "behind (a slow computer), the voice stays this late and the lips are not in sync."
        )

        self.gate = QCheckBox("Noise gate", self)
        self.gate.setAccessibleName("Noise gate")
        self.gate.setToolTip(
            "Sound quieter than the threshold reaches the avatar as silence, so it does not "
            "mouth typing or a fan. The threshold is the white mark on the level meter."
        )
        self.gate_level = QSpinBox(self)
        self.gate_level.setRange(int(GATE_RANGE.lo), int(GATE_RANGE.hi))
        self.gate_level.setSuffix(" dB")
        self.gate_level.setAccessibleName("Noise gate threshold")

        self.mute = QPushButton("Mute", self)
        self.mute.setCheckable(True)
        self.mute.setAccessibleName("Mute")
        self.mute.setToolTip(
            "The avatar idles and the virtual microphone carries silence until you unmute"
        )
        self.push_to_talk = QCheckBox("Push-to-tal&k", self)
        self.push_to_talk.setToolTip("The microphone is open only while the key is held")
        self.push_to_talk.setAccessibleName("Push-to-talk")
        self.ptt_key = QKeySequenceEdit(self)
        self.ptt_key.setMaximumSequenceLength(1)
        self.ptt_key.setAccessibleName("Push-to-talk key")
        self.talk_state = QLabel(self)
        self.talk_state.setAccessibleName("Microphone state")
        self.talk_state.setWordWrap(True)
        self.mute_key = QKeySequenceEdit(self)
        self.mute_key.setMaximumSequenceLength(1)
        self.mute_key.setAccessibleName("Mute key")
        self.mute_key.setToolTip("Press it to mute or unmute")
        self.global_keys = QCheckBox("Keys work in other apps", self)
        self.global_keys.setAccessibleName("Push-to-talk and mute keys work in other apps")
        self.global_keys.setToolTip(
            "The push-to-talk and mute keys work while the call app has the focus"
            if self.hotkeys.available
            else (self.hotkeys.reason or "Not available here")
        )
        self.global_keys.setEnabled(self.hotkeys.available)
        self.keys_note = QLabel(self)
        self.keys_note.setObjectName("Hint")
        self.keys_note.setWordWrap(True)
        self.keys_note.setAccessibleName("About the system-wide keys")
        self.keys_note.setText("" if self.hotkeys.available else (self.hotkeys.reason or ""))
        self.keys_note.setVisible(not self.hotkeys.available)

        gate_row = QHBoxLayout()
        gate_row.addWidget(self.gate)
        gate_row.addWidget(self.gate_level, 1)
        ptt_row = QHBoxLayout()
        ptt_row.addWidget(self.push_to_talk)
        ptt_row.addWidget(self.ptt_key, 1)
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        offset_label = QLabel("Extra delay", self)
        offset_label.setBuddy(self.offset)
        form.addRow(offset_label, self.offset)
        max_label = QLabel("Longest delay", self)
        max_label.setBuddy(self.max_delay)
        form.addRow(max_label, self.max_delay)
        root = QVBoxLayout(self)
        root.addWidget(self.virtual_mic)
        root.addWidget(self.vmic_state)
        root.addLayout(form)
        root.addLayout(gate_row)
        root.addWidget(self.mute)
        root.addLayout(ptt_row)
        mute_row = QHBoxLayout()
        mute_label = QLabel("Mute key", self)
        mute_label.setBuddy(self.mute_key)
        mute_row.addWidget(mute_label)
        mute_row.addWidget(self.mute_key, 1)
        root.addLayout(mute_row)
        root.addWidget(self.global_keys)
        root.addWidget(self.keys_note)
        root.addWidget(self.talk_state)

        self.set_value(call_audio)
        self.show_virtual_mic(None, live=False)
        self.virtual_mic.toggled.connect(self._edited)
        self.offset.valueChanged.connect(self._edited)
        self.max_delay.valueChanged.connect(self._edited)
        self.gate.toggled.connect(self._edited)
        self.gate_level.valueChanged.connect(self._edited)
        self.push_to_talk.toggled.connect(self._edited)
        self.ptt_key.keySequenceChanged.connect(self._edited)
        self.mute_key.keySequenceChanged.connect(self._edited)
        self.global_keys.toggled.connect(self._edited)
        self.mute.toggled.connect(self._mute_toggled)

    # ---- values

    @property
    def value(self) -> CallAudio:
        return self._value

    @property
    def muted(self) -> bool:
        return self.mute.isChecked()

    @property
    def talking(self) -> bool:
        return self._talking

    def set_value(self, call_audio: CallAudio) -> None:
        widgets = (
            self.virtual_mic,
            self.offset,
            self.max_delay,
            self.gate,
            self.gate_level,
            self.push_to_talk,
            self.ptt_key,
            self.mute_key,
            self.global_keys,
        )
        for w in widgets:
            w.blockSignals(True)
        try:
            self.virtual_mic.setChecked(call_audio.virtual_mic)
            self.offset.setValue(round(call_audio.mic_offset_ms))
            self.max_delay.setValue(round(call_audio.max_mic_delay_ms))
            self.gate.setChecked(call_audio.gate)
            self.gate_level.setValue(round(call_audio.gate_dbfs))
            self.push_to_talk.setChecked(call_audio.push_to_talk)
            self.ptt_key.setKeySequence(QKeySequence(call_audio.ptt_key))
            self.mute_key.setKeySequence(QKeySequence(call_audio.mute_key))
            self.global_keys.setChecked(call_audio.global_keys and self.hotkeys.available)
        finally:
            for w in widgets:
                w.blockSignals(False)
        self._value = call_audio
        self._sync()

    def _edited(self) -> None:
        key = self.ptt_key.keySequence().toString(QKeySequence.SequenceFormat.PortableText)
        mute = self.mute_key.keySequence().toString(QKeySequence.SequenceFormat.PortableText)
        self._value = replace(
            self._value,
            virtual_mic=self.virtual_mic.isChecked(),
            mic_offset_ms=float(self.offset.value()),
            max_mic_delay_ms=float(self.max_delay.value()),
            gate=self.gate.isChecked(),
            gate_dbfs=float(self.gate_level.value()),
            push_to_talk=self.push_to_talk.isChecked(),
            ptt_key=key or self._value.ptt_key,
            mute_key=mute,
            global_keys=self.global_keys.isChecked(),
        )
        self._sync()
        self.call_audio_changed.emit(self._value)

    def _sync(self) -> None:
        v = self._value
        self.offset.setEnabled(v.virtual_mic)
        self.max_delay.setEnabled(v.virtual_mic)
        self.gate_level.setEnabled(v.gate)
        self.ptt_key.setEnabled(v.push_to_talk)
        self._set_filter(v.push_to_talk or bool(v.mute_key))
        self._watch_globally()
        if not v.push_to_talk:
            self._set_talking(False)
        self._show_talk_state()
        self.show_virtual_mic(self._info, live=self._live)

    def tab_chain(self) -> list[QWidget]:
        return [
            self.virtual_mic,
            self.offset,
            self.max_delay,
            self.gate,
            self.gate_level,
            self.mute,
            self.push_to_talk,
            self.ptt_key,
            self.mute_key,
            self.global_keys,
        ]

    # ---- live state

    def show_virtual_mic(self, info: VirtualMicInfo | None, *, live: bool) -> None:
        """What the running session says about its virtual microphone (None: not live, or
        not asked for)."""
        self._info, self._live = info, live
        if info is None:
            text = (
                f"Off. {VMIC_HINT}"
                if not self._value.virtual_mic
                else f'"{VMIC_NAME}" appears while live.'
            )
            if live and self._value.virtual_mic:
                text = (
                    "Not in this session: it starts when you go live with the microphone "
                    "as the source."
                )
        elif info.open:
            delay = "measuring…" if info.delay_ms is None else f"{info.delay_ms:.0f} ms"
            text = f'Pick "{info.device}" in the call app · delay in use {delay}'
            if info.out_of_sync is not None:
                text += f" · {info.out_of_sync}"
        else:
            text = f"No virtual microphone: {info.reason or 'unavailable'}"
        self.vmic_state.setText(text)
        self.vmic_state.setAccessibleDescription(text)

    def _mute_toggled(self, muted: bool) -> None:
        self.mute.setText("Unmute" if muted else "Mute")
        self._show_talk_state()
        self.muted_changed.emit(muted)

    def _show_talk_state(self) -> None:
        if self.mute.isChecked():
            text = "Muted: the avatar idles, the call hears silence."
        elif self._value.push_to_talk:
            key = QKeySequence(self._value.ptt_key).toString(QKeySequence.SequenceFormat.NativeText)
            anywhere = " (in any app)" if self.global_ptt else ""
            text = "Talking." if self._talking else f"Hold {key} to talk{anywhere}."
        else:
            text = ""
        self.talk_state.setText(text)
        self.talk_state.setVisible(bool(text))

    # ---- push-to-talk and mute keys

    @property
    def global_ptt(self) -> bool:
        """The push-to-talk key is watched system-wide right now."""
        return self._value.push_to_talk and self._value.ptt_key in self._watching

    def _watch_globally(self) -> None:
        if self._global is None:
            return
        v = self._value
        keys = [v.ptt_key] if v.push_to_talk else []
        keys += [v.mute_key] if v.mute_key else []
        wanted = keys if v.global_keys else []
        if wanted == self._watching:
            return
        refused = self._global.watch(wanted) if wanted else []
        if not wanted:
            self._global.stop()
        self._watching = [k for k in wanted if k not in refused]
        self.keys_note.setText(
            f"These keys work only in this window: {', '.join(refused)}." if refused else ""
        )
        self.keys_note.setVisible(bool(refused))

    def _global_pressed(self, key: str) -> None:
        v = self._value
        if v.push_to_talk and key == v.ptt_key:
            self._set_talking(True)
        if key == v.mute_key:
            self.mute.toggle()

    def _global_released(self, key: str) -> None:
        if self._value.push_to_talk and key == self._value.ptt_key:
            self._set_talking(False)

    def stop_global_keys(self) -> None:
        """Stop the system-wide listener (the window is closing)."""
        if self._global is not None:
            self._global.stop()
        self._watching = []

    def _set_filter(self, on: bool) -> None:
        app = QApplication.instance()
        if app is None or on == self._filtering:
            return
        if on:
            app.installEventFilter(self)
        else:
            app.removeEventFilter(self)
        self._filtering = on

    def _set_talking(self, held: bool) -> None:
        if held == self._talking:
            return
        self._talking = held
        self._show_talk_state()
        self.talking_changed.emit(held)

    @staticmethod
    def _is_key(event: QKeyEvent, portable: str) -> bool:
        wanted = QKeySequence(portable)
        if not portable or wanted.isEmpty():
            return False
        # The stubs lack QKeySequence.__getitem__ (Qt's operator[]), which PySide6 has.
        first = wanted[0]  # type: ignore[index]
        return bool(event.key() == first.key())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        v = self._value
        if kind == QEvent.Type.ApplicationDeactivate:
            if not self.global_ptt:  # the system-wide listener still sees the key
                self._set_talking(False)
        elif kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) and isinstance(
            event, QKeyEvent
        ):
            if self.ptt_key.hasFocus() or self.mute_key.hasFocus() or event.isAutoRepeat():
                return False
            if v.push_to_talk and self._is_key(event, v.ptt_key):
                self._set_talking(kind == QEvent.Type.KeyPress)
                return True
            if self._is_key(event, v.mute_key):
                # With the system-wide listener on it reports this press too: toggle once.
                if kind == QEvent.Type.KeyPress and v.mute_key not in self._watching:
                    self.mute.toggle()
                return True
        return False
