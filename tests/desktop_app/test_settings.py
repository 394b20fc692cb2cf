"""Settings: saved atomically as JSON, a damaged file set aside with a notice, bad fields reset."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from desktop_app.settings import Output, Pose, Quality, Settings, SettingsStore


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "cfg")
    settings = Settings(
        source="webcam",
        microphone="USB Mic",
        webcam="Integrated Camera",
        avatar_id="abc123",
        pose=Pose(yaw=12.0, pitch=-5.0, roll=3.0, gaze_x=0.25, gaze_y=-0.5, natural=False),
        quality=Quality(cfg_scale=3.5, steps=4, hop=10, fewer_steps=True),
        output=Output(
            width=1920, height=1080, mirror=True, background="colour", background_colour="#112233"
        ),
        show_overlay=False,
        window_geometry="AAAA",
    )
    store.save(settings)
    loaded, notice = store.load()
    assert notice is None
    assert loaded == settings


def test_missing_file_gives_defaults_without_notice(tmp_path: Path) -> None:
    assert SettingsStore(tmp_path).load() == (Settings(), None)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    store.save(Settings(avatar_id="one"))
    store.save(Settings(avatar_id="two"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]
    assert json.loads(store.path.read_text())["settings"]["avatar_id"] == "two"


def test_corrupt_file_is_set_aside_and_defaults_load_with_a_notice(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    store.path.write_text('{"settings": {"source": "webc')  # truncated mid-write
    settings, notice = store.load()
    assert settings == Settings()
    assert notice is not None and "damaged" in notice
    aside = list(tmp_path.glob("settings.corrupt-*.json"))
    assert len(aside) == 1
    assert aside[0].name in notice
    assert aside[0].read_text() == '{"settings": {"source": "webc'
    assert not store.path.exists()
    # The next save works and the next load is clean.
    store.save(replace(settings, avatar_id="x"))
    assert store.load() == (Settings(avatar_id="x"), None)


def test_json_that_is_not_settings_counts_as_corrupt(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    store.path.write_text("[1, 2, 3]")
    settings, notice = store.load()
    assert settings == Settings() and notice is not None
    assert list(tmp_path.glob("settings.corrupt-*.json"))


def test_a_bad_field_falls_back_alone(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    raw = {
        "version": 1,
        "settings": {
            "source": "telepathy",  # not a choice
            "microphone": "Desk Mic",
            "pose": {"yaw": 500, "pitch": 4, "natural": "yes"},  # out of range, ok, wrong type
            "quality": {"steps": 7, "hop": 10, "cfg_scale": 2.5},  # 7 is not offered
            "output": {"width": "wide", "background_colour": "#zzzzzz", "mirror": True},
            "unknown_future_field": 1,
        },
    }
    store.path.write_text(json.dumps(raw))
    settings, notice = store.load()
    # The user is told which settings were reset, and the original file is kept aside.
    assert notice is not None and "pose.yaw" in notice and "source" in notice
    assert len(list(tmp_path.glob("settings.corrupt-*.json"))) == 1
    assert settings.source == "microphone"
    assert settings.microphone == "Desk Mic"
    assert settings.pose == Pose(pitch=4.0)
    assert settings.quality == Quality(cfg_scale=2.5, hop=10)
    assert settings.output == Output(mirror=True)
