"""`--frame-format auto` on a link too slow for JPEG: the client's link measures it and the
session switches to H.264 mid-stream, every frame still decoding. The server is the render
server's session code on an in-process WebSocket server (no Ray); the client's link is the real
`RemoteLink`; only the network's rate is faked (a wrapper that delivers the server's messages
no faster than `RATE_BPS`, in order, as a slow downlink would). Real time only bounds the
waits; what is measured is on the simulated link's clock."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterator

import numpy as np
import pytest

from runtime.model.execution.model_set import open_model_set
from runtime.model.versions import V2
from runtime.remote import protocol as P
from runtime.remote.bandwidth import ChooserConfig, LinkReading
from runtime.remote.client import (
    Connection,
    LinkCallbacks,
    LinkState,
    RemoteConfig,
    RemoteLink,
    websocket_connect,
)
from runtime.remote.codec import FrameDecoder, encode_photo, pcm_from_float
from runtime.server.connection import handle
from tests.support import stub_graphs
from tests.support.live import CPU
from tests.support.remote import (
    TOKEN,
    InProcessServer,
    MemoryChannel,
    audio_packets,
    serving,
    speechlike,
)

RATE_BPS = 1.2e6
"""The stub renderer's JPEG frames are ~9.6 KB (1.9 Mbit/s at 25 fps), its H.264 ~0.6 KB."""
H264_FRAMES = 50  # delivered after the switch before the test stops sending audio
SETTLE_S = ChooserConfig().window_s
"""On the link's clock, from the last JPEG frame delivered: the meter's window then holds H.264
frames only (the reading checked is the next one the link takes)."""
AHEAD_FRAMES = 10
"""Audio sent at most this many frames ahead of the newest frame the server has sent: a loaded
machine then slows the microphone down instead of making the server skip hops (it skips at 3
hops behind, and the frames are checked consecutive); an idle one never reaches it."""
HANG_S = 300.0  # real-time bound on each wait: only a hang takes this long


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    models = open_model_set(
        stub_graphs.write_stub_graphs(tmp_path_factory.mktemp("stubs"), version=V2), options=CPU
    )
    with serving(models, capacity=1) as s:
        yield s


class LinkClock:
    """The client link's clock: real time, except that from a frame's delivery until the next
    delivery (or a wait that ends with nothing) it reads the time the slow link delivered it.
    What the link measures from it (the wait for each frame of a hop, hence the capacity) is
    then the simulated link's own, however late a loaded machine ran the link thread. It may
    step back to a due time that a late thread read past; the link only takes differences."""

    def __init__(self) -> None:
        self.pinned: float | None = None

    def __call__(self) -> float:
        pinned = self.pinned
        return time.perf_counter() if pinned is None else pinned


class SlowDownlink:
    """A connection whose server-to-client direction carries `rate_bps` (FIFO: a message is
    delivered once the ones before it and its own bytes have gone through). A hop's frames
    enter the link together (the server sends them back to back), each when the first did."""

    def __init__(self, inner: Connection, rate_bps: float, clock: LinkClock) -> None:
        self._inner, self._rate, self._clock = inner, rate_bps, clock
        self._free_at = 0.0
        self._hop_entered = 0.0
        self._pending: deque[tuple[float, str | bytes]] = deque()
        self.delivered: list[tuple[int, int]] = []  # (index, format) of each frame
        self.last_jpeg_due = 0.0  # when the link delivered its last JPEG frame
        self.newest_sent = -1  # the newest frame index the server has sent

    def send(self, message: str | bytes) -> None:
        self._inner.send(message)

    def _enter(self, message: str | bytes) -> None:
        entered = time.perf_counter()
        if isinstance(message, bytes):
            header, _ = P.unpack_frame(message)
            self.newest_sent = max(self.newest_sent, header.index)
            if header.first_in_hop or header.index < 0:
                self._hop_entered = entered
            else:
                entered = self._hop_entered
        self._free_at = max(entered, self._free_at) + 8 * len(message) / self._rate
        self._pending.append((self._free_at, message))

    def recv(self, timeout: float | None = None) -> str | bytes:
        end = time.perf_counter() + (10.0 if timeout is None else timeout)
        try:
            while not self._pending:
                left = end - time.perf_counter()
                if left <= 0:
                    raise TimeoutError
                self._enter(self._inner.recv(timeout=left))
            due, message = self._pending[0]
            while True:
                now = time.perf_counter()
                if now >= due:
                    break
                if now >= end:
                    raise TimeoutError
                # Keep pulling from the socket meanwhile: the queue builds up on the link.
                try:
                    self._enter(self._inner.recv(timeout=min(due, end) - now))
                except TimeoutError:
                    continue
        except TimeoutError:
            self._clock.pinned = None
            raise
        self._pending.popleft()
        self._clock.pinned = due
        if isinstance(message, bytes):
            header, _ = P.unpack_frame(message)
            self.delivered.append((header.index, header.format))
            if header.index >= 0 and header.format == P.FORMAT_JPEG:
                self.last_jpeg_due = due
        return message

    def close(self) -> None:
        self._inner.close()

    def settled_on_h264(self) -> bool:
        """Enough H.264 frames delivered, and the last JPEG one out of the meter's window
        (on the link's clock)."""
        h264 = sum(1 for i, f in list(self.delivered) if i >= 0 and f == P.FORMAT_H264)
        return h264 >= H264_FRAMES and self._clock() - self.last_jpeg_due > SETTLE_S


def test_a_slow_link_switches_to_h264_and_every_frame_decodes(server: InProcessServer) -> None:
    """Nothing here is judged on real time: the link's measurements are on the simulated
    link's clock (`LinkClock`), the test goes on when a state is reached, and real time only
    bounds each wait. It fails if the meter misjudges the link (no switch, or a capacity off
    by 2x), if the switch breaks the stream (a frame that does not decode, a reconnect, a gap
    or a JPEG frame after the switch), or if the switch does not hold."""
    links: list[SlowDownlink] = []
    clock = LinkClock()

    def connect(url: str, timeout: float) -> SlowDownlink:
        link = SlowDownlink(websocket_connect(url, timeout), RATE_BPS, clock)
        links.append(link)
        return link

    got: list[tuple[P.FrameHeader, np.ndarray]] = []
    states: list[LinkState] = []
    connected = threading.Event()
    link = RemoteLink(
        RemoteConfig(url=server.url, token=TOKEN, frame_format="auto"),
        LinkCallbacks(
            on_frame=lambda h, image, t: got.append((h, image)),
            on_state=lambda st: states.append(st.state),
            on_connected=lambda generation: connected.set(),
        ),
        hello=lambda: P.Hello(token=TOKEN, frame_format="jpeg"),  # as for a loopback address
        connect=connect,
        clock=clock,
    )
    size = 256
    link.set_avatar(encode_photo(np.full((size, size, 3), 90, np.uint8)), "grey")
    link.set_controls(P.WireControls(hop=5))
    link.start()
    audio = speechlike(20.0)
    packets = len(audio) // P.PACKET_SAMPLES
    per_frame = 1000 // 25 // P.PACKET_MS
    try:
        assert connected.wait(HANG_S)
        give_up = time.monotonic() + HANG_S
        t0 = time.perf_counter()
        k = 0
        settled: list[LinkReading | None] = []  # the reading when it settled
        # Audio paced like a microphone over a real socket (from the start again if the
        # speech runs out) until the link has carried enough H.264 frames after the switch
        # and has taken a reading since.
        while not settled or link.reading is settled[0]:
            if not settled and link.frame_format == "h264" and links[0].settled_on_h264():
                settled.append(link.reading)
            assert time.monotonic() < give_up, (link.frame_format, link.reading, links[0].delivered)
            if k // per_frame - links[0].newest_sent > AHEAD_FRAMES:
                time.sleep(0.005)
                continue
            due = t0 + (k + 1) * P.PACKET_MS / 1000
            time.sleep(max(0.0, due - time.perf_counter()))
            j = k % packets
            pcm = pcm_from_float(audio[j * P.PACKET_SAMPLES : (j + 1) * P.PACKET_SAMPLES])
            link.send_audio(pcm, time.perf_counter(), 1)
            k += 1
        reading, stats = link.reading, link.stats()
    finally:
        link.stop()
    assert states == [LinkState.CONNECTED, LinkState.CLOSED]  # no decode error, no reconnect
    assert len(links) == 1
    delivered = [(i, f) for i, f in links[0].delivered if i >= 0]
    formats = [f for _, f in delivered]
    first_h264 = formats.index(P.FORMAT_H264)
    assert first_h264 > 0 and set(formats[:first_h264]) == {P.FORMAT_JPEG}
    assert set(formats[first_h264:]) == {P.FORMAT_H264}  # and it stays (no headroom here)
    assert len(formats) - first_h264 >= H264_FRAMES
    # Every frame the link carried became a picture, the first H.264 one included (the
    # stream starts with a keyframe); the frames are consecutive across the switch.
    shown = [h.index for h, _ in got if h.index >= 0]
    assert shown == [i for i, _ in delivered]
    assert shown == list(range(shown[0], shown[0] + len(shown)))
    # The pictures are the renderer's: its horizontal ramp (0.2 of full scale) in every frame.
    for h, image in got:
        if h.index >= 0:
            ramp = float(image[:, -8:, 1].mean()) - float(image[:, :8, 1].mean())
            assert abs(ramp - stub_graphs.RAMP * 255) < 6, (h.index, h.format, ramp)
    assert reading is not None and reading.capacity_bps is not None
    assert 0.5 * RATE_BPS < reading.capacity_bps < 2 * RATE_BPS, reading
    # What --stats-json and the app's readout show.
    assert stats["frame_format"] == "h264"
    assert stats["link_capacity_mbps"] == pytest.approx(reading.capacity_bps / 1e6)
    assert 0 < stats["link_mbps"] < 0.5  # H.264's few hundred kbit/s


# -- the server's side, in memory ------------------------------------------------------------


def test_the_server_switches_format_between_hops_and_checks_the_request(
    server: InProcessServer,
) -> None:
    """JPEG -> H.264 -> JPEG -> H.264 within one session, one decoder on the client: each
    switch to H.264 starts a new stream (a keyframe first), so every frame decodes."""
    ctx = server.ctx
    size = ctx.models.source_size
    photo = encode_photo(np.full((size, size, 3), 90, np.uint8))
    packets = audio_packets(speechlike(1.6))
    plan = [("jpeg", 0), ("h264", 20), ("jpeg", 40), ("h264", 60)]  # format from packet N

    async def run() -> list[bytes]:
        channel = MemoryChannel()
        for m in [
            P.Hello(token=TOKEN, frame_format="jpeg", lookahead=0).to_text(),
            P.text("avatar", name="grey", bytes=len(photo)),
            P.pack_avatar(photo),
            P.WireControls(hop=5).to_text(),
        ]:
            channel.inbox.put_nowait(m)
        task = asyncio.create_task(handle(channel, ctx))
        frames: list[bytes] = []

        async def until(n: int) -> None:  # n hop frames (plus the idle picture) are out
            while len(frames) < n + 1:
                item = await asyncio.wait_for(channel.outbox.get(), 10)
                if isinstance(item, bytes):
                    frames.append(item)

        for (fmt, first), (_, stop) in zip(plan, [*plan[1:], ("", len(packets))], strict=True):
            channel.inbox.put_nowait(P.frame_format_text(fmt))
            for p in packets[first:stop]:
                channel.inbox.put_nowait(p)
            await until(stop // 2)  # 2 packets (40 ms) a frame
        channel.inbox.put_nowait(P.text("frame_format", format="gif"))
        error = await asyncio.wait_for(channel.outbox.get(), 10)
        await asyncio.wait_for(task, 10)
        assert isinstance(error, str) and "frame_format must be one of" in error, error
        return frames

    frames = [P.unpack_frame(m) for m in asyncio.run(run())]
    decoder = FrameDecoder()
    formats = [h.format for h, _ in frames[1:]]
    want = [P.FRAME_FORMATS[fmt] for fmt, first in plan for _ in range(10)]
    assert formats == want
    for h, payload in frames:
        image = decoder.decode(h, payload)
        assert image is not None and image.shape == (512, 512, 3), (h.index, h.format)
    assert ctx.admission.active == 0
