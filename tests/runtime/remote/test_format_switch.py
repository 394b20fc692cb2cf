"""`--frame-format auto` on a link too slow for JPEG: the client's link measures it and the
session switches to H.264 mid-stream, every frame still decoding. The server is the render
server's session code on an in-process WebSocket server (no Ray); the client's link is the real
`RemoteLink`; only the network's rate is faked (a wrapper that delivers the server's messages
no faster than `RATE_BPS`, in order, as a slow downlink would). Real time bounds the test."""

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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    models = open_model_set(
        stub_graphs.write_stub_graphs(tmp_path_factory.mktemp("stubs"), version=V2), options=CPU
    )
    with serving(models, capacity=1) as s:
        yield s


class SlowDownlink:
    """A connection whose server-to-client direction carries `rate_bps` (FIFO: a message is
    delivered once the ones before it and its own bytes have gone through)."""

    def __init__(self, inner: Connection, rate_bps: float) -> None:
        self._inner, self._rate = inner, rate_bps
        self._free_at = 0.0
        self._pending: deque[tuple[float, str | bytes]] = deque()
        self.delivered: list[tuple[int, int]] = []  # (index, format) of each frame

    def send(self, message: str | bytes) -> None:
        self._inner.send(message)

    def recv(self, timeout: float | None = None) -> str | bytes:
        end = time.perf_counter() + (10.0 if timeout is None else timeout)
        while not self._pending:
            left = end - time.perf_counter()
            if left <= 0:
                raise TimeoutError
            message = self._inner.recv(timeout=left)
            start = max(time.perf_counter(), self._free_at)
            self._free_at = start + 8 * len(message) / self._rate
            self._pending.append((self._free_at, message))
        due, message = self._pending[0]
        while True:
            now = time.perf_counter()
            if now >= due:
                break
            if now >= end:
                raise TimeoutError
            # Keep pulling from the socket meanwhile: the queue builds up on the link.
            try:
                more = self._inner.recv(timeout=min(due, end) - now)
            except TimeoutError:
                continue
            self._free_at = max(now, self._free_at) + 8 * len(more) / self._rate
            self._pending.append((self._free_at, more))
        self._pending.popleft()
        if isinstance(message, bytes):
            header, _ = P.unpack_frame(message)
            self.delivered.append((header.index, header.format))
        return message

    def close(self) -> None:
        self._inner.close()


def test_a_slow_link_switches_to_h264_and_every_frame_decodes(server: InProcessServer) -> None:
    links: list[SlowDownlink] = []

    def connect(url: str, timeout: float) -> SlowDownlink:
        link = SlowDownlink(websocket_connect(url, timeout), RATE_BPS)
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
    )
    size = 256
    link.set_avatar(encode_photo(np.full((size, size, 3), 90, np.uint8)), "grey")
    link.set_controls(P.WireControls(hop=5))
    link.start()
    audio = speechlike(20.0)
    try:
        assert connected.wait(10)
        t0 = time.perf_counter()
        switched_at: float | None = None
        for k in range(len(audio) // P.PACKET_SAMPLES):
            due = t0 + (k + 1) * P.PACKET_MS / 1000
            # Real: audio paced like a microphone over a real socket; load only slows the link.
            time.sleep(max(0.0, due - time.perf_counter()))
            pcm = pcm_from_float(audio[k * P.PACKET_SAMPLES : (k + 1) * P.PACKET_SAMPLES])
            link.send_audio(pcm, time.perf_counter(), 1)
            if switched_at is None and link.frame_format == "h264":
                switched_at = time.perf_counter()
            if switched_at is not None and time.perf_counter() - switched_at > 4.0:
                break
        assert switched_at is not None, link.reading
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
    assert len(formats) - first_h264 >= 50
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
