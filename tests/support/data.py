"""Where the suite's own inputs live (tests/data: golden data of both model versions, real
fixtures, the PulseAudio recipe). One place, so tests, benches and conftest agree; no test
reads anything outside the repository. `IMTALKER_TEST_DATA` points them at another copy."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("IMTALKER_TEST_DATA", ROOT / "tests" / "data"))
GOLDEN = DATA / "golden"
FIXTURES = DATA / "fixtures" / "imtalker"
PULSEAUDIO_RECIPE = DATA / "recipes" / "pulseaudio"
SUMS = DATA / "SHA256SUMS"
