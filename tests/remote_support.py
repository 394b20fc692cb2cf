"""Shared pieces of the remote-compute tests: audio as wire packets, an in-memory channel."""

from __future__ import annotations

import asyncio

import numpy as np

from runtime.remote import protocol as P
from runtime.remote.codec import pcm_from_float
from runtime.server.connection import Disconnected

TOKEN = "test-token-0123456789abcdef"


def speechlike(seconds: float, *, seed: int = 0) -> np.ndarray:
    """Bursts of tone with pauses: loud and quiet frames, so features move."""
    t = np.arange(int(seconds * P.SAMPLE_RATE)) / P.SAMPLE_RATE
    envelope = (np.sin(2 * np.pi * 1.3 * t + seed) > 0).astype(np.float32)
    return (0.4 * envelope * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def audio_packets(audio: np.ndarray, *, t0: float = 100.0, seq0: int = 0) -> list[bytes]:
    """`audio` (16 kHz) as AUDIO messages, captured in real time from `t0`."""
    n = len(audio) // P.PACKET_SAMPLES
    out = []
    for i in range(n):
        chunk = audio[i * P.PACKET_SAMPLES : (i + 1) * P.PACKET_SAMPLES]
        end = t0 + (i + 1) * P.PACKET_SAMPLES / P.SAMPLE_RATE
        out.append(
            P.pack_audio(P.AudioPacket(seq=seq0 + i, capture_end=end, pcm=pcm_from_float(chunk)))
        )
    return out


class MemoryChannel:
    """Both ends of a session in one event loop: the test puts client messages in `inbox` and
    reads the server's from `outbox`."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.outbox: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> str | bytes:
        item = await self.inbox.get()
        if item is None:
            raise Disconnected
        return item

    async def send_text(self, data: str) -> None:
        await self.outbox.put(data)

    async def send_bytes(self, data: bytes) -> None:
        await self.outbox.put(data)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
