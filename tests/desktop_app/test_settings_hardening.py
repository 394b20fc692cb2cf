"""Damaged settings files never stop the app (issue 17, class 8): bytes that are not UTF-8,
JSON nested too deeply, wrong types and out-of-range or non-finite numbers are set aside with a
notice and defaults load; the user's original bytes are always kept. Plus a property test over
arbitrary settings files (hypothesis, deterministic and bounded)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from desktop_app.settings import (
    BACKEND_CHOICES,
    HOP_CHOICES,
    STEPS_CHOICES,
    Output,
    Pose,
    Quality,
    Settings,
    SettingsStore,
)
from runtime.core import validate


def load_bytes(folder: Path, data: bytes) -> tuple[Settings, str | None]:
    store = SettingsStore(folder)
    folder.mkdir(parents=True, exist_ok=True)
    store.path.write_bytes(data)
    return store.load()


def kept_copies(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in folder.glob("settings*.json")]


@pytest.mark.parametrize(
    "data",
    [
        b'{"version": 1, "settings": {"microphone": "Mic \x85\xff"}}',  # Latin-1, not UTF-8
        b"\xff\xfe{\x00}\x00",  # UTF-16
        b'{"version": 1, "settings": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
        b"[" * 200_000 + b"]" * 200_000,
    ],
    ids=["latin-1", "utf-16", "nested-object", "nested-array"],
)
def test_unreadable_settings_are_set_aside_and_defaults_load(tmp_path: Path, data: bytes) -> None:
    settings, notice = load_bytes(tmp_path, data)
    assert settings == Settings()
    assert notice is not None and "damaged" in notice
    assert kept_copies(tmp_path) == [data], "the user's bytes are kept aside, unchanged"


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("yaw", "NaN", "finite"),
        ("pitch", "Infinity", "finite"),
        ("roll", "-1e400", "finite"),
        ("gaze_x", "1.5", "-1..1"),
        ("yaw", "1e9", "-30..30"),
    ],
)
def test_non_finite_and_out_of_range_pose_is_reset_with_a_notice(
    tmp_path: Path, field: str, value: str, says: str
) -> None:
    pose = '{"' + field + '": ' + value + "}"  # raw JSON tokens: NaN, Infinity, -1e400
    text = '{"version": 1, "settings": {"microphone": "Desk", "pose": ' + pose + "}}"
    settings, notice = load_bytes(tmp_path, text.encode())
    assert settings == Settings(microphone="Desk"), "the valid rest is kept"
    assert notice is not None and f"pose.{field}" in notice and says in notice
    assert kept_copies(tmp_path) == [text.encode()]


def test_quality_and_output_use_the_shared_ranges(tmp_path: Path) -> None:
    raw = {
        "quality": {"cfg_scale": 9.0, "steps": 4},
        "output": {"width": 10**30, "height": 8, "background_colour": "#123456"},
        "recordings_dir": "/tmp/a\x00b",
    }
    settings, notice = load_bytes(tmp_path, json.dumps({"settings": raw}).encode())
    assert settings.quality == Quality(steps=4)
    assert settings.output == Output(background_colour="#123456")
    assert settings.recordings_dir is None
    assert notice is not None
    for name in ("quality.cfg_scale", "output.width", "output.height", "recordings_dir"):
        assert name in notice or "more" in notice


def test_two_damaged_loads_in_one_second_keep_both_files(tmp_path: Path) -> None:
    load_bytes(tmp_path, b"first \xff")
    load_bytes(tmp_path, b"second \xff")
    assert sorted(kept_copies(tmp_path)) == [b"first \xff", b"second \xff"]


# --------------------------------------------------------------------------- property test


def _valid(settings: Settings) -> bool:
    """Every value within what the widgets and `runtime.core.validate` allow."""
    pose_ranges = {
        "yaw": validate.YAW,
        "pitch": validate.PITCH,
        "roll": validate.ROLL,
        "gaze_x": validate.GAZE_X,
        "gaze_y": validate.GAZE_Y,
    }
    for name, limits in pose_ranges.items():
        value = getattr(settings.pose, name)
        if not (math.isfinite(value) and limits.lo <= value <= limits.hi):
            return False
    q, o = settings.quality, settings.output
    return (
        (q.cfg_scale is None or validate.CFG.lo <= q.cfg_scale <= validate.CFG.hi)
        and q.steps in STEPS_CHOICES
        and q.hop in HOP_CHOICES
        and q.backend in BACKEND_CHOICES
        and validate.FRAME_SIDE.lo <= o.width <= validate.FRAME_SIDE.hi
        and validate.FRAME_SIDE.lo <= o.height <= validate.FRAME_SIDE.hi
    )


_NAMES = sorted(
    {f.name for cls in (Settings, Pose, Quality, Output) for f in fields(cls)} | {"settings"}
)
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["#1e2430", "webcam", "blur", "colour"]),
)
_TREES = st.recursive(
    _LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(_NAMES) | st.text(max_size=5), children, max_size=6),
    ),
    max_leaves=30,
)


def _document(tree: Any, good: Settings) -> bytes:
    doc = {"version": 1, "settings": {**asdict(good), **(tree if isinstance(tree, dict) else {})}}
    return json.dumps(doc, allow_nan=True).encode()


@hyp_settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    raw=st.one_of(
        st.binary(max_size=200),
        _TREES.map(lambda t: json.dumps(t, allow_nan=True).encode()),
        _TREES.map(lambda t: _document(t, Settings())),
    )
)
def test_any_settings_file_loads_to_valid_settings_and_keeps_the_users_bytes(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    folder = tmp_path_factory.mktemp("cfg")
    settings, notice = load_bytes(folder, raw)  # never raises
    assert isinstance(settings, Settings) and _valid(settings)
    assert raw in kept_copies(folder), "the original bytes survive, in place or set aside"
    if notice is None:
        assert (folder / "settings.json").read_bytes() == raw
    store = SettingsStore(folder / "again")
    store.save(settings)
    assert store.load() == (settings, None), "what was loaded saves and loads cleanly"
