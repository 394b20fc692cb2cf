"""The wav2vec2 audio encoder port reproduces the reference's golden features (recipe weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.audio_encoder import (
    AudioEncoder,
    audio_encoder_state_dict,
    normalize_audio,
    num_frames,
    pad_audio,
)
from models.recipe import Manifest, read_manifest, recipe_state_dict
from tests.support.golden import rel_err

FEATURE_TOL = 1e-4


@pytest.fixture(scope="module")
def golden(golden_dir: Path) -> dict[str, np.ndarray]:
    with np.load(golden_dir / "generator_golden.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def manifest(golden_dir: Path) -> Manifest:
    return read_manifest(golden_dir / "wav2vec2_manifest.json")


@pytest.fixture(scope="module")
def encoder(manifest: Manifest) -> AudioEncoder:
    model = AudioEncoder().eval()
    model.load_state_dict(audio_encoder_state_dict(recipe_state_dict(manifest)), strict=True)
    return model


def test_checkpoint_keys_and_shapes_match_manifest(manifest: Manifest) -> None:
    expected = {
        e.key.removeprefix("wav2vec2."): e.shape
        for e in manifest.entries
        if e.key.startswith("wav2vec2.") and e.key != "wav2vec2.masked_spec_embed"
    }
    actual = {k: tuple(v.shape) for k, v in AudioEncoder().state_dict().items()}
    assert actual == expected


def test_state_dict_helper_drops_head_and_spec_embed(manifest: Manifest) -> None:
    raw = {e.key: torch.zeros(1) for e in manifest.entries}
    kept = audio_encoder_state_dict(raw)
    assert "masked_spec_embed" not in kept
    assert not any(k.startswith("lm_head") for k in kept)
    assert all(not k.startswith("wav2vec2.") for k in kept)
    nested = audio_encoder_state_dict(
        {f"model.audio_encoder.{k}": v for k, v in raw.items()},
        prefix="model.audio_encoder.wav2vec2.",
    )
    assert nested.keys() == kept.keys()


def test_normalize_matches_golden(golden: dict[str, np.ndarray]) -> None:
    audio = torch.from_numpy(golden["audio_16k"])[None]
    out = normalize_audio(audio)[0]
    assert rel_err(out, golden["audio_normalized"]) <= 1e-6
    assert abs(float(out.mean())) < 1e-5
    assert abs(float(out.std(unbiased=False)) - 1.0) < 1e-4


def test_frame_count_and_padding(golden: dict[str, np.ndarray]) -> None:
    assert num_frames(48_000) == int(golden["num_frames"]) == 75
    assert num_frames(48_001) == 76
    assert num_frames(639) == 1
    exact = torch.arange(48_000, dtype=torch.float32)[None]
    assert pad_audio(exact, 75) is exact
    short = torch.arange(48_001, dtype=torch.float32)[None]
    padded = pad_audio(short, num_frames(48_001))
    assert padded.shape == (1, 76 * 640)
    assert torch.equal(padded[:, :48_001], short)
    assert torch.all(padded[:, 48_001:] == short[0, -1])


def test_features_match_golden(encoder: AudioEncoder, golden: dict[str, np.ndarray]) -> None:
    audio = torch.from_numpy(golden["audio_normalized"])[None]
    with torch.no_grad():
        feats = encoder(pad_audio(audio, 75))
    assert feats.shape == (1, 75, 768)
    assert rel_err(feats, golden["audio_features"]) <= FEATURE_TOL


def test_encode_from_raw_audio_matches_golden(
    encoder: AudioEncoder, golden: dict[str, np.ndarray]
) -> None:
    feats = encoder.encode(torch.from_numpy(golden["audio_16k"])[None])
    assert rel_err(feats, golden["audio_features"]) <= FEATURE_TOL


def test_frames_follow_input_length(encoder: AudioEncoder) -> None:
    audio = normalize_audio(torch.randn(1, 16_000, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        assert encoder(audio).shape == (1, 25, 768)
        assert encoder(audio[:, : 13 * 640]).shape == (1, 13, 768)


def test_batch_rows_are_independent(encoder: AudioEncoder, golden: dict[str, np.ndarray]) -> None:
    a = torch.from_numpy(golden["audio_normalized"])[None, :32_000]
    b = normalize_audio(torch.randn(1, 32_000, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        both = encoder(torch.cat([a, b]))
        one_a, one_b = encoder(a), encoder(b)
    torch.testing.assert_close(both[:1], one_a, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(both[1:], one_b, rtol=1e-4, atol=1e-4)


def test_positional_conv_weight_is_weight_norm(encoder: AudioEncoder) -> None:
    conv = encoder.encoder.pos_conv_embed.conv
    expected = torch._weight_norm(conv.weight_v, conv.weight_g, 2)
    torch.testing.assert_close(conv.weight(), expected, rtol=1e-6, atol=1e-7)
