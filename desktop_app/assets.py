"""The app's bundled resources (any thread): icon, theme and the built-in sample avatar."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from desktop_app.gallery import CropSquare


def _resource(name: str) -> Path:
    return Path(str(resources.files("resources").joinpath(name)))


def icon_path() -> Path:
    return _resource("icon.png")


def theme_qss() -> str:
    return _resource("theme.qss").read_text(encoding="utf-8")


@dataclass(frozen=True)
class SampleAvatar:
    name: str
    photo: Path
    crop: CropSquare


def sample_avatar() -> SampleAvatar:
    """The illustrated portrait drawn by `resources/make_assets.py`, with its face crop."""
    meta = json.loads(_resource("sample_avatar.json").read_text(encoding="utf-8"))
    crop = meta["crop"]
    return SampleAvatar(
        name=str(meta["name"]),
        photo=_resource("sample_avatar.png"),
        crop=CropSquare(x=int(crop["x"]), y=int(crop["y"]), size=int(crop["size"])),
    )
