"""`imtalker-cam render` end to end on recipe-weight checkpoints in the published formats:
the MP4 is right (frames, size, fps, audio) and its pictures are the PyTorch path's."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from models.loading import LoadedModels, load_models
from runtime.engine.motion_sampler import RawConditions
from runtime.engine.offline import AudioRenderSettings, OfflineRenderer, image_to_tensor
from runtime.media.audio_file import load_audio, normalize_utterance, pad_to_frames
from runtime.media.face_crop import prepare_avatar
from runtime.media.video_file import Mp4Writer, VideoReader
from runtime.model.execution.model_set import open_model_set
from runtime.model.execution.sessions import SessionOptions
from tests.support.golden import assert_frames_close, rel_err

pytestmark = pytest.mark.slow

AAC_SLACK = 1024 / 16000 + 1e-3
SPEECH_FRAMES = 10
SPEECH_SAMPLES = SPEECH_FRAMES * 640
DRIVING_FRAMES = 6
"""AAC codes whole 1024-sample frames, so decoded sound may run up to one frame long."""


def run_render(*args: str, cache_home: Path, data_home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "IMTALKER_CACHE_DIR": str(cache_home),
        "IMTALKER_DATA_DIR": str(data_home),
    }
    return subprocess.run(
        [sys.executable, "-m", "runtime.commands.cli", "render", *args],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
    )


def luma(rgb_chw: np.ndarray) -> np.ndarray:
    """BT.601 limited-range Y of (3, H, W) RGB in [0, 1], as the encoder's colour conversion."""
    rgb = np.rint(np.clip(rgb_chw, 0, 1) * 255).astype(np.float64)
    return 16 + (65.481 * rgb[0] + 128.553 * rgb[1] + 24.966 * rgb[2]) / 255


def probe(path: Path) -> dict[str, object]:
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        audio = c.streams.audio[0] if c.streams.audio else None
        # The luma plane as stored: with --crf 0 it is exact up to the RGB -> Y rounding.
        frames = [f.to_ndarray(format="yuv420p")[: video.height] for f in c.decode(video)]
        info: dict[str, object] = {
            "codec": video.codec_context.name,
            "pix_fmt": video.codec_context.pix_fmt,
            "size": (video.width, video.height),
            "fps": float(video.average_rate),
            "frames": frames,
        }
    with av.open(str(path)) as c:
        if audio is not None:
            samples = sum(f.samples for f in c.decode(c.streams.audio[0]))
            info["audio_seconds"] = samples / c.streams.audio[0].rate
    return info


@dataclass(frozen=True)
class RecipeModel:
    """One model version's recipe checkpoints, their compiled graphs and PyTorch models."""

    weights: Path
    graphs: Path
    cache_home: Path
    """The IMTALKER_CACHE_DIR that holds `graphs` (one per version: conversions prune)."""
    torch: LoadedModels


@pytest.fixture(scope="module", params=["v1", "v2"])
def model(request: pytest.FixtureRequest) -> RecipeModel:
    """Both model versions (the session's shared checkpoints and graphs; one version's PyTorch
    models alive at a time)."""
    suffix = "" if request.param == "v1" else "_v2"
    weights = request.getfixturevalue(f"recipe_weights{suffix}")
    loaded = load_models(weights)
    assert loaded.version.name == request.param
    return RecipeModel(
        weights=weights,
        graphs=request.getfixturevalue(f"recipe_graphs{suffix}"),
        cache_home=request.getfixturevalue(f"recipe_cache_home{suffix}"),
        torch=loaded,
    )


@pytest.fixture(scope="module")
def short_speech(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Path:
    """The first 0.4 s (ten frames) of real fixture speech, as 44.1 kHz stereo FLAC (not the
    model's rate). Short because every frame is a full-size render on the CPU, twice."""
    speech = load_audio(fixtures_dir / "audio_1.wav")[:SPEECH_SAMPLES]
    path = tmp_path_factory.mktemp("speech") / "speech.flac"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("flac", rate=44100, layout="stereo")
        n = SPEECH_SAMPLES * 44100 // 16000
        resampled = np.interp(np.arange(n) / 44100, np.arange(speech.size) / 16000, speech)
        resampled = resampled.astype(np.float32)
        frame = av.AudioFrame.from_ndarray(
            np.stack([resampled, resampled])[None].reshape(1, -1), format="flt", layout="stereo"
        )
        frame.rate = 44100
        for packet in stream.encode(frame):
            c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return path


def test_audio_render_matches_pytorch(
    tmp_path: Path,
    fixtures_dir: Path,
    short_speech: Path,
    model: RecipeModel,
) -> None:
    """Without --cfg the render uses the version's default guidance (v1 3.0, v2 2.0)."""
    out = tmp_path / "talk.mp4"
    portrait = fixtures_dir / "source_3.jpg"
    done = run_render(
        "--avatar", str(portrait), "--audio", str(short_speech), "--out", str(out),
        "--weights", str(model.weights), "--nfe", "5", "--seed", "7", "--crf", "0",
        cache_home=model.cache_home, data_home=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    info = probe(out)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["size"] == (512, 512) and info["fps"] == 25.0
    frames = info["frames"]
    assert isinstance(frames, list) and len(frames) == SPEECH_FRAMES
    seconds = SPEECH_FRAMES / 25
    assert seconds - 1e-3 <= float(info["audio_seconds"]) <= seconds + AAC_SLACK  # type: ignore[arg-type]

    # The same job through ONNX Runtime in-process (what the CLI ran) and through PyTorch.
    speech = load_audio(short_speech)
    ort_models = open_model_set(model.graphs, options=SessionOptions())
    size = ort_models.source_size
    assert ort_models.version == model.torch.version and size == model.torch.version.source_size
    avatar = prepare_avatar(portrait, size=size)
    ort = OfflineRenderer(ort_models, avatar.image)
    settings = AudioRenderSettings(nfe=5, seed=7)
    ort_motion = ort.motion_from_audio(speech, conditions=RawConditions(), settings=settings)

    tm = model.torch
    cfg = tm.version.default_cfg
    with torch.no_grad():
        source = torch.from_numpy(image_to_tensor(avatar.image, size))
        encoding = tm.renderer.encode_source(source)
        audio = torch.from_numpy(pad_to_frames(normalize_utterance(speech)))[None]
        features = tm.audio_encoder(audio)
        torch_motion = tm.generator.sample(features, encoding.motion, cfg_scale=cfg, nfe=5, seed=7)
    torch_motion = torch_motion[0].numpy()
    assert rel_err(ort_motion, torch_motion) <= 1e-3

    picks = [0, 5, SPEECH_FRAMES - 1]
    with torch.no_grad():
        torch_frames = tm.renderer.render(torch.from_numpy(ort_motion[picks]), encoding).numpy()
    ort_frames = ort_models["renderer"].run({"motion": ort_motion[picks], **ort.avatar})["frames"]
    assert_frames_close(ort_frames, torch_frames)
    # What is in the file is those frames (lossless luma; recipe weights paint fine noise
    # that a lossy encoder would blur beyond recognition).
    for k, i in enumerate(picks):
        assert np.abs(frames[i] - luma(ort_frames[k])).mean() < 0.6


def test_driving_render_matches_pytorch(
    tmp_path: Path,
    fixtures_dir: Path,
    model: RecipeModel,
) -> None:
    # Six frames (0.24 s) of the real driving video, with its sound: each is a full-size
    # motion encoding and render on the CPU, twice.
    clip = tmp_path / "driving.mp4"
    with VideoReader(fixtures_dir / "driving_1.mp4") as reader:
        driving = [f for _, f in zip(range(DRIVING_FRAMES), reader, strict=False)]
    sound = load_audio(fixtures_dir / "driving_1.mp4")[: DRIVING_FRAMES * 640]
    with Mp4Writer(clip, width=512, height=512, fps=25, audio=sound, crf=10) as w:
        for f in driving:
            w.write(f)
    with VideoReader(clip) as reader:
        driving = list(reader)  # what the CLI will decode

    out = tmp_path / "reenact.mp4"
    portrait = fixtures_dir / "source_1.png"
    done = run_render(
        "--avatar", str(portrait), "--driving", str(clip), "--out", str(out),
        "--weights", str(model.weights), "--crf", "0",
        cache_home=model.cache_home, data_home=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    info = probe(out)
    frames = info["frames"]
    assert isinstance(frames, list) and len(frames) == DRIVING_FRAMES
    assert info["size"] == (512, 512) and info["fps"] == 25.0
    seconds = DRIVING_FRAMES / 25
    assert seconds - 1e-3 <= float(info["audio_seconds"]) <= seconds + AAC_SLACK  # type: ignore[arg-type]

    ort_models = open_model_set(model.graphs, options=SessionOptions())
    size = ort_models.source_size
    avatar = prepare_avatar(portrait, size=size)
    ort = OfflineRenderer(ort_models, avatar.image)
    picks = [0, DRIVING_FRAMES - 1]
    crops = [driving[i] for i in picks]
    from runtime.engine.offline import resize_driving_frame

    crops = [resize_driving_frame(c, size) for c in crops]
    assert all(c.shape == (size, size, 3) for c in crops)
    ort_motion = next(ort.motion_from_frames(crops, batch_size=2))
    tm = model.torch
    with torch.no_grad():
        batch = torch.from_numpy(np.concatenate([image_to_tensor(c, size) for c in crops]))
        torch_motion = tm.renderer.encode_motion(batch)
        source = torch.from_numpy(image_to_tensor(avatar.image, size))
        encoding = tm.renderer.encode_source(source)
        torch_frames = tm.renderer.render(torch_motion, encoding).numpy()
    assert rel_err(ort_motion, torch_motion.numpy()) <= 1e-4
    ort_frames = ort_models["renderer"].run({"motion": ort_motion, **ort.avatar})["frames"]
    assert_frames_close(ort_frames, torch_frames)
    for k, i in enumerate(picks):
        assert np.abs(frames[i] - luma(ort_frames[k])).mean() < 0.6


@pytest.mark.parametrize("suffix", ["", "_v2"])
def test_models_convert_weights_folder(
    tmp_path: Path, suffix: str, request: pytest.FixtureRequest
) -> None:
    """`models convert --weights DIR` finds the folder's sealed entry and lists what it holds;
    each graph's config and the entry's manifest name the model version."""
    import json

    weights = request.getfixturevalue(f"recipe_weights{suffix}")
    graphs = request.getfixturevalue(f"recipe_graphs{suffix}")
    version = "v2" if suffix else "v1"
    env = {
        **os.environ,
        "IMTALKER_CACHE_DIR": str(request.getfixturevalue(f"recipe_cache_home{suffix}")),
        "IMTALKER_DATA_DIR": str(tmp_path),
    }
    command = ["models", "convert", "--weights", str(weights), "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "runtime.commands.cli", *command],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert Path(doc["compiled_dir"]) == graphs
    names = ("audio_encoder", "conditioner", "velocity", "avatar_encoder", "renderer",
             "motion_encoder")  # fmt: skip
    assert set(doc["graphs"]) == {f"{g}.onnx" for g in names}
    for name in names:
        config = json.loads((graphs / f"{name}.json").read_text())
        assert config["model_version"] == version
    assert json.loads((graphs / "manifest.json").read_text())["model_version"] == version
