"""The live engine with full-size recipe-weight graphs (exported by the `recipe_graphs` fixture):
quality mode reproduces the golden sampler, and live frames are the offline path's frames for
the same motion latents. Slow: the full-size renderer takes seconds per frame on a CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime.engine.live.avatar import LiveAvatar
from runtime.engine.live.engine import EngineConfig, FileInput, LiveControls, LiveEngine
from runtime.model.execution.model_set import open_model_set
from runtime.model.execution.sessions import ModelSet, SessionOptions
from tests.support.live import CPU, Tap, wav_16k
from tests.support.stub_graphs import write_stub_graphs
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

FULL = SessionOptions(providers=("CPUExecutionProvider",))


def test_quality_mode_reproduces_the_golden_sampler(
    recipe_graphs: Path, golden_dir: Path, tmp_path: Path
) -> None:
    """Real audio encoder, conditioner and velocity graphs; a stub renderer (the motion is what
    is compared). Hop 50 over the golden 3 s of speech, CFG 2, nfe 5, seed 3, natural pose."""
    g = np.load(golden_dir / "generator_golden.npz")
    real = open_model_set(
        recipe_graphs, options=FULL, names=("audio_encoder", "conditioner", "velocity")
    )
    stubs = open_model_set(write_stub_graphs(tmp_path), options=CPU)
    models = ModelSet(sessions={**stubs.sessions, **real.sessions})
    image = np.full((256, 256, 3), 100, np.uint8)
    encoded = stubs["avatar_encoder"].run({"source": np.full((1, 3, 256, 256), 0.4, np.float32)})
    avatar = LiveAvatar(
        name="golden",
        image=image,
        source_motion=g["ref_motion"][0],
        tensors={k: v for k, v in encoded.items() if k != "source_motion"},
    )
    tap = Tap()
    engine = LiveEngine(
        models=models,
        source=FileInput(audio=g["audio_16k"]),
        config=EngineConfig(quality=True, seed=3),
        listener=tap.listener(),
    )
    engine.start(avatar, LiveControls(cfg_scale=2.0, nfe=5))
    try:
        assert engine.wait_audio_ended(timeout=120)
    finally:
        assert engine.stop()
    hops = [h for h in tap.hops if h.first_frame < 75]
    assert [(h.first_frame, h.emitted) for h in hops] == [(0, 50), (50, 25)]
    live = np.concatenate([h.motion for h in hops])
    want = g["sample_nocond_cfg2_nfe5_seed3"][0]
    assert np.linalg.norm(live - want) / np.linalg.norm(want) <= 1e-3


@pytest.mark.parametrize(
    ("graphs_fixture", "version"), [("recipe_graphs", "v1"), ("recipe_graphs_v2", "v2")]
)
def test_live_frames_equal_the_offline_render(
    graphs_fixture: str, version: str, fixtures_dir: Path, request: pytest.FixtureRequest
) -> None:
    """All six real graphs, live for as long as a few frames take; each frame the engine
    published is the offline renderer's frame for the motion the engine generated. For both
    model versions: the avatar is prepared at the size the graphs say (256 / 512 px)."""
    from runtime.engine.live.avatar import encode_avatar
    from runtime.engine.offline import OfflineRenderer
    from runtime.media.face_crop import prepare_avatar

    models = open_model_set(request.getfixturevalue(graphs_fixture), options=FULL)
    assert models.version.name == version
    size = models.source_size
    image = prepare_avatar(fixtures_dir / "source_1.png", size=size).image
    assert image.shape == (size, size, 3)
    avatar = encode_avatar(models["avatar_encoder"], image, size=size, name="source_1")
    tap = Tap(keep_images=True)
    engine = LiveEngine(
        models=models,
        source=FileInput(audio=wav_16k(fixtures_dir / "audio_1.wav")),
        sinks=[tap.preview()],
        listener=tap.listener(),
    )
    engine.start(avatar, LiveControls(hop=1, nfe=3))
    try:

        def two_shown() -> bool:
            with tap.lock:
                return len({f.index for _, f in tap.frames if f.index >= 0}) >= 2

        wait_until(two_shown, 300.0, poll_s=0.5, what="two frames shown")
        stats = engine.stats()
    finally:
        assert engine.stop()
    assert stats.latency.real_time_factor > 1  # not real time on this CPU, and reported so
    motion_of = {h.first_frame: h.motion[0] for h in tap.hops}
    offline = OfflineRenderer(models, image)
    np.testing.assert_allclose(offline.source_motion[0], avatar.source_motion, atol=1e-6)
    frames = {f.index: f.image for _, f in tap.frames if f.index >= 0}
    assert len(frames) >= 2
    for index, image_live in frames.items():
        (want,) = offline.render(motion_of[index][None])
        diff = np.abs(image_live.astype(int) - want.astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.01, (index, diff.max(), diff.mean())
    idle = [f.image for _, f in tap.frames if f.index < 0]
    if idle:
        (want,) = offline.render(offline.source_motion)
        assert np.abs(idle[0].astype(int) - want.astype(int)).max() <= 1
