"""Remote compute with the full-size recipe graphs (`recipe_graphs_v2`) on the server: one short
session gives the frames the local engine gives for the same inputs (within the golden
tolerances). The server is the render server's own session code (`runtime.server.connection`)
on an in-process WebSocket server sharing this process's sessions, so the graphs load once;
Ray hosting is tested with stub graphs in `test_remote_serve`. Slow: the full-size renderer on
a CPU (about 17 s on the 2-core CI machine once `recipe_graphs_v2` exists)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.engine.live.avatar import encode_avatar, render, to_uint8
from runtime.engine.live.engine import EngineConfig, FileInput, LiveControls, LiveEngine
from runtime.model.execution.model_set import open_model_set
from runtime.model.execution.sessions import ModelSet, SessionOptions
from runtime.remote import protocol as P
from runtime.remote.codec import encode_photo
from tests.support.golden import assert_frames_close
from tests.support.live import Tap, wav_16k
from tests.support.remote import InProcessServer, audio_packets, serving
from tests.support.remote_server import RawSession, collect_frames

pytestmark = pytest.mark.slow

FULL = SessionOptions(providers=("CPUExecutionProvider",))
FRAMES = 2  # one hop of 2 (the full-size renderer takes about a second a frame here)


@pytest.fixture(scope="module")
def full_models(recipe_graphs_v2: Path) -> ModelSet:
    return open_model_set(recipe_graphs_v2, options=FULL)


@pytest.fixture(scope="module")
def full_server(full_models: ModelSet) -> Iterator[InProcessServer]:
    with serving(full_models, capacity=1) as server:
        yield server


def test_full_size_remote_frames_equal_the_local_engines(
    full_server: InProcessServer, full_models: ModelSet, fixtures_dir: Path
) -> None:
    from runtime.media.face_crop import prepare_avatar

    models = full_models

    audio = wav_16k(fixtures_dir / "audio_1.wav")[: FRAMES * 640]
    image = prepare_avatar(fixtures_dir / "source_1.png", size=512).image
    controls = LiveControls(hop=FRAMES, nfe=3)

    # Remote: every frame, lossless.
    s = RawSession(full_server.url)
    assert s.text()["kind"] == "ready"
    photo = encode_photo(image)
    s.ws.send(P.text("avatar", name="source_1", bytes=len(photo)))
    s.ws.send(P.pack_avatar(photo))
    s.ws.send(P.WireControls(hop=FRAMES, nfe=3).to_text())
    for packet in audio_packets(audio):
        s.ws.send(packet)
    s.ws.send(P.text("end"))
    try:
        remote = collect_frames(s, timeout=600)
    finally:
        s.close()

    # Local: the engine on the same graphs, audio and controls; its motion, rendered.
    avatar = encode_avatar(models["avatar_encoder"], image, size=512, name="source_1")
    tap = Tap()
    engine = LiveEngine(
        models=models, source=FileInput(audio=audio), config=EngineConfig(), listener=tap.listener()
    )
    engine.start(avatar, controls)
    try:
        assert engine.wait_audio_ended(timeout=600)
    finally:
        assert engine.stop()
    assert [(h.first_frame, h.emitted) for h in tap.hops] == [(0, FRAMES)]
    local = to_uint8(render(models["renderer"], avatar, tap.hops[0].motion))
    idle = to_uint8(render(models["renderer"], avatar, avatar.source_motion[None]))[0]

    assert sorted(remote) == [-1, *range(FRAMES)]
    for index, want in [(-1, idle), *enumerate(local)]:
        # The golden tolerances (mean and 99th percentile of |d| on [0, 1] pixels): the
        # replica's thread count differs from this process's, so a rare pixel may round apart.
        assert_frames_close(remote[index] / 255.0, want / 255.0)
