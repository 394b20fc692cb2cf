"""Setting up remote compute, without starting anything: the server's token (generated once,
0600, overridable), the Serve application's options (GPU per replica, admission, autoscaling),
capacity from the bench, and the commands' refusals."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from runtime.commands import cli
from runtime.commands.serve import capacity_from_bench
from runtime.remote.token import TOKEN_ENV, TokenError, client_token, server_token
from runtime.server.deployment import ServeConfig, application
from runtime.server.limits import ServerLimits
from tests.support.remote import TOKEN


def test_the_token_is_generated_once_private_and_overridable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    token, new = server_token(None, tmp_path)
    assert new and len(token) >= 40
    path = tmp_path / "server-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert server_token(None, tmp_path) == (token, False)  # reused, not shown again
    assert server_token(TOKEN, tmp_path) == (TOKEN, False)
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment-123")
    assert server_token(None, tmp_path) == ("from-the-environment-123", False)
    assert client_token(None) == "from-the-environment-123"
    with pytest.raises(TokenError, match="at least 16"):
        server_token("short", tmp_path)
    monkeypatch.delenv(TOKEN_ENV)
    path.write_text("x")
    with pytest.raises(TokenError, match="delete it"):
        server_token(None, tmp_path)


def test_the_application_reserves_a_gpu_and_admits_one_more_than_capacity() -> None:
    """...besides the connections still waiting for their hello (closed within seconds), so
    silent sockets never make Ray's proxy queue a real client."""
    app = application(
        ServeConfig(graphs=Path("/g"), token=TOKEN, capacity=3, gpus_per_replica=1, max_replicas=4)
    )
    deployment = app._bound_deployment
    assert deployment.ray_actor_options["num_gpus"] == 1
    # One beyond capacity reaches the replica, which answers "server full".
    assert deployment.max_ongoing_requests == 3 + ServerLimits().max_pending + 1
    scaling = deployment._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas) == (1, 4)
    assert scaling.target_ongoing_requests == 3
    assert deployment.init_args[:3] == ("/g", TOKEN, 3)
    with pytest.raises(ValueError, match="at least 1"):
        application(ServeConfig(graphs=Path("/g"), token=TOKEN, capacity=0))


@pytest.mark.parametrize(
    ("factor", "sessions"), [(31.8, 1), (0.7, 1), (0.3, 2), (0.05, 14), (float("nan"), 1)]
)
def test_capacity_from_the_bench(factor: float, sessions: int) -> None:
    assert capacity_from_bench(factor) == sessions


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--graphs", "G", "--capacity", "0", "--token", TOKEN], "--capacity"),
        (["serve", "--graphs", "G", "--port", "70000", "--token", TOKEN], "--port"),
        (["serve", "--graphs", "G", "--token", "short"], "at least 16"),
    ],
)
def test_serve_refuses_bad_options_clearly(
    argv: list[str], message: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    argv = [a.replace("G", str(tmp_path)) if a == "G" else a for a in argv]
    with caplog.at_level(logging.ERROR):
        assert cli.main(argv) == 1
    assert message in caplog.text


def test_live_remote_needs_a_token(
    caplog: pytest.LogCaptureFixture, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    photo = str(fixtures_dir / "source_1.png")
    base = ["live", "--avatar", photo, "--no-vcam", "--remote", "ws://127.0.0.1:9"]
    with caplog.at_level(logging.ERROR):
        assert cli.main([*base, "--audio-file", str(fixtures_dir / "audio_1.wav")]) == 1
    assert "needs the server's token" in caplog.text
