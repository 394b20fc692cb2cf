#!/usr/bin/env bash
# Set everything up (once) and run every check: ruff lint + format, mypy strict,
# import-linter contracts, pytest (Qt offscreen). Extra arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$here/packaging/bootstrap.sh"
cd "$here"
export PATH="$here/.venv/bin:$PATH" QT_QPA_PLATFORM=offscreen
ruff check .
ruff format --check .
mypy
lint-imports
pytest "$@"
