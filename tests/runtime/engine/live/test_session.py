"""One live session from one typed configuration (`runtime.engine.live.session`), the builder
the CLI and the app both use: local graphs opened or reused, the avatar checked and encoded at
their size, the bench's seed for the same graphs, and nothing left running when starting
fails."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest

from runtime.engine.bench import BenchResult, write_result
from runtime.engine.live.engine import FileInput, LiveControls
from runtime.engine.live.session import (
    AvatarSizeError,
    LocalCompute,
    SessionConfig,
    session_avatar,
    start_session,
)
from runtime.model.execution.model_set import open_model_set
from runtime.sinks.outputs import OutputsConfig
from runtime.sinks.virtual_camera import VirtualCameraConfig
from tests.runtime.engine.test_bench import result
from tests.support.live import CPU
from tests.support.stub_graphs import write_stub_graphs


def _config(graphs: Path, image: np.ndarray, **compute: object) -> SessionConfig:
    return SessionConfig(
        source=FileInput(audio=np.zeros(16000 * 5, np.float32)),
        compute=LocalCompute(graphs=graphs, options=CPU, **compute),  # type: ignore[arg-type]
        avatar=image,
        avatar_name="grey",
        controls=LiveControls(),
    )


def test_a_session_starts_from_the_graphs_folder_and_says_what_it_does(tmp_path: Path) -> None:
    graphs = write_stub_graphs(tmp_path / "graphs")
    size = open_model_set(graphs, options=CPU).source_size
    said: list[str] = []
    session = start_session(
        _config(graphs, np.full((size, size, 3), 90, np.uint8)), progress=said.append
    )
    with session.engine as engine:
        assert engine.running and session.models is not None
        assert session.avatar.name == "grey" and session.avatar.tensors
    assert said == ["loading the model", "encoding the avatar"]
    assert not engine.running  # the engine is a context manager: leaving it stops it


def test_a_wrong_size_avatar_is_refused_before_anything_runs(tmp_path: Path) -> None:
    graphs = write_stub_graphs(tmp_path / "graphs")
    models = open_model_set(graphs, options=CPU)
    before = set(threading.enumerate())
    wrong = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(AvatarSizeError, match="another model version"):
        start_session(_config(graphs, wrong, models=models))
    assert set(threading.enumerate()) <= before
    with pytest.raises(AvatarSizeError, match="square"):
        session_avatar(None, np.zeros((100, 80, 3), np.uint8), "x")


def test_a_bench_of_the_same_graphs_seeds_the_session(tmp_path: Path) -> None:
    """A bench kept for these graphs (at this precision, on this kind of device) makes the
    session know at once that the machine is not real time; another folder's does not."""
    graphs = write_stub_graphs(tmp_path / "graphs")
    models = open_model_set(graphs, options=CPU)
    size = models.source_size
    image = np.full((size, size, 3), 90, np.uint8)
    slow = result(renderer_ms=3000.0, on_gpu=False)
    for measured, seeded in ((tmp_path / "elsewhere", False), (graphs, True)):
        bench_dir = tmp_path / f"bench-{seeded}"
        write_result(_with_graphs(slow, measured), bench_dir)
        config = _config(graphs, image, models=models, bench_dir=bench_dir)
        with start_session(config).engine as engine:
            assert (engine.config.expected_hop is not None) is seeded


def _with_graphs(r: BenchResult, graphs: Path) -> BenchResult:
    return dataclasses.replace(r, graphs=str(graphs.resolve()))


def test_the_session_changes_call_audio_and_avatar_through_typed_methods(tmp_path: Path) -> None:
    """What the front ends change live goes through `LiveSession`'s own methods: the gate,
    push-to-talk, mute, and the avatar, whose picture the outputs' blurred backdrop follows."""
    graphs = write_stub_graphs(tmp_path / "graphs")
    models = open_model_set(graphs, options=CPU)
    size = models.source_size
    bright = threading.Event()

    def preview(picture: np.ndarray) -> None:
        if picture[:, :20].mean() > 100:  # left of the face: the backdrop
            bright.set()

    config = dataclasses.replace(
        _config(graphs, np.zeros((size, size, 3), np.uint8), models=models),
        outputs=OutputsConfig(
            look=VirtualCameraConfig(width=320, height=180, blur=True), preview=preview
        ),
    )
    with start_session(config) as session:
        engine = session.engine
        session.set_gate(-30.0)
        assert engine.gate.threshold_dbfs == -30.0
        session.set_gate(None)
        assert engine.gate.threshold_dbfs is None
        session.set_push_to_talk(True)
        assert engine.mic.push_to_talk and not engine.mic.is_open
        session.set_talking(True)
        assert engine.mic.is_open
        session.set_muted(True)
        assert engine.mic.muted and not engine.mic.is_open
        session.set_mic_offset_ms(100.0)  # without a virtual microphone: nothing to change
        with pytest.raises(AvatarSizeError):
            session.set_avatar(np.zeros((10, 10, 3), np.uint8), "tiny")
        assert session.avatar.name == "grey" and not bright.is_set()
        session.set_avatar(np.full((size, size, 3), 250, np.uint8), "white")
        assert session.avatar.name == "white"
        assert bright.wait(30.0)
    assert not engine.running
