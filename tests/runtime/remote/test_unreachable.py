"""A render server that cannot be reached (issue 24, item 1): a closed port, and a server that
accepts the TCP connection but never answers the WebSocket handshake. The link, the engine and
`live --remote` are the real ones over real sockets; the waits between attempts are in virtual
time, so the attempt counts and retry times are the same on any machine."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runtime.commands import cli
from runtime.commands import live as live_cmd
from runtime.engine.live.engine import EngineListener, EventKind, FileInput, LiveEngine
from runtime.engine.live.remote import RemoteCompute, remote_avatar
from runtime.engine.live.types import EngineEvent
from runtime.remote import protocol as P
from runtime.remote.client import LinkCallbacks, RemoteConfig, RemoteLink
from runtime.remote.link_status import LinkState, LinkStatus
from tests.support.virtual_clock import VirtualClock

TOKEN = "test-token-0123456789abcdef"


def closed_port() -> int:
    """A port nothing listens on: bound, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        port: int = s.getsockname()[1]
        yield port


def run_link(config: RemoteConfig, clock: VirtualClock, seconds: float) -> list[LinkStatus]:
    seen: list[LinkStatus] = []
    link = RemoteLink(
        config,
        LinkCallbacks(on_frame=lambda *a: None, on_state=seen.append),
        hello=lambda: P.Hello(token=TOKEN),
        clock=clock,
    )
    clock.join()
    with clock.adopting():
        link.start()
    clock.sleep(seconds)
    clock.leave()
    assert link.stop(timeout=5.0)
    return seen


def test_a_closed_port_is_reported_at_the_first_attempt_with_count_and_retry() -> None:
    port = closed_port()
    url = f"ws://127.0.0.1:{port}"
    clock = VirtualClock(start=0.0)
    seen = run_link(RemoteConfig(url=url, token=TOKEN), clock, 8.0)
    failed = [s for s in seen if s.state is LinkState.CONNECTING]
    first = failed[0]
    assert first == LinkStatus(
        state=LinkState.CONNECTING,
        url=url,
        message=f"cannot reach the render server at {url}: connection refused "
        "(attempt 1, retrying in 0.1 s)",
        attempt=1,
        retry_in_s=0.1,
        reason="connection refused",
        unreachable_since=0.0,
    )
    assert first.unreachable
    # Every attempt is reported, counted on; the waits double to a 2 s cap before any session.
    assert [s.attempt for s in failed] == list(range(1, len(failed) + 1))
    assert [s.retry_in_s for s in failed[:6]] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert len(failed) == 8  # attempts at 0, 0.1, 0.3, 0.7, 1.5, 3.1, 5.1, 7.1 (next: 9.1)
    assert failed[-1].message.endswith("(attempt 8, retrying in 2 s)")
    assert all(s.unreachable_since == 0.0 for s in failed)
    assert seen[-1].state is LinkState.CLOSED


def test_a_server_that_never_answers_the_handshake_fails_each_attempt(silent_server: int) -> None:
    url = f"ws://127.0.0.1:{silent_server}"
    clock = VirtualClock(start=0.0)
    # 0.2 s of real time per attempt (the handshake's timeout is real: it is the network's).
    config = RemoteConfig(url=url, token=TOKEN, connect_timeout_s=0.2)
    seen = run_link(config, clock, 0.25)
    failed = [s for s in seen if s.state is LinkState.CONNECTING]
    assert [s.attempt for s in failed] == [1, 2]
    assert failed[0].reason == "no answer within 0.2 s"
    assert failed[0].message == (
        f"cannot reach the render server at {url}: no answer within 0.2 s "
        "(attempt 1, retrying in 0.1 s)"
    )


def test_the_engine_reports_the_link_as_events_and_in_its_stats() -> None:
    """What the app shows: `EventKind.REMOTE` events carrying the `LinkStatus`, and the stats'
    `remote_link` and status line saying the server cannot be reached (not "starting")."""
    url = f"ws://127.0.0.1:{closed_port()}"
    clock = VirtualClock(start=0.0)
    events: list[EngineEvent] = []
    engine = LiveEngine(
        models=None,
        source=FileInput(audio=np.zeros(16000 * 30, np.float32)),
        listener=EngineListener(on_event=events.append),
        clock=clock,
        compute=RemoteCompute(config=RemoteConfig(url=url, token=TOKEN)),
    )
    clock.join()
    with clock.adopting():
        engine.start(remote_avatar(np.full((512, 512, 3), 90, np.uint8), "grey"))
    clock.sleep(1.0)
    stats = engine.stats()
    clock.leave()
    assert engine.stop()
    remote = [e for e in events if e.kind is EventKind.REMOTE]
    assert remote and remote[0].link is not None
    assert remote[0].message == remote[0].link.message
    assert remote[0].link.attempt == 1 and remote[0].link.reason == "connection refused"
    link = stats.remote_link
    assert link is not None and link.attempt == 4  # 0.1 + 0.2 + 0.4 < 1 s < + 0.8
    assert stats.remote == "connecting" and stats.phase == "starting"
    assert stats.status == link.message
    assert stats.status.startswith(f"cannot reach the render server at {url}: connection refused")
    as_dict = stats.as_dict()
    assert as_dict["remote_attempt"] == 4 and as_dict["remote_retry_in_s"] == 0.8
    assert as_dict["remote_message"] == link.message


def live_args(fixtures_dir: Path, url: str, *extra: str) -> list[str]:
    return [
        "live",
        "--avatar",
        str(fixtures_dir / "source_1.png"),
        "--audio-file",
        str(fixtures_dir / "audio_1.wav"),
        "--remote",
        url,
        "--token",
        TOKEN,
        "--no-vcam",
        *extra,
    ]


def test_live_remote_logs_each_attempt_and_gives_up_after_the_wait(
    fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"ws://127.0.0.1:{closed_port()}"
    args = cli.build_parser().parse_args(live_args(fixtures_dir, url, "--connect-timeout", "5"))
    clock = VirtualClock(start=0.0)
    clock.join()
    with caplog.at_level(logging.INFO), clock.adopting():
        code = live_cmd.run(args, clock=clock)
    clock.leave()
    assert code == live_cmd.EXIT_UNREACHABLE
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0] == (
        f"cannot reach the render server at {url}: connection refused (attempt 1, retrying in "
        "0.1 s)"
    )
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    # 0.1+0.2+0.4+0.8+1.6 = 3.1 < 5 < 5.1: six attempts had failed when the wait ran out.
    assert errors == [
        f"cannot reach the render server at {url}: connection refused (gave up after 5 s and "
        "6 attempts; --connect-timeout changes the wait)"
    ]


def test_live_remote_ends_on_a_server_that_never_answers(
    fixtures_dir: Path, silent_server: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The handshake waits in real time here (it is the network's); the CLI's wait too, 1 s."""
    url = f"ws://127.0.0.1:{silent_server}"
    args = cli.build_parser().parse_args(live_args(fixtures_dir, url, "--connect-timeout", "1"))
    with caplog.at_level(logging.INFO):
        code = live_cmd.run(args)
    assert code == live_cmd.EXIT_UNREACHABLE
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    # The attempt still under way does not hold the exit up ("did not stop within a second").
    assert not [r for r in caplog.records if "did not stop" in r.getMessage()]
    assert errors[0].startswith(f"cannot reach the render server at {url}: no answer")
    assert "--connect-timeout changes the wait" in errors[0]


def test_connect_timeout_has_a_documented_default_and_is_checked(fixtures_dir: Path) -> None:
    args = cli.build_parser().parse_args(live_args(fixtures_dir, "ws://127.0.0.1:9"))
    assert args.connect_timeout == 20.0
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["live"].format_help()  # type: ignore[union-attr]
    assert "--connect-timeout S" in help_text and "(default 20)" in help_text
    bad = cli.build_parser().parse_args(
        live_args(fixtures_dir, "ws://127.0.0.1:9", "--connect-timeout", "0")
    )
    assert live_cmd.run(bad) == live_cmd.EXIT_INPUT
