"""The avatar gallery on disk, and the built-in sample avatar the first run adds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from desktop_app import assets
from desktop_app.app import add_sample_avatar
from desktop_app.gallery import CropSquare, Gallery
from desktop_app.images import load_png
from desktop_app.runtime_services.models import RuntimeAvatars


def _image(value: int, side: int = 256) -> np.ndarray:
    return np.full((side, side, 3), value, np.uint8)


def test_add_list_rename_recrop_delete(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path / "avatars")
    assert gallery.entries() == []
    first = gallery.add(
        name="  Ada   Lovelace ",
        photo=_image(10, 300),
        crop=CropSquare(1, 2, 200),
        avatar=_image(20),
    )
    second = gallery.add(
        name="", photo=_image(30, 300), crop=CropSquare(0, 0, 300), avatar=_image(40)
    )
    assert [e.id for e in gallery.entries()] == [first.id, second.id]  # oldest first
    assert first.name == "Ada Lovelace" and second.name == "Avatar"
    assert first.crop == CropSquare(1, 2, 200)
    assert int(gallery.load_avatar(first.id)[0, 0, 0]) == 20
    assert gallery.load_photo(first.id).shape == (300, 300, 3)

    renamed = gallery.rename(first.id, "Ada")
    assert renamed.name == "Ada" and gallery.get(first.id) == renamed
    recropped = gallery.recrop(first.id, crop=CropSquare(5, 5, 100), avatar=_image(99))
    assert recropped.crop == CropSquare(5, 5, 100)
    assert int(gallery.load_avatar(first.id)[0, 0, 0]) == 99

    gallery.delete(first.id)
    assert [e.id for e in gallery.entries()] == [second.id]
    with pytest.raises(KeyError):
        gallery.rename(first.id, "gone")


def test_unreadable_and_half_written_folders_are_skipped(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path)
    good = gallery.add(name="Good", photo=_image(1), crop=CropSquare(0, 0, 256), avatar=_image(2))
    (tmp_path / ".deadbeef.partial").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")
    no_image = tmp_path / "noimage"
    no_image.mkdir()
    (no_image / "meta.json").write_text(
        '{"name": "x", "crop": {"x": 0, "y": 0, "size": 1}, "created": 0}'
    )
    assert [e.id for e in gallery.entries()] == [good.id]


def test_sample_avatar_is_added_once_with_a_detectable_face(tmp_path: Path) -> None:
    avatars = RuntimeAvatars()
    sample = assets.sample_avatar()
    photo = avatars.load_photo(sample.photo)
    # The illustrated face is one the app's own face finder finds, and the stored crop is
    # the one it suggests (so the sample is framed like any user photo).
    assert avatars.detect_face(photo) == sample.crop
    assert 0.6 < sample.crop.size / photo.shape[0] < 0.9

    gallery = Gallery(tmp_path)
    add_sample_avatar(gallery, avatars)
    add_sample_avatar(gallery, avatars)
    entries = gallery.entries()
    assert [e.name for e in entries] == ["Sample"]
    avatar = load_png(entries[0].avatar_path)
    assert avatar.shape == (512, 512, 3)  # the current model version's; re-cut for another
    # Deleting the sample does not bring it back on the next start.
    gallery.delete(entries[0].id)
    add_sample_avatar(gallery, avatars)
    assert gallery.entries() == []
