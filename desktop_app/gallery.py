"""Saved avatars on disk (GUI thread; each call is a few small file operations).

One folder per avatar under `<data dir>/avatars/<id>/`:
  - `photo.png`: the photo as loaded (RGB), so the crop can be adjusted again later,
  - `avatar.png`: the accepted square crop at the model's input size (what the engine gets),
  - `meta.json`: name, crop square in photo pixels, creation time.
The built-in sample avatar is added once, on the first run, so the app has something to show.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from desktop_app.images import RGB, load_png, save_png
from runtime.core import paths

logger = logging.getLogger(__name__)

SEEDED_MARKER = ".sample-added"
MAX_NAME = 40


@dataclass(frozen=True)
class CropSquare:
    """A square in photo pixels: left, top and side."""

    x: int
    y: int
    size: int


@dataclass(frozen=True)
class AvatarEntry:
    id: str
    name: str
    crop: CropSquare
    created: float
    directory: Path

    @property
    def avatar_path(self) -> Path:
        return self.directory / "avatar.png"

    @property
    def photo_path(self) -> Path:
        return self.directory / "photo.png"


def clean_name(name: str, fallback: str = "Avatar") -> str:
    name = " ".join(name.split())[:MAX_NAME]
    return name or fallback


class Gallery:
    def __init__(self, root: Path) -> None:
        self.root = root

    def entries(self) -> list[AvatarEntry]:
        """Every readable avatar, oldest first (their order is also their number-key hotkey)."""
        if not self.root.is_dir():
            return []
        found: list[AvatarEntry] = []
        for folder in self.root.iterdir():
            if not folder.is_dir():
                continue
            entry = self._read(folder)
            if entry is not None:
                found.append(entry)
        return sorted(found, key=lambda e: (e.created, e.id))

    def get(self, avatar_id: str) -> AvatarEntry | None:
        folder = self.root / avatar_id
        return self._read(folder) if folder.is_dir() else None

    def add(self, *, name: str, photo: RGB, crop: CropSquare, avatar: RGB) -> AvatarEntry:
        """Save a new avatar: the photo, its accepted crop (already resized) and the square."""
        paths.check_root(self.root, what="avatars folder")  # a file in its place: one sentence
        avatar_id = uuid.uuid4().hex[:12]
        folder = self.root / avatar_id
        staging = self.root / f".{avatar_id}.partial"
        staging.mkdir(parents=True)
        try:
            save_png(photo, staging / "photo.png")
            save_png(avatar, staging / "avatar.png")
            meta = {
                "name": clean_name(name),
                "crop": {"x": crop.x, "y": crop.y, "size": crop.size},
                "created": time.time(),
            }
            (staging / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
            staging.rename(folder)  # a half-written avatar never shows up in the gallery
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self._require(avatar_id)

    def rename(self, avatar_id: str, name: str) -> AvatarEntry:
        entry = self._require(avatar_id)
        meta = self._meta(entry.directory)
        meta["name"] = clean_name(name, entry.name)
        self._write_meta(entry.directory, meta)
        return self._require(avatar_id)

    def recrop(self, avatar_id: str, *, crop: CropSquare, avatar: RGB) -> AvatarEntry:
        entry = self._require(avatar_id)
        save_png(avatar, entry.avatar_path)
        meta = self._meta(entry.directory)
        meta["crop"] = {"x": crop.x, "y": crop.y, "size": crop.size}
        self._write_meta(entry.directory, meta)
        return self._require(avatar_id)

    def delete(self, avatar_id: str) -> None:
        entry = self._require(avatar_id)
        shutil.rmtree(entry.directory)

    def load_avatar(self, avatar_id: str) -> RGB:
        return load_png(self._require(avatar_id).avatar_path)

    def load_photo(self, avatar_id: str) -> RGB:
        return load_png(self._require(avatar_id).photo_path)

    def needs_sample(self) -> bool:
        """True once: on the first run, before the built-in sample has been added."""
        return not (self.root / SEEDED_MARKER).exists()

    def mark_sample_added(self) -> None:
        paths.check_root(self.root, what="avatars folder")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / SEEDED_MARKER).touch()

    def _require(self, avatar_id: str) -> AvatarEntry:
        entry = self.get(avatar_id)
        if entry is None:
            raise KeyError(f"no avatar {avatar_id!r}")
        return entry

    @staticmethod
    def _meta(folder: Path) -> dict[str, object]:
        raw = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("meta.json is not an object")
        return raw

    @staticmethod
    def _write_meta(folder: Path, meta: dict[str, object]) -> None:
        tmp = folder / "meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
        tmp.replace(folder / "meta.json")

    def _read(self, folder: Path) -> AvatarEntry | None:
        if folder.name.startswith("."):
            return None
        try:
            meta = self._meta(folder)
            crop = meta["crop"]
            if not isinstance(crop, dict):
                raise TypeError("crop is not an object")
            square = CropSquare(x=int(crop["x"]), y=int(crop["y"]), size=int(crop["size"]))
            if not (folder / "avatar.png").is_file():
                raise FileNotFoundError("avatar.png")
            created = meta["created"]
            if not isinstance(created, (int, float, str)):
                raise TypeError("created is not a number")
            return AvatarEntry(
                id=folder.name,
                name=clean_name(str(meta["name"])),
                crop=square,
                created=float(created),
                directory=folder,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("skipping unreadable avatar folder %s: %s", folder, exc)
            return None
