"""Remote compute on loopback: `imtalker-cam serve` (Ray Serve, one replica, capacity 2) with
stub graphs, started once for the module, and clients: the `live --remote` command, plain
protocol sessions, and the engine with a killed replica. Slow: it starts a Ray instance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from runtime.engine.live.engine import EngineConfig, FileInput, LiveControls, LiveEngine
from runtime.engine.live.remote import RemoteCompute, remote_avatar
from runtime.model.versions import V2
from runtime.remote import protocol as P
from runtime.remote.client import RemoteConfig
from runtime.remote.codec import encode_photo
from tests.conftest import ROOT
from tests.support.live import Tap, wav_16k, write_wav_16k
from tests.support.remote import TOKEN, audio_packets, speechlike
from tests.support.remote_server import RawSession, Server, collect_frames, grey_less, serve
from tests.support.stub_graphs import write_stub_graphs
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_stub_graphs(tmp_path_factory.mktemp("remote_stubs"), version=V2)


@pytest.fixture(scope="module")
def server(stub_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(stub_dir, tmp_path_factory.mktemp("serve"), "--capacity", "2") as s:
        yield s


def grey_session(server: Server, level: int, **hello: object) -> RawSession:
    s = RawSession(server.url, **hello)
    ready = s.text()
    assert ready["kind"] == "ready", ready
    photo = encode_photo(np.full((512, 512, 3), level, np.uint8))
    s.ws.send(P.text("avatar", name=f"grey{level}", bytes=len(photo)))
    s.ws.send(P.pack_avatar(photo))
    s.ws.send(P.WireControls(hop=5).to_text())
    return s


def _live(args: list[str], tmp: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "IMTALKER_CONFIG_DIR": str(tmp / "config"), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "runtime.commands.cli", "live", *args, "--stats-json"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_a_twenty_second_file_session_keeps_the_output_rate(
    server: Server, stub_dir: Path, fixtures_dir: Path, tmp_path: Path, output_dir: Path
) -> None:
    """`live --remote` with --audio-file for 20 s: frames arrive at the output rate. Then the
    same command on local stub compute for 6 s (one after the other: on 2 cores, side by side
    they slow each other); the latency the remote path adds is measured and reported
    (tests/output/remote_latency.json): end to end, and split into the arrival (capture ->
    pixels here) and the pacer's playout on top of it."""
    speech = wav_16k(fixtures_dir / "audio_1.wav")
    audio = write_wav_16k(tmp_path / "speech20.wav", np.concatenate([speech, speech]))
    short = write_wav_16k(tmp_path / "speech6.wav", speech[: 6 * 16000])
    common = ["--avatar", str(fixtures_dir / "source_1.png"), "--no-vcam", "--hop", "1"]
    remote = _live(
        [*common, "--audio-file", str(audio), "--remote", server.url, "--token", TOKEN], tmp_path
    )
    out_r, err_r = remote.communicate(timeout=90)
    assert remote.returncode == 0, err_r.decode()
    local = _live([*common, "--audio-file", str(short), "--graphs", str(stub_dir)], tmp_path)
    out_l, err_l = local.communicate(timeout=60)
    assert local.returncode == 0, err_l.decode()
    stats_r = [json.loads(line) for line in out_r.decode().splitlines()]
    stats_l = [json.loads(line) for line in out_l.decode().splitlines()]
    assert len(stats_r) >= 18
    steady = stats_r[5:-3]  # the 10 s windows after start-up, before the end
    assert all(24.0 <= s["output_fps"] <= 26.0 for s in steady), [s["output_fps"] for s in steady]
    unique = [s["unique_fps"] for s in steady]
    assert np.mean(unique) >= 22.0 and min(unique) >= 18.0, unique
    assert all(s["remote"] == "connected" for s in steady)
    last_r, last_l = steady[-1], stats_l[-2]
    assert last_r["server_compute_ms"] > 0 and last_r["network_rtt_ms"] > 0
    p50_r = last_r["latency"]["latency_p50_ms"]
    p50_l = last_l["latency"]["latency_p50_ms"]
    arrival_r = last_r["latency"]["to_pixels_ms"]
    arrival_l = last_l["latency"]["to_pixels_ms"]
    report = {
        "remote_p50_ms": p50_r,
        "local_p50_ms": p50_l,
        "added_ms": p50_r - p50_l,
        # Capture -> pixels here (arrival, or the local render) at the median: what the way
        # through the server adds before the pacer.
        "remote_arrival_p50_ms": arrival_r,
        "local_arrival_p50_ms": arrival_l,
        "arrival_added_ms": arrival_r - arrival_l,
        "remote_playout_ms": p50_r - arrival_r,
        "local_playout_ms": p50_l - arrival_l,
        "server_compute_ms_per_hop": last_r["server_compute_ms"],
        "network_rtt_ms": last_r["network_rtt_ms"],
        "remote_unique_fps": last_r["unique_fps"],
        "target_added_ms": 30,
    }
    (output_dir / "remote_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(f"\nremote vs local stub compute: {json.dumps(report)}\n")


def test_two_sessions_get_their_own_avatar_and_a_third_is_told_full(server: Server) -> None:
    dark, light = grey_session(server, 40), grey_session(server, 200)
    try:
        third = RawSession(server.url)
        refused = third.text()
        assert refused["kind"] == "error" and refused["code"] == P.SERVER_FULL
        assert "server full" in refused["message"]
        third.close()
        audio = speechlike(1.0)
        for s in (dark, light):
            for packet in audio_packets(audio):
                s.ws.send(packet)
            s.ws.send(P.text("end"))
        got_dark, got_light = collect_frames(dark), collect_frames(light)
    finally:
        dark.close()
        light.close()
    # Each session's own avatar: the stub renderer's output rises with the avatar's grey.
    common = sorted(set(got_dark) & set(got_light))
    assert -1 in common and len(common) >= 6
    for i in common:
        assert int(got_light[i][0, 0, 0]) > int(got_dark[i][0, 0, 0]), i


def test_bad_input_is_refused_clearly_while_another_session_is_served(server: Server) -> None:
    good = grey_session(server, 120)
    received: list[float] = []
    failed: list[str] = []
    stop = threading.Event()

    thread = threading.Thread(target=_keep_streaming, args=(good, received, failed, stop))
    thread.start()
    try:
        wait_until(lambda: len(received) >= 10 or failed, 30.0, what="the good session served")
        wrong = RawSession(server.url, token="not-the-token-at-all")
        answer = wrong.text()
        assert (answer["code"], answer["message"]) == (P.BAD_TOKEN, "wrong or missing token")
        wrong.close()

        big = grey_less(server)
        big.ws.send(P.text("avatar", name="huge", bytes=50 * 2**20))
        answer = big.text()
        assert answer["code"] == P.TOO_LARGE and "50.0 MB" in answer["message"]
        big.close()

        rate = grey_less(server)
        rate.ws.send(P.pack_audio(P.AudioPacket(seq=0, capture_end=1.0, pcm=bytes(640), rate=8000)))
        answer = rate.text()
        assert answer["code"] == P.BAD_AUDIO and "16000 Hz" in answer["message"]
        rate.close()

        junk = grey_less(server)
        junk.ws.send(b"\x00\x01 not a packet")
        answer = junk.text()
        assert answer["code"] == P.MALFORMED
        junk.close()

        # 50 MB in one message: refused by the transport's size limit (close code 1009).
        raw = grey_less(server)
        with pytest.raises(ConnectionClosed):
            raw.ws.send(P.pack_avatar(bytes(50 * 2**20)))
            raw.text()
        raw.close()
        before = len(received)
        # Served still: 25 more frames come (a second at 25 fps, however slow the machine).
        wait_until(lambda: len(received) - before >= 25 or failed, 30.0, what="25 more frames")
        after = len(received)
    finally:
        stop.set()
        thread.join(15)
        good.close()
    assert not failed, failed
    # The good session was served all along, and still is after the bad ones.
    assert after - before >= 25, (before, after)


def _keep_streaming(
    s: RawSession, received: list[float], failed: list[str], stop: threading.Event
) -> None:
    """Sends audio in real time (20 ms packets) and counts the frames that come back."""
    seq, t0 = 0, time.monotonic()
    pcm = audio_packets(speechlike(30.0), t0=time.perf_counter())
    try:
        while not stop.is_set() and seq < len(pcm):
            if time.monotonic() >= t0 + seq * 0.02:
                s.ws.send(pcm[seq])
                seq += 1
                continue
            try:
                data = s.ws.recv(timeout=0.005)
            except TimeoutError:
                continue
            if isinstance(data, bytes):
                received.append(time.monotonic())
            elif json.loads(data)["kind"] == "error":
                failed.append(data)
                return
    except Exception as exc:
        failed.append(repr(exc))


def test_a_killed_replica_is_survived(server: Server, fixtures_dir: Path) -> None:
    """Kill the replica's process mid-session: the engine reports "reconnecting", the camera
    keeps showing the last frame, and the session (same avatar, controls) resumes within 2 s
    of the restarted replica accepting sessions again."""
    from runtime.media.face_crop import prepare_avatar

    tap = Tap()
    image = prepare_avatar(fixtures_dir / "source_1.png", size=512).image
    speech = wav_16k(fixtures_dir / "audio_1.wav")
    engine = LiveEngine(
        models=None,
        source=FileInput(audio=np.concatenate([speech] * 4)),
        config=EngineConfig(),
        sinks=[tap.preview()],
        listener=tap.listener(),
        compute=RemoteCompute(config=RemoteConfig(url=server.url, token=TOKEN, frame_format="raw")),
    )
    engine.start(remote_avatar(image, "source_1"), LiveControls(hop=2, pose=None))
    try:
        assert tap.wait_event("remote", "connected", 30) is not None
        wait_until(lambda: any(f.index >= 25 for _, f in list(tap.frames)), 30.0, what="frames")
        remote: Any = engine.worker
        assert remote is not None and remote.link is not None
        pid = int(remote.link.server["pid"])
        t_kill = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        t_lost = tap.wait_event("remote", "reconnecting", 15)
        assert t_lost is not None
        assert engine.stats().remote == "reconnecting"
        t_back = _wait_until_served(server, timeout=90)

        def resumed_times() -> list[float]:
            with tap.lock:
                newest = max(f.index for t, f in tap.frames if t <= t_lost)
                return [t for t, f in tap.frames if t > t_lost and f.index > newest + 2]

        with tap.lock:
            newest_before = max(f.index for t, f in tap.frames if t <= t_lost)
        resumed = wait_until(resumed_times, 30.0, poll_s=0.02, what="the session resumed")
        with tap.lock:
            gap = [(t, f.index) for t, f in tap.frames if t_lost < t < resumed[0]]
        stats = engine.stats()
    finally:
        engine.stop()
    # While the server was away the camera kept showing the last frame: published every
    # period (repeats of the newest frame received before the connection went).
    times = [t for t, _ in gap]
    assert gap and max(i for _, i in gap) <= newest_before + 2
    assert np.diff([t_lost, *times, resumed[0]]).max() < 0.2
    resume_s = resumed[0] - t_back
    sys.stdout.write(
        f"\nreplica killed; back after {t_back - t_kill:.1f} s; resumed {resume_s:.2f} s later\n"
    )
    assert resume_s <= 2.0
    assert stats.avatar == "source_1"
    assert stats.latency.counters.get("reconnects", 0) >= 1


def _wait_until_served(server: Server, timeout: float) -> float:
    """When a new session is accepted again (perf_counter)."""

    def served() -> float | None:
        try:
            s = RawSession(server.url)
            ready = s.text(timeout=2)
            s.close()
        except Exception:
            return None
        return time.perf_counter() if ready.get("kind") == "ready" else None

    return wait_until(served, timeout, poll_s=0.05, what="the replica came back")
