"""The one-time safetensors conversion: verified against our modules, loaded back unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.loading import load_models

pytestmark = pytest.mark.slow


def convert(weights: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "models.to_safetensors",
            "--weights",
            str(weights),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


EXPECTED = (
    "renderer.safetensors",
    "generator.safetensors",
    "wav2vec2-base-960h/model.safetensors",
    "wav2vec2-base-960h/config.json",
)


def test_converted_folder_loads_the_same_weights(tmp_path: Path, recipe_weights: Path) -> None:
    out = tmp_path / "safe"
    done = convert(recipe_weights, out)
    assert done.returncode == 0, done.stderr
    for name in EXPECTED:
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.ckpt")) and not list(out.rglob("*.bin"))
    original, converted = load_models(recipe_weights), load_models(out)
    for a, b in (
        (original.renderer, converted.renderer),
        (original.generator, converted.generator),
        (original.audio_encoder, converted.audio_encoder),
    ):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_checkpoint_that_does_not_fit_is_not_converted(
    tmp_path: Path, recipe_weights: Path
) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "renderer.ckpt").symlink_to(recipe_weights / "generator.ckpt")  # wrong file
    out = tmp_path / "safe"
    done = convert(weights, out)
    assert done.returncode == 1
    assert "renderer.ckpt" in done.stderr
    assert not (out / "renderer.safetensors").exists()
