"""The commands' error boundary: one line naming the problem plus a log file with the
traceback, never a raw traceback, even when the log folder itself is unusable."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.commands import boundary

ROOT = Path(__file__).resolve().parents[3]


def test_unexpected_error_becomes_one_line_and_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("IMTALKER_CACHE_DIR", str(tmp_path / "cache"))

    def crash() -> int:
        raise RuntimeError("the renderer returned 7 frames\nsecond line")

    with caplog.at_level(logging.ERROR):
        code = boundary.guarded("render", crash, argv=["render", "--x"])
    assert code == boundary.EXIT_INTERNAL
    (record,) = caplog.records
    line = record.getMessage()
    assert "\n" not in line
    assert "render failed: RuntimeError: the renderer returned 7 frames" in line
    logs = list((tmp_path / "cache" / "logs").iterdir())
    assert len(logs) == 1 and str(logs[0]) in line
    text = logs[0].read_text()
    assert "Traceback" in text and "second line" in text and "--x" in text


def test_log_folder_unusable_falls_back_then_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    path, why = boundary.write_crash_log("tb", folders=[blocker / "logs", tmp_path / "tmp"])
    assert path is not None and path.parent == tmp_path / "tmp" and path.read_text() == "tb"
    path, why = boundary.write_crash_log("tb", folders=[blocker / "logs"])
    assert path is None and str(blocker / "logs") in why


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (OSError(errno.EFBIG, "File too large", "/x/out.mp4"), "/x/out.mp4: the file grew past"),
        (PermissionError(errno.EACCES, "Permission denied", "/x/a.wav"), "/x/a.wav: permission"),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/d"), "/d: a part of this path"),
        (OSError(errno.ENOSPC, "No space left", "/x/o.mp4"), "/x/o.mp4: the disk is full"),
        (MemoryError(), "ran out of memory"),
    ],
)
def test_known_failures_are_named_in_user_terms(exc: BaseException, text: str) -> None:
    assert text in boundary.describe(exc)


def test_crash_in_a_subprocess_shows_no_traceback(tmp_path: Path) -> None:
    """The real entry point: a command whose code raises prints one line and a log path,
    even with the cache folder (where logs go) pointing at a file."""
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("x")
    code = (
        "import sys\n"
        "from runtime.commands import cli, doctor\n"
        "def boom(args):\n"
        "    raise KeyError('surprise')\n"
        "doctor.run = boom\n"
        "sys.exit(cli.main(['doctor']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "IMTALKER_CACHE_DIR": str(blocker)},
    )
    assert done.returncode == boundary.EXIT_INTERNAL, done.stderr
    assert "Traceback" not in done.stderr
    assert "doctor failed: KeyError: 'surprise' (full details in " in done.stderr
    log = Path(done.stderr.split("full details in ")[1].split(")")[0].strip())
    assert "KeyError" in log.read_text()
    log.unlink()


def test_stop_signals_raise_terminated_once_and_restore_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    second_ignored = False
    with pytest.raises(boundary.Terminated) as info, boundary.stop_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes, right away
                pass
        finally:
            # A second signal during clean-up must not cut it short.
            os.kill(os.getpid(), signal.SIGTERM)
            second_ignored = True
    assert second_ignored
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before
