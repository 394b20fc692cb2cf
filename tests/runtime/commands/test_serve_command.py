"""`imtalker-cam serve`'s own arguments are checked before Ray starts: a graphs folder that is
missing or holds no graphs, and a port in use, are said in one sentence naming the folder or
the port (Ray is made unimportable here: reaching it would say "needs the server extra").
Then, with real Ray (slow): twenty silent sockets do not keep a real client from its session,
and SIGTERM ends every session with a reason, exits 0 and leaves no process of its group
behind."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from runtime.commands import cli
from runtime.model.versions import V2
from tests.support.remote import TOKEN, free_port
from tests.support.remote_server import grey_less, serve
from tests.support.stub_graphs import write_stub_graphs


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails
    monkeypatch.setenv("IMTALKER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path / "cache"))


def _serve(
    graphs: Path, port: int, caplog: pytest.LogCaptureFixture, *extra: str
) -> tuple[int, str]:
    argv = ["serve", "--graphs", str(graphs), "--token", TOKEN, "--port", str(port)]
    argv += ["--capacity", "1", "--gpus-per-replica", "0", *extra]
    with caplog.at_level(logging.INFO):
        code = cli.main(argv)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    return code, errors[0]


@pytest.mark.usefixtures("no_ray")
def test_a_missing_graphs_folder_is_named_before_ray_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no such graphs"
    code, error = _serve(missing, free_port(), caplog)
    assert code == 1 and error == f"the graphs folder {missing} does not exist"


@pytest.mark.usefixtures("no_ray")
def test_a_folder_without_graphs_is_named_before_ray_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, error = _serve(empty, free_port(), caplog)
    assert code == 1 and error.startswith(f"the graphs folder {empty} lacks ")
    assert "renderer" in error


@pytest.mark.usefixtures("no_ray")
@pytest.mark.parametrize("precision", ["bf16", "bf16-mixed", "int8"])
def test_openvino_precisions_pass_the_graphs_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, precision: str
) -> None:
    # They run on the fp32 files: the check asked for a "bf16" file and refused the folder.
    graphs = write_stub_graphs(tmp_path / "stubs", version=V2)
    extra = ("--backend", "openvino", "--precision", precision)
    code, error = _serve(graphs, free_port(), caplog, *extra)
    assert code == 1 and "needs the 'server' extra" in error, error


@pytest.mark.usefixtures("no_ray")
def test_a_port_in_use_is_said_before_ray_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    graphs = write_stub_graphs(tmp_path / "stubs", version=V2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, error = _serve(graphs, port, caplog)
    assert code == 1
    assert error == f"port {port} is in use on 127.0.0.1: stop what uses it, or pass --port"


@pytest.mark.slow
def test_sigterm_ends_sessions_with_a_reason_and_leaves_no_process(tmp_path: Path) -> None:
    graphs = write_stub_graphs(tmp_path / "stubs", version=V2)
    with serve(graphs, tmp_path, "--capacity", "2", "--max-per-address", "64") as server:
        # Through Ray's proxy too, twenty silent sockets do not keep a real client waiting
        # (they used to hold Ray's request slots, each for its whole hello timeout).
        silent = [_upgrade_and_say_nothing(server.url) for _ in range(20)]
        session = grey_less(server)
        for sock in silent:
            sock.close()
        server.proc.send_signal(signal.SIGTERM)
        try:
            while True:
                session.ws.recv(timeout=60)
        except ConnectionClosed as exc:
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
        code = server.proc.wait(90)
        log = server.log_text()
        group_left = _wait_group_gone(server.proc.pid, timeout=30)
    assert "shutting down" in reason, reason
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert not group_left, f"processes of serve's group left: {group_left}"


def _upgrade_and_say_nothing(url: str) -> socket.socket:
    """A WebSocket upgrade request sent all at once (not waiting for its answer), then
    silence: no hello."""
    host, port = url.removeprefix("ws://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        f"GET /session HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return sock


def _wait_group_gone(pgid: int, timeout: float) -> list[int]:
    """The processes still in group `pgid` once it empties or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                left.append(int(entry.name))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_the_group_check_sees_a_live_group() -> None:
    """The check above can fail: a group with a sleeping member is not gone."""
    import subprocess

    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert _wait_group_gone(proc.pid, timeout=0) == [proc.pid]
    finally:
        proc.kill()
        proc.wait()
    assert _wait_group_gone(proc.pid, timeout=5) == []
    assert os.getpgid(0) != proc.pid
