#!/usr/bin/env bash
# Regenerate tests/golden/larq_golden.npz with larq itself, in a throwaway virtual
# environment (larq needs Keras 2, so it cannot live beside bnno).
# Usage: bash tests/golden/make_larq_golden.sh [VENV_DIR]   (reuses VENV_DIR if given)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$(mktemp -d)/larq-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "tensorflow==2.21.*" "tf-keras==2.21.*" "numpy<2" "larq==0.14.*"
fi
TF_USE_LEGACY_KERAS=1 "$venv/bin/python" "$here/make_larq_golden.py" "$here/larq_golden.npz"
