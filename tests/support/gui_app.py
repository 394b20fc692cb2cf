"""Run the real desktop app with hardware fakes (sound card, virtual camera) and stub graphs.

    python -m tests.support.gui_app --graphs DIR [--audio WAV] [--go-live] [--quit-when-live]

The Xvfb screenshot tests start this in a child process. It prints one line per milestone on
stdout ("ready", "live <frames>") so the test knows when to grab the screen; with
--quit-when-live it closes the window while the engine runs, once the test writes a line to its
stdin (after its screenshot, however long that took), and the exit code is the app's.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import numpy as np
from PySide6.QtCore import QTimer

from desktop_app import app as desktop
from desktop_app.runtime_services import runtime_backend
from desktop_app.runtime_services.cuda import CudaSystem
from runtime.media.audio_file import load_audio
from tests.support.fakes import virtual_camera as fakecam
from tests.support.fakes.camera import FakeCv2
from tests.support.fakes.sound_device import FakeSoundDevice
from tests.support.pypi_index import NO_DRIVER

LIVE_FRAMES = 20


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--graphs", type=Path, default=None)
    parser.add_argument("--audio", type=Path, default=None)
    parser.add_argument("--go-live", action="store_true")
    parser.add_argument("--quit-when-live", action="store_true")
    parser.add_argument("--size", default="1240x760")
    args = parser.parse_args(argv)

    speech = load_audio(args.audio) if args.audio is not None else np.zeros(16000, np.float32)
    sound = FakeSoundDevice(speech, 16_000, name="Fake USB Mic", loop=True)
    fakecam.register()
    backend = runtime_backend(
        graphs_dir=args.graphs,
        sound_device=sound,
        camera_module=FakeCv2(),
        webcam_lister=lambda: ["0: Fake Camera"],
        vcam_backend="fake",
        cuda=CudaSystem(driver=lambda: NO_DRIVER),  # never ask the real package index
    )

    application = desktop.create_app(sys.argv[:1])
    window = desktop.build_window(backend)
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.show()
    QTimer.singleShot(0, window.check_models)
    QTimer.singleShot(500, lambda: _say("ready"))

    if args.go_live:
        QTimer.singleShot(800, window.live.go_live)
        poll = QTimer(window)
        said = False
        asked = threading.Event()  # the test wrote its line: close now

        def wait_for_the_test() -> None:
            sys.stdin.readline()
            asked.set()

        if args.quit_when_live:
            threading.Thread(target=wait_for_the_test, daemon=True).start()

        def check() -> None:
            nonlocal said
            if not said and window.preview.frames_shown >= LIVE_FRAMES:
                _say(f"live {window.preview.frames_shown}")
                said = True
                if not args.quit_when_live:
                    poll.stop()
            if said and asked.is_set():
                poll.stop()
                window.close()  # mid-inference

        poll.timeout.connect(check)
        poll.start(100)
    return application.exec()


if __name__ == "__main__":
    raise SystemExit(main())
