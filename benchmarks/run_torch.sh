#!/usr/bin/env bash
# PyTorch's side of the BinaryNet comparison, in its own throwaway environment
# (torch 2.13.0, CPU build, and numpy).
# Usage: bash benchmarks/run_torch.sh [VENV_DIR] [ARGS for torch_binarynet.py]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$(mktemp -d)/torch-venv}"
shift || true
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "torch==2.13.0" numpy
fi
"$venv/bin/python" "$here/torch_binarynet.py" "$@"
