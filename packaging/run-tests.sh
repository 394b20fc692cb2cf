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
# The full-size model tests need about 8 GB of temporary space at their peak; say so up front
# rather than let them fail one by one with "No space left on device".
tmp_dir=${TMPDIR:-/tmp}
free_kb=$(df -Pk "$tmp_dir" | awk 'NR==2 {print $4}')
if [ "${free_kb:-0}" -lt $((8 * 1024 * 1024)) ]; then
    echo "warning: only $((free_kb / 1024)) MB free in $tmp_dir; the full-size tests need about 8 GB" >&2
fi
pytest "$@"
