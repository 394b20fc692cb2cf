"""The test configuration itself (issue 17 class 10)."""

from __future__ import annotations


def test_pytest_run_directly_defaults_qt_to_offscreen() -> None:
    """Issue 17 class 10: `pytest` without QT_QPA_PLATFORM and without a display runs the Qt
    tests offscreen instead of aborting in pytest-qt's qapp."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY")}
    env.pop("WAYLAND_DISPLAY", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/desktop_app/test_widgets.py::test_preview_overlay_text_and_cpu_warning",
        ],
        cwd=root,
        env={**env, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
