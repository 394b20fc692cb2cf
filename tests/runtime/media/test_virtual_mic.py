"""The virtual microphone with fakes for the hardware: `pactl` (a fake PulseAudio module
table), the `sounddevice` output side, and in the engine test the microphone."""

from __future__ import annotations

import contextlib
import math
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime.engine.live.engine import EngineConfig, LiveEngine, MicEvent, MicrophoneInput
from runtime.media.virtual_mic import VirtualMic, VirtualMicConfig
from runtime.media.virtual_mic_device import (
    CableDevice,
    PactlError,
    PulseVirtualDevice,
    VirtualMicUnavailable,
    default_device,
    help_text,
    run_pactl,
)
from runtime.model.execution.sessions import ModelSet
from tests.support.fakes.sound_device import FakeSoundDevice
from tests.support.live import Tap, grey_avatar, stub_models, wav_16k
from tests.support.waiting import wait_until


class FakePactl:
    """A PulseAudio module table driven by `pactl` argument lists."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.modules: dict[int, tuple[str, str]] = {0: ("module-native-protocol-unix", "")}
        self.next = 7
        self.calls: list[list[str]] = []
        self.fail_on = fail_on
        self.sinks: dict[int, str] = {0: "speakers"}
        self.sink_inputs: dict[int, tuple[int, int]] = {}  # index -> (sink, process id)

    def __call__(self, args: Any) -> str:
        args = list(args)
        self.calls.append(args)
        if args[:3] == ["list", "short", "modules"]:
            return "".join(f"{i}\t{n}\t{a}\t\n" for i, (n, a) in sorted(self.modules.items()))
        if args[0] == "load-module":
            if self.fail_on is not None and self.fail_on == args[1]:
                raise PactlError("pactl load-module: Module initialization failed")
            self.modules[self.next] = (args[1], " ".join(args[2:]))
            if args[1] == "module-null-sink":
                self.sinks[self.next + 100] = args[2].removeprefix("sink_name=")
            self.next += 1
            return f"{self.next - 1}\n"
        if args[0] == "unload-module":
            _name, margs = self.modules.pop(int(args[1]))
            self.sinks = {i: n for i, n in self.sinks.items() if f"sink_name={n}" not in margs}
            return ""
        if args[:3] == ["list", "short", "sinks"]:
            return "".join(
                f"{i}\t{n}\tmodule-null-sink.c\ts16le 1ch\tIDLE\n" for i, n in self.sinks.items()
            )
        if args[:2] == ["list", "sink-inputs"]:
            return "".join(
                f"Sink Input #{i}\n\tDriver: protocol-native.c\n\tSink: {sink}\n"
                f'\tProperties:\n\t\tapplication.process.id = "{pid}"\n\n'
                for i, (sink, pid) in self.sink_inputs.items()
            )
        if args[0] == "move-sink-input":
            target = next(i for i, n in self.sinks.items() if n == args[2])
            self.sink_inputs[int(args[1])] = (target, self.sink_inputs[int(args[1])][1])
            return ""
        raise AssertionError(f"unexpected pactl call {args}")

    def ours(self) -> list[str]:
        return [n for n, a in self.modules.values() if "imtalker_cam" in a]


class FakeOutputStream:
    def __init__(self, owner: FakeOutputSD, options: dict[str, Any]) -> None:
        self.options = options
        self.env_at_open = os.environ.get("PULSE_SINK")
        self.started = self.closed = False
        owner.streams.append(self)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True

    def pull(self, frames: int, latency: float = 0.02) -> np.ndarray:
        out = np.full((frames, 1), np.nan, np.float32)
        info = type("T", (), {"currentTime": 10.0, "outputBufferDacTime": 10.0 + latency})()
        self.options["callback"](out, frames, info, None)
        return out[:, 0]


class FakeOutputSD:
    """The output side of `sounddevice`: a device list and streams the test drives."""

    def __init__(self, names: tuple[str, ...] = ("HDA Intel", "pulse", "default")) -> None:
        self.devices = [
            {
                "name": n,
                "max_output_channels": 2,
                "max_input_channels": 2,
                "default_samplerate": 44100.0,
            }
            for n in names
        ]
        self.streams: list[FakeOutputStream] = []
        self.refuse: Exception | None = None

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        return self.devices if device is None else self.devices[device]

    def OutputStream(self, **options: Any) -> FakeOutputStream:
        if self.refuse is not None:
            raise self.refuse
        return FakeOutputStream(self, options)


# -- devices ---------------------------------------------------------------------------------


def test_pulse_device_makes_and_removes_its_sink_and_source() -> None:
    pactl = FakePactl()
    device = PulseVirtualDevice(sd=FakeOutputSD(), pactl=pactl, pid=4242)
    target = device.create()
    assert target.name == "imtalker-cam Microphone"
    assert target.env == {"PULSE_SINK": "imtalker_cam_sink", "PIPEWIRE_NODE": "imtalker_cam_sink"}
    assert target.rate == 48_000
    assert target.device == 1  # PortAudio's ALSA "pulse" device, which honours PULSE_SINK
    loads = [c for c in pactl.calls if c[0] == "load-module"]
    assert loads[0][1] == "module-null-sink" and "sink_name=imtalker_cam_sink" in loads[0]
    assert loads[1][1] == "module-remap-source"
    assert "master=imtalker_cam_sink.monitor" in loads[1]
    assert "source_name=imtalker_cam_mic" in loads[1]
    props = loads[1][-1]
    assert "device.description='imtalker-cam Microphone'" in props
    assert "imtalker_cam.pid=4242" in props
    assert pactl.ours() == ["module-null-sink", "module-remap-source"]
    device.remove()
    assert pactl.ours() == []
    unloads = [int(c[1]) for c in pactl.calls if c[0] == "unload-module"]
    assert unloads == sorted(unloads, reverse=True)  # the source before the sink it sits on


def test_a_stream_that_landed_elsewhere_is_moved_into_the_sink() -> None:
    pactl = FakePactl()
    device = PulseVirtualDevice(sd=FakeOutputSD(), pactl=pactl, pid=4242)
    device.create()
    ours = next(i for i, n in pactl.sinks.items() if n == "imtalker_cam_sink")
    # PipeWire's ALSA device ignored PULSE_SINK: our stream plays on the speakers; another
    # program's stream stays where it is.
    pactl.sink_inputs = {5: (0, 4242), 6: (0, 999)}
    device.claim()
    assert pactl.sink_inputs == {5: (ours, 4242), 6: (0, 999)}
    device.claim()  # already there: nothing moves
    assert [c for c in pactl.calls if c[0] == "move-sink-input"] == [
        ["move-sink-input", "5", "imtalker_cam_sink"]
    ]
    device.remove()
    with pytest.raises(PactlError, match="gone"):
        device.claim()


def test_modules_left_by_a_killed_run_are_removed_first() -> None:
    pactl = FakePactl()
    PulseVirtualDevice(sd=FakeOutputSD(), pactl=pactl, pid=111).create()  # never removed
    assert len(pactl.ours()) == 2
    device = PulseVirtualDevice(
        sd=FakeOutputSD(), pactl=pactl, pid=222, pid_alive=lambda pid: pid == 222
    )
    device.create()
    assert len(pactl.ours()) == 2
    assert all("pid=222" in a for n, a in pactl.modules.values() if "imtalker_cam" in a)


def test_a_running_owner_is_not_robbed() -> None:
    pactl = FakePactl()
    PulseVirtualDevice(sd=FakeOutputSD(), pactl=pactl, pid=111).create()
    device = PulseVirtualDevice(sd=FakeOutputSD(), pactl=pactl, pid=222, pid_alive=lambda p: True)
    with pytest.raises(VirtualMicUnavailable, match="process 111"):
        device.create()
    assert len(pactl.ours()) == 2


def test_of_several_started_together_exactly_one_owns_the_microphone(tmp_path: Path) -> None:
    """Both look for modules before either loads any (the interleaving that made
    `imtalker_cam_mic.2`): the owner lock decides, the second is told and loads nothing."""
    pactl = FakePactl()
    both_listed = threading.Barrier(2)

    def listing_together(args: Any) -> str:
        if list(args[:3]) == ["list", "short", "modules"]:
            with contextlib.suppress(threading.BrokenBarrierError):  # the other never got here
                both_listed.wait(timeout=1.0)  # bounds the test only
        return pactl(args)

    lock = tmp_path / "owner.lock"
    devices = [
        PulseVirtualDevice(
            sd=FakeOutputSD(), pactl=listing_together, pid=pid, pid_alive=lambda p: True,
            owner_lock=lock,
        )
        for pid in (111, 222)
    ]  # fmt: skip
    outcomes: list[str] = []

    def start(device: PulseVirtualDevice) -> None:
        try:
            device.create()
            outcomes.append("owner")
        except VirtualMicUnavailable as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=start, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("owner") == 1 and len(outcomes) == 2
    assert any("another imtalker-cam already provides" in o for o in outcomes)
    assert len(pactl.ours()) == 2  # one sink, one source
    for device in devices:
        device.remove()
    assert pactl.ours() == []
    again = PulseVirtualDevice(sd=FakeOutputSD(), pactl=pactl, pid=333, owner_lock=lock)
    again.create()  # free once the owner has removed its own
    again.remove()


def test_a_failed_module_load_leaves_nothing_behind() -> None:
    pactl = FakePactl(fail_on="module-remap-source")
    device = PulseVirtualDevice(sd=FakeOutputSD(), pactl=pactl, pid=5)
    with pytest.raises(VirtualMicUnavailable, match="Module initialization failed") as info:
        device.create()
    assert "pactl" in str(info.value) and "pulseaudio-utils" in str(info.value)
    assert pactl.ours() == []


def test_missing_pactl_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(VirtualMicUnavailable, match="pulseaudio-utils"):
        run_pactl(["info"])


def test_cables_found_by_name_or_explained() -> None:
    sd = FakeOutputSD(("Speakers (Realtek)", "CABLE Input (VB-Audio Virtual Cable)"))
    target = default_device(sd, platform="win32").create()
    assert target.device == 1 and target.name.startswith("CABLE Input") and target.env == {}
    with pytest.raises(VirtualMicUnavailable, match="VB-Audio") as info:
        default_device(FakeOutputSD(("Speakers",)), platform="win32").create()
    assert "CABLE Output" in str(info.value)
    mac = default_device(FakeOutputSD(("MacBook Speakers", "BlackHole 2ch")), platform="darwin")
    assert isinstance(mac, CableDevice) and mac.create().name == "BlackHole 2ch"
    with pytest.raises(VirtualMicUnavailable, match="brew install blackhole-2ch"):
        default_device(FakeOutputSD(("Speakers",)), platform="darwin").create()
    assert "imtalker-cam Microphone" in help_text("linux")


# -- the virtual microphone ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plays_the_captured_audio_delayed_into_the_device() -> None:
    pactl, sd, clock = FakePactl(), FakeOutputSD(), Clock()
    vmic = VirtualMic(
        sd=sd,
        device=PulseVirtualDevice(sd=sd, pactl=pactl, pid=1),
        config=VirtualMicConfig(offset_ms=20.0, initial_delay_s=0.3),
        clock=clock,
    )
    assert "PULSE_SINK" not in os.environ
    vmic.open()
    stream = sd.streams[0]
    assert stream.started and stream.env_at_open == "imtalker_cam_sink"
    assert "PULSE_SINK" not in os.environ  # only while the stream opened
    assert stream.options["samplerate"] == 48_000 and stream.options["channels"] == 1
    assert np.all(stream.pull(960) == 0)  # nothing captured yet: silence
    # One second of a ramp captured in 10 ms blocks; block k arrives at 100 + (k + 1) / 100.
    ramp = np.arange(48_000, dtype=np.float32) / 48_000
    for k in range(100):
        clock.now = 100.0 + (k + 1) / 100
        vmic.tap(ramp[k * 480 : (k + 1) * 480], 48_000, clock.now)
    status = vmic.status()
    assert status.target_ms == pytest.approx(320.0) and status.device == "imtalker-cam Microphone"
    vmic.set_latency(0.4)
    assert vmic.status().target_ms == pytest.approx(420.0)
    # Now (t = 101) + 20 ms output latency - 420 ms: the sample captured at 100.6 s, which is
    # ramp index 0.6 * 48000 - 1.
    out = stream.pull(480, latency=0.02)
    assert out[0] == pytest.approx((0.6 * 48_000 - 1) / 48_000, abs=2 / 48_000)
    assert np.all(np.diff(out) > 0)  # continuous
    assert vmic.status().delay_ms == pytest.approx(420.0, abs=0.1)
    with pytest.raises(ValueError, match="offset"):
        vmic.set_offset_ms(float("inf"))
    vmic.close()
    assert stream.closed and pactl.ours() == []
    vmic.close()  # idempotent


def test_the_delay_never_goes_below_what_the_line_can_keep() -> None:
    """With the video sooner than the output buffering plus a capture block's delivery (hop 1
    on a fast machine: about 110 ms), a delay that short would play the gaps of audio not yet
    delivered: the delay stays at the floor (the voice a little after the lips)."""
    pactl, sd, clock = FakePactl(), FakeOutputSD(), Clock()
    vmic = VirtualMic(sd=sd, device=PulseVirtualDevice(sd=sd, pactl=pactl, pid=1), clock=clock)
    vmic.set_latency(0.11)
    assert vmic.status().target_ms == pytest.approx(200.0)
    assert vmic.status().behind_ms == 0.0  # not "out of sync": the voice is the later one
    vmic.set_latency(0.35)
    assert vmic.status().target_ms == pytest.approx(350.0)


def test_the_voice_is_never_delayed_past_the_cap() -> None:
    """Issue 20: with the video 4.75 s behind (a CPU slideshow), the call would hear the voice
    about 5 s late. The delay stops at the cap (1 s by default), the voice plays that late, and
    the status says by how much the lips are out of sync; a raised cap follows again."""
    pactl, sd, clock = FakePactl(), FakeOutputSD(), Clock()
    vmic = VirtualMic(sd=sd, device=PulseVirtualDevice(sd=sd, pactl=pactl, pid=1), clock=clock)
    vmic.open()
    stream = sd.streams[0]
    ramp = np.arange(48_000 * 6, dtype=np.float32) / (48_000 * 6)
    for k in range(600):  # 6 s captured, block k at 100 + (k + 1) / 100
        clock.now = 100.0 + (k + 1) / 100
        vmic.tap(ramp[k * 480 : (k + 1) * 480], 48_000, clock.now)
    vmic.set_latency(4.75)
    status = vmic.status()
    assert status.target_ms == pytest.approx(1000.0) and status.max_delay_ms == 1000.0
    assert status.behind_ms == pytest.approx(3750.0)
    assert status.out_of_sync == "lips not in sync: video 3.8 s behind"
    assert status.as_dict()["out_of_sync"] == status.out_of_sync
    # What plays now (t = 106, output latency 20 ms) was captured 1 s ago, not 4.75 s ago.
    out = stream.pull(480, latency=0.02)
    assert out[0] == pytest.approx((5.02 * 48_000 - 1) / (48_000 * 6), abs=4 / 48_000), out[0]
    vmic.set_max_delay_ms(5000.0)
    assert vmic.status().target_ms == pytest.approx(4750.0)
    assert vmic.status().behind_ms == 0.0 and vmic.status().out_of_sync is None
    with pytest.raises(ValueError, match="virtual-microphone delay"):
        vmic.set_max_delay_ms(-1.0)
    with pytest.raises(ValueError, match="virtual-microphone delay"):
        VirtualMicConfig(max_delay_ms=float("nan"))
    vmic.close()


def test_the_engine_link_says_when_the_lips_go_out_of_sync_and_back() -> None:
    """The engine's link hands the measured latency over once per hop and says so, once, when
    the delay it needs passes the cap, and once when it is back under it."""
    from runtime.core.timing import FrameTiming
    from runtime.engine.live.latency import LatencyMonitor
    from runtime.engine.live.vmic import VirtualMicLink

    pactl, sd, clock = FakePactl(), FakeOutputSD(), Clock()
    vmic = VirtualMic(sd=sd, device=PulseVirtualDevice(sd=sd, pactl=pactl, pid=1), clock=clock)
    monitor = LatencyMonitor(window_s=1000.0, clock=clock)
    said: list[tuple[str, str]] = []
    events: list[object] = []

    def emit(kind: str, message: str, detail: object = None) -> None:
        said.append((kind, message))
        events.append(detail)

    link = VirtualMicLink(vmic, monitor=monitor, emit=emit)
    link.open(has_audio=True)
    assert events == [MicEvent.OPEN]
    said.clear()
    events.clear()

    def latency(seconds: float) -> None:
        for _ in range(50):
            clock.now += 0.04
            sent = FrameTiming(capture=clock.now - seconds).with_sent(clock.now)
            monitor.record_published(sent, first=True)
        link.update()

    latency(0.3)
    latency(4.75)
    latency(4.8)
    assert len(said) == 1 and said[0][0] == "virtual_mic"  # once, however long it lasts
    assert events == [MicEvent.OUT_OF_SYNC]  # what to decide on: not the words
    assert said[0][1].startswith("lips not in sync: video ")
    assert said[0][1].endswith(" s behind (the voice is delayed 1.0 s at most)")
    assert vmic.status().out_of_sync == "lips not in sync: video 3.8 s behind"
    monitor.reset()
    latency(0.5)
    assert said[-1] == ("virtual_mic", "lips in sync again") and len(said) == 2
    assert events[-1] is MicEvent.IN_SYNC
    link.close()


def test_a_stream_that_cannot_open_removes_the_device() -> None:
    pactl, sd = FakePactl(), FakeOutputSD()
    sd.refuse = OSError("Device unavailable [PaErrorCode -9985]")
    vmic = VirtualMic(sd=sd, device=PulseVirtualDevice(sd=sd, pactl=pactl, pid=1))
    with pytest.raises(VirtualMicUnavailable, match="Device unavailable"):
        vmic.open()
    assert pactl.ours() == []
    assert vmic.status().error is not None and not vmic.status().open


# -- in the engine ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelSet:
    return stub_models(tmp_path_factory.mktemp("stubs"))


def test_engine_feeds_it_follows_the_latency_and_mute_silences_it(
    models: ModelSet, fixtures_dir: Path
) -> None:
    speech = wav_16k(fixtures_dir / "audio_1.wav")
    mic = FakeSoundDevice(speech, 16_000, loop=True)
    pactl, sd = FakePactl(), FakeOutputSD()
    vmic = VirtualMic(sd=sd, device=PulseVirtualDevice(sd=sd, pactl=pactl, pid=1))
    tap = Tap()
    engine = LiveEngine(
        models=models,
        source=MicrophoneInput(sd=mic),
        config=EngineConfig(),
        listener=tap.listener(),
        virtual_mic=vmic,
    )
    engine.start(grey_avatar(models, 90))
    floor_ms = vmic.config.min_delay_s * 1e3
    try:
        assert tap.wait_event("virtual_mic", "imtalker-cam Microphone", timeout=5) is not None

        def follows() -> bool:
            lat = engine.stats().latency.latency_p50_ms
            want = max(floor_ms, lat)  # never below what the line can keep without gaps
            return math.isfinite(lat) and vmic.status().target_ms == pytest.approx(want, abs=30)

        wait_until(follows, 10.0, poll_s=0.05, what="the line follows the latency")
        stats = engine.stats()
        assert stats.virtual_mic is not None
        want = max(floor_ms, stats.latency.latency_p50_ms)
        assert stats.virtual_mic.target_ms == pytest.approx(want, abs=30), stats
        line = vmic._line
        assert line is not None and line.written > 0 and line.rate == 16_000
        # Exactly what the microphone heard went in (its first stream starts at sample 0).
        n = line.written
        assert n < line._data.size
        np.testing.assert_array_equal(line._data[:n], mic.samples(0, n))
        engine.mic.set_muted(True)
        # A block already in the callback may still be loud: skip 0.1 s, then look at 0.3 s.
        at_mute = line.written
        wait_until(lambda: line.written >= at_mute + 1600, 10.0, what="0.1 s after the mute")
        mark = line.written
        wait_until(lambda: line.written >= mark + 4800, 10.0, what="0.3 s muted")
        muted = line._data[np.arange(mark, line.written) % line._data.size]
        assert muted.size > 1000 and np.all(muted == 0)
        as_json = engine.stats().as_dict()["virtual_mic"]
        assert as_json["device"] == "imtalker-cam Microphone"
        assert {"delay_ms", "underruns"} <= set(as_json)
    finally:
        assert engine.stop()
    assert pactl.ours() == [] and sd.streams[0].closed


def test_engine_runs_on_when_no_virtual_mic_can_be_had(models: ModelSet) -> None:
    mic = FakeSoundDevice(np.zeros(16_000, np.float32), 16_000, loop=True)
    sd = FakeOutputSD(("Speakers",))
    vmic = VirtualMic(sd=sd, device=CableDevice(sd=sd, names=("CABLE Input",), platform="win32"))
    tap = Tap()
    engine = LiveEngine(
        models=models, source=MicrophoneInput(sd=mic), listener=tap.listener(), virtual_mic=vmic
    )
    engine.start(grey_avatar(models, 90))
    try:
        assert tap.wait_event("virtual_mic", "unavailable", timeout=5) is not None
        assert tap.wait_event("audio", "running", timeout=5) is not None
        status = engine.stats().virtual_mic
        assert status is not None and not status.open and "VB-Audio" in (status.error or "")
    finally:
        assert engine.stop()
