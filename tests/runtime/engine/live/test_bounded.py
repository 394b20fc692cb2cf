"""Every stage bounded (issue 20): whatever the compute does, no hop works on old audio.

The one hop scheduler (`runtime.engine.live.hop_scheduler`) is driven by two hosts, the local
engine (its real threads: worker, pacer, file playback, capture watchdog) and a render server's
session (driven here the way its connection drives it), both on a virtual clock
(support/virtual_clock.py), so minutes of a loaded machine run in seconds and give the same answer
on any machine. The audio encoder, the sampler and the renderer are slowed alone and all at
once, with costs that change during the session: recurring spikes, a slow swing, a stall of
several seconds. The file ends before the session does, so the end of the input is covered too:
that is where the latency once grew without bound (every remaining frame was made, hop after
hop, without skipping ahead, each for older audio than the last).

What is checked, per hop, from what the hosts report: a hop starts from the newest audio (its
newest frame was captured less than `max(2 hop, 4) + lookahead` frames and one delivery
before the hop began); the audio encoder only ever sees the hop's own window; the skipped work
is counted and adds up; and, for the local engine, the newest-picture latency of the last
stretch is no worse than early on.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from runtime.engine.live.engine import (
    EngineConfig,
    EngineListener,
    FileInput,
    LiveControls,
    LiveEngine,
)
from runtime.engine.live.hop_choice import SLIDESHOW_FRAMES
from runtime.engine.live.remote import wire_controls
from runtime.model.contract import FPS, SAMPLE_RATE
from runtime.model.execution.sessions import ModelSet
from runtime.remote import protocol as P
from runtime.remote.codec import encode_photo, pcm_from_float
from runtime.server.session import ServerSession
from runtime.sinks.frame import LiveFrame
from runtime.sinks.preview import PreviewSink
from tests.support.live import grey_avatar, stub_models
from tests.support.slow_graphs import Profile, SlowGraph, drift, slowed, spikes, steady
from tests.support.virtual_clock import VirtualClock

LOOK = 2
CONTEXT_FRAMES = 50  # EngineConfig.context_s at 25 fps
AUDIO_S = 75.0  # the file; the local session runs on after it ends
SESSION_S = 95.0


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelSet:
    return stub_models(tmp_path_factory.mktemp("stubs"))


# -- the load: which stage is slow, and how its cost moves -----------------------------------


@dataclass(frozen=True)
class Stage:
    graph: str
    per_unit_s: float
    profile: Profile = steady
    stall_at_s: float = float("inf")
    stall_s: float = 0.0


SCENARIOS: dict[str, tuple[Stage, ...]] = {
    # 6 ms per frame of audio window: ~0.33 s for hop 1's 55 frames, spikes of 5x.
    "slow-encoder": (
        Stage("audio_encoder", 0.006, spikes(every_s=17.0, length_s=3.0, factor=5.0)),
    ),
    # 9 evaluations of 70 ms, swinging from 1x to 3x and back over the session.
    "slow-sampler": (Stage("velocity", 0.07, drift(period_s=40.0, low=1.0, high=3.0)),),
    # 3 frames' time per frame rendered, and one stall of 6 s in the middle.
    "slow-renderer": (Stage("renderer", 3.0 / FPS, steady, stall_at_s=40.0, stall_s=6.0),),
    # The file ends while the renderer is stalled for 8 s: the tester's case (issue 20), where
    # the end of the input was once worked through hop after hop, each on older audio.
    "stall-at-the-end": (Stage("renderer", 1.0 / FPS, steady, AUDIO_S - 4.0, 8.0),),
    # All three, all moving, and a stall of 5 s in the sampler.
    "all-at-once": (
        Stage("audio_encoder", 0.004, spikes(every_s=13.0, length_s=2.0, factor=4.0)),
        Stage("velocity", 0.05, drift(period_s=30.0, low=1.0, high=2.5), 47.0, 5.0),
        Stage("renderer", 0.5, spikes(every_s=11.0, length_s=4.0, factor=3.0, start_s=5.0)),
    ),
}


def load(models: ModelSet, clock: VirtualClock, stages: tuple[Stage, ...]) -> ModelSet:
    t0 = clock()
    graphs = {
        s.graph: SlowGraph(
            models[s.graph],
            s.graph,
            clock,
            s.per_unit_s,
            s.profile,
            t0=t0,
            stall_at_s=s.stall_at_s,
            stall_s=s.stall_s,
        )
        for s in stages
    }
    return slowed(models, graphs)


def noise_audio(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.uniform(-0.3, 0.3, int(seconds * SAMPLE_RATE)).astype(np.float32)


# -- what a host reports ---------------------------------------------------------------------


@dataclass(frozen=True)
class Hop:
    started: float
    finished: float
    first: int
    emitted: int
    skipped: int
    newest_capture: float  # of the newest frame it made
    rendered: int


@dataclass
class Run:
    t0: float
    hops: list[Hop] = field(default_factory=list)
    pictures: list[tuple[float, float]] = field(default_factory=list)  # (sent, capture), new
    skipped_frames: int = 0


def run_engine(models: ModelSet, clock: VirtualClock, controls: LiveControls) -> Run:
    run = Run(t0=clock())
    seen: set[int] = set()

    def on_frame(frame: LiveFrame) -> None:
        if frame.index >= 0 and frame.index not in seen:
            seen.add(frame.index)
            run.pictures.append((clock(), frame.timing.capture))

    def on_hop(h: object) -> None:
        run.hops.append(
            Hop(
                started=h.started,  # type: ignore[attr-defined]
                finished=h.finished,  # type: ignore[attr-defined]
                first=h.first_frame,  # type: ignore[attr-defined]
                emitted=h.emitted,  # type: ignore[attr-defined]
                skipped=h.skipped_before,  # type: ignore[attr-defined]
                newest_capture=float(h.capture[-1]),  # type: ignore[attr-defined]
                rendered=h.rendered,  # type: ignore[attr-defined]
            )
        )

    engine = LiveEngine(
        models=models,
        source=FileInput(audio=noise_audio(AUDIO_S)),
        config=EngineConfig(lookahead=LOOK),
        sinks=[PreviewSink(on_frame)],
        clock=clock,
        listener=EngineListener(on_hop=on_hop),
    )
    clock.join()
    with clock.adopting():
        engine.start(grey_avatar(models, 100), controls)
    try:
        clock.sleep_until(run.t0 + SESSION_S)
        stats = engine.stats()
    finally:
        clock.leave()
        assert engine.stop()
    run.skipped_frames = stats.skipped_frames
    assert len(run.hops) - 1 <= stats.hops <= len(run.hops)  # (a hop may be reporting)
    return run


def run_server(models: ModelSet, clock: VirtualClock, controls: LiveControls) -> Run:
    """A session driven as its connection drives it: 20 ms packets as they are captured (here:
    in virtual real time), one `step` whenever the compute thread is free."""
    clock.join()
    session = ServerSession(models=models, hello=P.Hello(token="", lookahead=LOOK), clock=clock)
    size = models.source_size
    session.set_avatar(encode_photo(np.full((size, size, 3), 100, np.uint8)), "grey")
    session.set_controls(wire_controls(controls))
    run = Run(t0=clock())
    audio = noise_audio(AUDIO_S)
    pos = seq = 0
    n = P.PACKET_SAMPLES
    try:
        while not session.done:
            now = clock()
            while pos + n <= audio.size and run.t0 + (pos + n) / SAMPLE_RATE <= now + 1e-9:
                pcm = pcm_from_float(audio[pos : pos + n])
                end = run.t0 + (pos + n) / SAMPLE_RATE
                session.add_audio(P.AudioPacket(seq=seq, capture_end=end, pcm=pcm))
                pos, seq = pos + n, seq + 1
            if pos + n > audio.size:
                session.finish()
            started = clock()
            out = session.step()
            if out is None:
                clock.sleep(0.005)
                continue
            finished = clock()
            captures = [f.timing.capture for f in out.frames]
            run.hops.append(
                Hop(
                    started=started,
                    finished=finished,
                    first=out.first,
                    emitted=out.emitted,
                    skipped=out.skipped,
                    newest_capture=max(captures),
                    rendered=len(captures),
                )
            )
            run.pictures.extend((finished, c) for c in captures)
    finally:
        clock.leave()
        session.close()
    run.skipped_frames = session.skipped_frames
    return run


HOSTS: dict[str, Callable[[ModelSet, VirtualClock, LiveControls], Run]] = {
    "engine": run_engine,
    "server": run_server,
}


# -- the checks ------------------------------------------------------------------------------


def age_bound_s(emitted: int) -> float:
    """How old a hop's newest frame may be when the hop starts: less than `max(2 hop, 4)`
    frames were left unmade behind the newest ready audio, `LOOK` more wait for their
    lookahead, the newest frame may have just completed (40 ms), and delivery adds a block or a
    packet (20 ms) and the worker's poll (5 ms)."""
    return (max(2 * emitted, 4) + LOOK + 1) / FPS + 0.03


@pytest.mark.parametrize("host", sorted(HOSTS))
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_no_hop_works_on_old_audio(models: ModelSet, scenario: str, host: str) -> None:
    clock = VirtualClock(real_timeout_s=300.0)
    slow = load(models, clock, SCENARIOS[scenario])
    run = HOSTS[host](slow, clock, LiveControls())
    hops = run.hops
    assert len(hops) > 10, len(hops)
    # Every hop started from the newest audio, whatever the previous hop cost: during the file,
    # at its end and after it (the engine idles on silence, which skips a tail gone stale).
    # The server's input stops at the end: its last hop is of the newest audio there is, begun
    # when the hop before it was done.
    # (A last hop of a file is shorter than the hop in use, the one before it is not.)
    checked = hops if host == "engine" else hops[:-1]
    late = [
        (round(h.started - run.t0, 2), h.emitted, round(h.started - h.newest_capture, 3))
        for prev, h in zip([hops[0], *checked], checked, strict=False)
        if h.started - h.newest_capture > age_bound_s(max(h.emitted, prev.emitted))
    ]
    assert not late, late
    if host == "server":
        before, last = hops[-2], hops[-1]
        assert last.newest_capture - run.t0 == pytest.approx(AUDIO_S, abs=1 / FPS)
        assert last.started - last.newest_capture <= before.finished - before.started + 0.05
    ends = [h for h in hops if h.newest_capture - run.t0 > AUDIO_S - 1.0]
    assert ends, "no hop reached the end of the file"
    # The skipped work is counted and adds up: every frame was made once or skipped once (the
    # count may also hold a skip for a hop still running when the session ended).
    reported = sum(h.skipped for h in hops)
    assert 0 < reported <= run.skipped_frames
    assert run.skipped_frames - reported <= (run.t0 + SESSION_S - hops[-1].started) * FPS
    for a, b in itertools.pairwise(hops):
        assert b.first == a.first + a.emitted + b.skipped
    # The encoder never saw more than the hop's own window (no features for skipped audio).
    encoder = slow["audio_encoder"]
    if isinstance(encoder, SlowGraph):
        most = max(h.emitted for h in hops) + LOOK + CONTEXT_FRAMES
        assert max(encoder.units) <= most, (max(encoder.units), most)
    # A slideshow's hops (one picture rendered) make only the motion the picture and the next
    # chunk's context need (the last hop of the file: its lookahead frames too).
    shows = [h for h in hops if h.rendered < h.emitted]
    assert all(h.emitted <= SLIDESHOW_FRAMES + LOOK for h in shows)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_newest_picture_latency_does_not_grow(models: ModelSet, scenario: str) -> None:
    """The local engine's pictures as they leave it: the p95 latency of the last 30 s (file end
    included) is no worse than over seconds 15-45, to the issue's own margin (1.15x + 1 s), and
    no picture is later than the pacer's longest delay plus one hop's worst compute."""
    clock = VirtualClock(real_timeout_s=300.0)
    run = run_engine(load(models, clock, SCENARIOS[scenario]), clock, LiveControls())
    lat = np.array([(sent - run.t0, sent - cap) for sent, cap in run.pictures])
    early = lat[(lat[:, 0] >= 15) & (lat[:, 0] < 45), 1]
    last = lat[lat[:, 0] >= SESSION_S - 30, 1]
    assert len(early) and len(last)
    assert np.percentile(last, 95) <= 1.15 * np.percentile(early, 95) + 1.0
    worst_hop = max(h.finished - h.started for h in run.hops)
    max_delay = 5.0  # PacerConfig.max_delay_s
    assert lat[:, 1].max() <= max(max_delay, worst_hop + age_bound_s(SLIDESHOW_FRAMES)) + 0.2
