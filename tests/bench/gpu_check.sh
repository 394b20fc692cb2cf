#!/usr/bin/env bash
# GPU check (see tests/bench/gpu_check.py): run on a machine with an NVIDIA GPU, from a copy
# of the project tree, with that machine's own Python (torch + CUDA, optionally
# onnxruntime-gpu); no network, no virtual environment, no tests/data. Finishes within 8 minutes
# and writes tests/bench/results/gpu_<gpu>.json and .md.
#
#   bash tests/bench/gpu_check.sh                 # GPU: ORT graphs if onnxruntime-gpu works, else PyTorch
#   bash tests/bench/gpu_check.sh --self-test --out /tmp/x   # CPU, tiny models (what CI runs)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
py=${PYTHON:-python3}
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
# A hard stop a little past the script's own budget (420 s of stages) keeps the 8 minutes.
exec timeout 470 "$py" "$here/tests/bench/gpu_check.py" "$@"
