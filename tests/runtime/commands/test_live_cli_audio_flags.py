"""`imtalker-cam live` audio flags: --virtual-mic, --mic-offset, --gate (checks and stats)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from runtime.commands import cli
from runtime.commands.live_args import gate_config, validate_args
from runtime.core.validate import ValidationError
from tests.runtime.commands.test_live_cli import live, short_wav
from tests.support.stub_graphs import write_stub_graphs


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mic-offset", "50"], "--mic-offset needs --virtual-mic"),
        (["--gate", "loud"], "--gate takes a level in dBFS"),
        (["--gate", "6"], "allowed -100..0 dBFS"),
        (["--virtual-mic", "--webcam", "0"], "not --webcam"),
        (["--virtual-mic", "--mic-offset", "5000"], "-2000..2000 ms"),
    ],
)
def test_bad_audio_flags_are_refused_with_a_reason(
    tmp_path: Path, fixtures_dir: Path, flags: list[str], message: str
) -> None:
    args = cli.build_parser().parse_args(
        ["live", "--avatar", str(fixtures_dir / "source_1.png"), "--graphs", str(tmp_path), *flags]
    )
    with pytest.raises(ValidationError, match=re.escape(message)):
        validate_args(args)


def test_gate_values() -> None:
    assert gate_config("off").threshold_dbfs is None
    assert gate_config(" -40 ").threshold_dbfs == -40.0
    assert cli.build_parser().parse_args(["live", "--avatar", "a.png"]).gate == "-45"


def test_gate_flag_runs_and_stats_say_no_virtual_mic(tmp_path: Path, fixtures_dir: Path) -> None:
    graphs = write_stub_graphs(tmp_path / "graphs")
    audio = short_wav(fixtures_dir / "audio_1.wav", tmp_path / "a.wav", 1.5)
    done = live(
        "--avatar",
        str(fixtures_dir / "source_1.png"),
        "--audio-file",
        str(audio),
        "--graphs",
        str(graphs),
        "--no-vcam",
        "--stats-json",
        "--gate",
        "-40",
    )
    assert done.returncode == 0, done.stderr
    last = json.loads(done.stdout.splitlines()[-1])
    assert last["virtual_mic"] is None
