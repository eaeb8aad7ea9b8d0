#!/usr/bin/env bash
# Make the pinned environment in .venv/ at the repo root (CPU torch) and install cli-tuner into it,
# editable, so `.venv/bin/cli-tuner` runs this checkout. Idempotent: an existing .venv is completed,
# not rebuilt. Usage: bash scripts/setup.sh [--dev]     (--dev adds pytest and the linters)
#
# Installer: uv, from PATH or else `pip install uv==UV_VERSION` into a cache folder of its own
# (~/.cache/cli-tuner/uv-VERSION; not a system install). uv does not read pip's settings, so
# scripts/pip_to_uv.py passes on this machine's index, find-links, constraint and certificate
# settings. Without uv, or when uv fails, pip installs the same requirements with the same lock.
# Settings: PYTHON (python3.11), CLI_TUNER_INSTALLER=pip (skip uv), CLI_TUNER_UV_DIR (where uv is
# bootstrapped), TORCH_INDEX_URL (the PyTorch CPU wheel index).
# Prerequisites: Python 3.11; bubblewrap (`apt-get install bubblewrap`), the sandbox check-checkpoint runs
# the model's commands in for execution accuracy (without it the static metrics alone decide).
# --dev also installs the gguf extra (llama-cpp-python: compiles llama.cpp once; its wheel is kept in
# ~/.cache/cli-tuner/wheels, or CLI_TUNER_WHEEL_DIR).
# Exit codes: 2 bad option, 5 wrong Python or an install that failed.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

DEV=0
case "${1:-}" in
  "") ;;
  --dev) DEV=1 ;;
  *) echo "error: unknown option '$1'; usage: bash scripts/setup.sh [--dev]" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null \
  || { echo "error: Python 3.11 is required (axolotl 0.19.0 supports 3.11; found $("$PYTHON" -V 2>&1 || echo none)); install it or set PYTHON=/path/to/python3.11" >&2; exit 5; }
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')

TORCH_VERSION=2.13.0  # = torch in requirements.txt (tests/test_packaging.py checks)
UV_VERSION=0.13.9
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
# PyPI's Linux x86-64 torch is a multi-GB CUDA build; the CPU build is torch==VERSION+cpu, on the
# PyTorch index (or a local wheel folder). Elsewhere (macOS) PyPI's wheel is the CPU one.
TORCH_BUILD=""
[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] && TORCH_BUILD="+cpu"
TARGET="."
[ "$DEV" = 1 ] && TARGET=".[dev,gguf]"  # gguf: llama-cpp-python, compiled on install (docs/export.md)
LOCK=requirements-lock.txt
LOG=$(mktemp)
TORCH_PIN=$(mktemp)
trap 'rm -f "$LOG" "$TORCH_PIN"' EXIT

fail() { echo "error: $*" >&2; exit 5; }
# From the package metadata: importing torch takes seconds; the last line imports it once.
torch_version() { .venv/bin/python -c 'from importlib.metadata import version; print(version("torch"))' 2>/dev/null; }
step=$SECONDS
say() { echo "setup: $* ($((SECONDS - step)) s)"; step=$SECONDS; }
torch_ok() { [ "$(torch_version | cut -d+ -f1)" = "$TORCH_VERSION" ]; }

# ---- uv: on PATH (0.5 or newer), or bootstrapped from PyPI with pip
UV=""
find_uv() {
  [ "${CLI_TUNER_INSTALLER:-uv}" = pip ] && return 1
  local found version
  if found=$(command -v uv); then
    version=$("$found" --version 2>/dev/null | awk '{print $2}')
    if [ -n "$version" ] && [ "$(printf '%s\n' 0.5.0 "$version" | sort -V | head -1)" = 0.5.0 ]; then
      UV=$found; return 0
    fi
  fi
  local home=${CLI_TUNER_UV_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cli-tuner/uv-$UV_VERSION}
  if [ ! -x "$home/bin/uv" ]; then
    rm -rf "$home.partial"
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --disable-pip-version-check -q \
      --target "$home.partial" "uv==$UV_VERSION" >"$LOG" 2>&1 || {
      echo "note: could not install uv $UV_VERSION with pip ($(grep -m1 -i error "$LOG" || tail -1 "$LOG")); using pip" >&2
      rm -rf "$home.partial"; return 1; }
    rm -rf "$home"; mkdir -p "$(dirname "$home")"; mv "$home.partial" "$home"
  fi
  UV=$home/bin/uv
}

# llama-cpp-python (the gguf extra) has no wheel on PyPI and compiles on install. uv checks a registry
# sdist against the index on every install and builds it again whenever the index's answer changes, so
# the wheel is built once, by pip, into a folder of the job's own (one wheel per pinned version and
# build flags) and installed from there.
# The build flags are the CUDA image's (Dockerfile.cuda's gguf-wheel stage; tests/test_docker.py holds
# them equal): portable AVX2 code, not llama.cpp's default -march=native. On a CPU with AMX (Intel
# Xeon since Sapphire Rapids) a native build runs llama.cpp's AMX kernels, which segfault in the first
# decode of a Q4_K_M model (ggml-org/llama.cpp#20824; seen here with `ask --gguf`). LLAVA_BUILD=OFF: the
# multimodal library, which neither export nor ask loads. A CMAKE_ARGS of your own is added after them.
LLAMA_CPP_CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
GGUF_CMAKE_ARGS="$LLAMA_CPP_CMAKE_ARGS${CMAKE_ARGS:+ $CMAKE_ARGS}"
GGUF_WHEELS=${CLI_TUNER_WHEEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cli-tuner/wheels}/$(printf %s "$GGUF_CMAKE_ARGS" | sha256sum | cut -c1-12)
gguf_wheel() {
  local pin version scratch
  pin=$(grep -m1 '^llama-cpp-python==' requirements-gguf.txt)
  version=${pin#*==}
  compgen -G "$GGUF_WHEELS/llama_cpp_python-$version-*.whl" >/dev/null && return 0
  .venv/bin/python -m pip --version >/dev/null 2>&1 || .venv/bin/python -m ensurepip -q || return 1
  scratch=$(mktemp -d)
  CMAKE_ARGS="$GGUF_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)} \
  .venv/bin/python -m pip wheel -q --disable-pip-version-check --no-deps --no-cache-dir -w "$scratch" "$pin" \
    && mkdir -p "$GGUF_WHEELS" && mv "$scratch"/llama_cpp_python-"$version"-*.whl "$GGUF_WHEELS"/
  local code=$?
  rm -rf "$scratch"
  [ "$code" = 0 ] && say "llama-cpp-python $version compiled once, kept in $GGUF_WHEELS"
  return "$code"
}

UV_PIP_ARGS=()
uv_install() { "$UV" pip install -q --python .venv/bin/python "${UV_PIP_ARGS[@]}" "$@"; }
install_with_uv() {
  export UV_PYTHON_DOWNLOADS=never  # use $PYTHON, never download one
  eval "$("$PYTHON" scripts/pip_to_uv.py --python "$PYTHON")"
  [ -x .venv/bin/python ] || "$UV" venv -q --seed --python "$PYTHON" .venv || return 1
  if ! torch_ok; then
    # The configured indexes and find-links first (a local wheel, an offline mirror), then the PyTorch index.
    uv_install "torch==$TORCH_VERSION$TORCH_BUILD" -c "$LOCK" 2>"$LOG" \
      || uv_install "torch==$TORCH_VERSION$TORCH_BUILD" -c "$LOCK" --index "$TORCH_INDEX_URL" || return 1
    say "torch $(torch_version) installed with uv"
  fi
  echo "torch==$(torch_version)" >"$TORCH_PIN"  # the torch in place stays; nothing may swap it for another build
  local wheels=()
  # --reinstall-package: a venv holding the same version built with other flags gets this build
  if [ "$DEV" = 1 ]; then gguf_wheel || return 1; wheels=(--find-links "$GGUF_WHEELS" --reinstall-package llama-cpp-python); fi
  uv_install -e "$TARGET" -c "$LOCK" -c "$TORCH_PIN" "${wheels[@]}" || return 1
  say "cli-tuner and the pinned packages$([ "$DEV" = 1 ] && echo ", dev tools") installed with uv"
}

PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
install_with_pip() {
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv || return 1
  .venv/bin/python -m pip --version >/dev/null 2>&1 || .venv/bin/python -m ensurepip -q || return 1
  if ! torch_ok; then
    # One retry: where that index is unreachable (an offline mirror), pip falls back to the others quickly.
    "${PIP[@]}" --retries 1 --timeout 15 "torch==$TORCH_VERSION$TORCH_BUILD" -c "$LOCK" \
      --extra-index-url "$TORCH_INDEX_URL" || return 1
    say "torch $(torch_version) installed with pip"
  fi
  echo "torch==$(torch_version)" >"$TORCH_PIN"
  if [ "$DEV" = 1 ]; then
    # forced: a venv holding the same version built with other flags gets this build; the install
    # below then finds it in place and adds its dependencies
    gguf_wheel && "${PIP[@]}" --force-reinstall --no-deps --no-index --find-links "$GGUF_WHEELS" \
      "$(grep -m1 '^llama-cpp-python==' requirements-gguf.txt)" || return 1
  fi
  "${PIP[@]}" -e "$TARGET" -c "$LOCK" -c "$TORCH_PIN" || return 1
  say "cli-tuner and the pinned packages$([ "$DEV" = 1 ] && echo ", dev tools") installed with pip"
}

INSTALLER=pip
if find_uv; then
  if install_with_uv; then
    INSTALLER="uv $("$UV" --version | awk '{print $2}')"
  else
    echo "note: the uv install failed (above); trying pip with the same lock" >&2
    install_with_pip || fail "installing the pinned packages failed (above); check the network and pip's index settings (pip config list), then run bash scripts/setup.sh again"
  fi
else
  install_with_pip || fail "installing the pinned packages failed (above); check the network and pip's index settings (pip config list), then run bash scripts/setup.sh again"
fi

# Bytecode for the installed packages and the job's own modules, written once here: where
# PYTHONDONTWRITEBYTECODE is set (CI runners and container images often set it) nothing else writes it,
# and every process that imports torch, transformers and Axolotl (each trainer, each rank, each CLI
# call) would compile thousands of files again. compileall skips what is already current. A package
# that ships a file Python cannot compile (a template, another Python's syntax) is no failure here.
.venv/bin/python -m compileall -q -j 0 "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
  cli_tuner >/dev/null 2>&1 || true
say "bytecode compiled"

command -v bwrap >/dev/null \
  || echo "note: bubblewrap (bwrap) is not installed: execution accuracy will not be scored (apt-get install bubblewrap)" >&2
.venv/bin/cli-tuner --help >/dev/null \
  || fail ".venv/bin/cli-tuner does not run; remove .venv and run bash scripts/setup.sh again"
echo "environment ready: .venv ($(.venv/bin/python -c 'import axolotl, torch; print("axolotl", axolotl.__version__, "torch", torch.__version__)' 2>/dev/null | tail -1); .venv/bin/cli-tuner; $INSTALLER, $((SECONDS - started)) s)"
