#!/usr/bin/env bash
# Sets up everything imtalker-cam needs on a fresh Debian machine with only Python present:
# the Debian packages (PortAudio, Qt's runtime libraries, Xvfb, espeak-ng, PulseAudio for the
# live-audio tests) and a virtual environment at .venv with the project installed editable,
# with its convert, server and dev extras.
# Where an NVIDIA driver answers (nvidia-smi), also onnxruntime-gpu's `cuda` and `cudnn` extras:
# the CUDA and cuDNN runtime wheels it loads (about 1.5 GB); without a driver, nothing more.
# Idempotent: a second run installs nothing that is already there.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

debs=(
  libportaudio2                      # sounddevice
  libegl1 libgl1 libopengl0 libglib2.0-0 libfontconfig1 libdbus-1-3 libxkbcommon0
  libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
  libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1
  libxcb-xfixes0 libxrender1 libxi6 libsm6 libice6 fonts-dejavu-core   # Qt offscreen/xcb
  xvfb x11-utils                     # screenshots of the real window in tests
  espeak-ng sox                      # synthetic speech for tests
  pulseaudio pulseaudio-utils libasound2-plugins   # pactl (virtual microphone), tests' audio server
)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=.venv/.imtalker-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # The CPU build of torch (a bare 'torch' would pull a multi-GB CUDA build).
  .venv/bin/python -m pip install -q "torch==2.13.0"
  # The convert extra (torch, onnx: converting the checkpoints once; the tests build graphs
  # with onnx), the server extra (the tests start `imtalker-cam serve` on loopback) and the int8
  # extra (NNCF: the tests quantize small graphs).
  .venv/bin/python -m pip install -q -e ".[dev,server,convert,hotkeys,int8]"
  touch "$stamp"
fi

# CUDA/cuDNN for onnxruntime-gpu from pip, so no system-wide toolkit is needed; the runtime
# preloads them from there (onnxruntime.preload_dlls). Same onnxruntime-gpu version as above.
gpu_stamp=.venv/.imtalker-cuda-installed
if [ -z "${IMTALKER_NO_CUDA:-}" ] && command -v nvidia-smi >/dev/null 2>&1 \
    && nvidia-smi -L >/dev/null 2>&1 && { [ ! -f "$gpu_stamp" ] || [ "$stamp" -nt "$gpu_stamp" ]; }; then
  ort=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('onnxruntime-gpu'))" 2>/dev/null || true)
  if [ -n "$ort" ]; then
    .venv/bin/python -m pip install -q "onnxruntime-gpu[cuda,cudnn]==$ort"
    touch "$gpu_stamp"
  fi
fi
