#!/usr/bin/env bash
# Set everything up (once) and start the desktop app. Extra arguments go to imtalker-cam.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$here/packaging/bootstrap.sh"
exec "$here/.venv/bin/imtalker-cam" "$@"
