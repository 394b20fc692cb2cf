"""The remote client when the server says no or talks nonsense: a wrong token, a reply that
is not JSON, a frame header of 65535x65535 pixels. The live engine (real link, real WebSocket
on 127.0.0.1) fails with one sentence naming the cause: no traceback in the log, no
exception type in the message the CLI and the app show."""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from runtime.engine.live.engine import EngineConfig, FileInput, LiveControls, LiveEngine
from runtime.engine.live.remote import RemoteCompute, remote_avatar
from runtime.remote import protocol as P
from runtime.remote.client import RemoteConfig
from tests.support.live import Tap
from tests.support.remote import TOKEN, free_port, speechlike

Reply = Callable[[], list[str | bytes]]


@contextmanager
def scripted_server(reply: Reply) -> Iterator[str]:
    """A WebSocket server on 127.0.0.1 that answers every hello with `reply()`."""
    from websockets.asyncio.server import serve

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = free_port()

    async def handler(ws: Any) -> None:
        await ws.recv()
        for message in reply():
            await ws.send(message)
        await ws.wait_closed()

    async def listen() -> Any:
        return await serve(handler, "127.0.0.1", port)

    server = asyncio.run_coroutine_threadsafe(listen(), loop).result(10)
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:

        async def close() -> None:
            server.close(close_connections=True)
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _ready() -> str:
    return P.text("ready", model="v2", source_size=512, pid=1, capacity=1)


def _huge_frame() -> bytes:
    header = struct.pack("<idfHHBBB", 0, 1.0, 0.01, 65535, 65535, P.FORMAT_RAW, 1, 1)
    return P.MAGIC + bytes([P.FRAME]) + header


CASES: dict[str, tuple[Reply, str]] = {
    "wrong token": (
        lambda: [P.text("error", code=P.BAD_TOKEN, message="wrong or missing token")],
        "the render server refused the session: wrong or missing token",
    ),
    "not JSON": (
        lambda: ["<html>502 Bad Gateway</html>"],
        "the render server sent what this client cannot read: a text message is not JSON",
    ),
    "huge frame header": (
        lambda: [_ready(), _huge_frame()],
        "the render server sent what this client cannot read: a frame of 65535x65535 pixels",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_refusal_is_one_sentence_without_a_traceback(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    reply, expected = CASES[case]
    tap = Tap()
    with scripted_server(reply) as url, caplog.at_level(logging.DEBUG):
        engine = LiveEngine(
            models=None,
            source=FileInput(audio=speechlike(2.0)),
            config=EngineConfig(),
            sinks=[tap.preview()],
            listener=tap.listener(),
            compute=RemoteCompute(config=RemoteConfig(url=url, token=TOKEN, frame_format="raw")),
        )
        image = np.full((512, 512, 3), 128, np.uint8)
        engine.start(remote_avatar(image, "grey"), LiveControls())
        try:
            assert tap.wait_event("error", "", 20) is not None
        finally:
            engine.stop()
    with tap.lock:
        (error,) = [e.message for e in tap.events if e.kind == "error"]
    assert error.startswith(expected), error
    assert "\n" not in error and "Error:" not in error
    tracebacks = [r for r in caplog.records if r.exc_info is not None and r.levelno >= logging.INFO]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
