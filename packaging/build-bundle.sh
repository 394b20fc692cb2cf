#!/usr/bin/env bash
# Builds the desktop bundle (PyInstaller onedir) into dist/imtalker-cam/ and prints its size.
# Uses the set-up's .venv (running bootstrap.sh first) with the `bundle` extra added;
# PYTHON=/path/to/python builds with another interpreter that has the project's dependencies
# and PyInstaller. Extra arguments go to PyInstaller.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
if [ -z "${PYTHON:-}" ]; then
  bash packaging/bootstrap.sh
  py=.venv/bin/python
  "$py" -c "import PyInstaller" 2>/dev/null || "$py" -m pip install -q -e ".[bundle]"
else
  py=$PYTHON
fi
started=$(date +%s)
"$py" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/pyinstaller "$@" packaging/imtalker-cam.spec
echo "built dist/imtalker-cam in $(( $(date +%s) - started )) s: $(du -sh dist/imtalker-cam | cut -f1)"
