#!/usr/bin/env bash
# Make the pinned environment in .venv/ at the repo root (CPU torch). Idempotent: a complete
# .venv is reused. Usage: bash scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "error: Python 3.11 is required (axolotl 0.19.0 supports 3.11; found $("$PYTHON" -V))" >&2; exit 5; }

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
# torch first, CPU build: PyPI's default torch 2.13.0 wheel is a multi-GB CUDA 13 build.
if ! .venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
  # One retry: where that index is unreachable (an offline mirror), pip falls back to the others quickly.
  "${PIP[@]}" --retries 1 --timeout 15 torch==2.13.0 --extra-index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
fi
"${PIP[@]}" -r requirements.txt -c requirements-lock.txt
if [ "${1:-}" = "--dev" ]; then
  "${PIP[@]}" -r requirements-dev.txt
fi
echo "environment ready: .venv ($(.venv/bin/python -c 'import axolotl, torch; print("axolotl", axolotl.__version__, "torch", torch.__version__)' 2>/dev/null | tail -1))"
