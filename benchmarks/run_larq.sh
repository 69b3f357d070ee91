#!/usr/bin/env bash
# larq's side of the BinaryNet comparison, in its own throwaway environment (larq needs
# Keras 2: tensorflow 2.21 + tf-keras 2.21 + numpy < 2 + larq 0.14).
# Usage: bash benchmarks/run_larq.sh [VENV_DIR] [ARGS for larq_binarynet.py]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$(mktemp -d)/larq-venv}"
shift || true
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "tensorflow==2.21.*" "tf-keras==2.21.*" "numpy<2" "larq==0.14.*"
fi
TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" "$here/larq_binarynet.py" "$@"
