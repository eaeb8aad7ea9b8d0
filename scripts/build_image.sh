#!/usr/bin/env bash
# Build an image with buildah and check it with podman, on a Linux machine with neither a Docker
# engine nor (necessarily) Docker Hub: where the base cannot be pulled, one is made with debootstrap.
#
#   sudo apt-get install -y podman buildah debootstrap runc     # once (Debian/Ubuntu, as root)
#   bash scripts/build_image.sh cuda      # Dockerfile.cuda, the training and RunPod image
#   bash scripts/build_image.sh cpu       # Dockerfile.cpu-validate, target cpu
#   bash scripts/build_image.sh cuda --check-only   # the checks below on an image already built
#
# Then, inside the image, with no network: doctor, validate of the three shipped configs and rehearse
# of the default config, run in one container (for the CUDA image, docker/start.sh with TRAIN_MODE
# empty, which must stay up, install PUBLIC_KEY and start sshd, and stop on SIGTERM with 143), then the
# image's entrypoint with TRAIN_MODE=validate (exits with validate's code); in the CUDA image also the
# gguf extra (llama-cpp-python's quantizer, llama.cpp's converters unpacked offline). Each check prints its exit
# code and last lines; the script exits 1 if any fails. Then the image's uncompressed size, its
# compressed size (the gzip layers a registry push sends and a pod pulls) and its 15 largest packages.
#
# Only what Dockerfile.cuda allows is substituted, each through a build argument, and only where the
# default cannot be reached; the output and the image's labels say which:
#   - the base: python:3.11-slim-bookworm, else "localbase" (Debian 12 + python3 3.11, debootstrap);
#   - torch (CUDA): PyTorch's cu126 index, else PyPI's torch, which is the cu130 build (driver >= 580);
#   - flash attention (CUDA): the flash-attn2 hub kernel, else FLASH_ATTENTION=none, which the image
#     records ("no flash-attention source in this image (built without the hub kernel)").
#
# Settings, all optional, through the environment:
#   BASE_IMAGE       image to build on (default: see above)
#   TAG              tag of the image built (default cli-tuner:cuda / cli-tuner:cpu)
#   TORCH_CUDA, TORCH_INDEX_URL   the CUDA image's torch flavour and index (default: see above)
#   FLASH_ATTENTION  hub-kernel or none (CUDA image; default: see above)
#   TORCH_WHEEL_DIR  CPU image: folder holding torch-2.13.0+cpu-*.whl, used when PyTorch's CPU index
#                    cannot be reached (default /opt/wheels)
#   HOST_CA          CA bundle the build's pip trusts, for TLS-intercepting proxies
#                    (default /etc/ssl/certs/ca-certificates.crt when present)
#   TOKENIZERS       folder of the shipped configs' base model tokenizers, one folder each named like
#                    the model in lower case (qwen2.5-coder-7b-instruct, mistral-7b-instruct-v0.2);
#                    the checks put them in the container's Hugging Face cache, as a pod's warm cache
#                    would hold them (default ../shared/data/tokenizers)
#   CTR_ROOT         podman/buildah storage and config when CONTAINERS_STORAGE_CONF is unset (/tmp/ctr)
#   SIZES            "no" to skip the compressed size (it writes the gzip layers to a scratch folder)
#   CONTAINER_ENGINE podman (default) or docker: what runs the checks; with --check-only, docker runs
#                    them on an image docker built (the workflow does)
set -euo pipefail

# Everything runs from main, so the whole file is read before anything starts.
say() { printf '[build_image] %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 5; }
reachable() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 15 "$1" 2>/dev/null)" != 000 ]; }

SHIPPED_CONFIGS=(configs/axolotl_config.yaml configs/training_config_h100.yaml configs/training_config_m4.yaml)
DEFAULT_CONFIG=configs/axolotl_config.yaml
# A throwaway public key: start.sh must install whatever PUBLIC_KEY holds (no private half exists).
TEST_PUBLIC_KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMbuildimagecheckkey0000000000000000000000 build_image-check"

setup_storage() {
  # vfs storage and runc: overlay storage and crun fail inside many CI containers and VMs; lowered
  # ulimits avoid podman's "error setting rlimit" there.
  if [ -z "${CONTAINERS_STORAGE_CONF:-}" ]; then
    mkdir -p "$CTR_ROOT"
    printf '[storage]\ndriver = "vfs"\nrunroot = "%s/run"\ngraphroot = "%s/storage"\n' \
      "$CTR_ROOT" "$CTR_ROOT" > "$CTR_ROOT/storage.conf"
    printf '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n' \
      > "$CTR_ROOT/containers.conf"
    export CONTAINERS_STORAGE_CONF=$CTR_ROOT/storage.conf CONTAINERS_CONF=$CTR_ROOT/containers.conf
  fi
}

choose_base() {
  if [ -n "${BASE_IMAGE:-}" ]; then return; fi
  if reachable https://registry-1.docker.io/v2/ && podman pull -q docker.io/library/python:3.11-slim-bookworm >/dev/null; then
    BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
    return
  fi
  BASE_IMAGE=localbase
  say "Docker Hub unreachable: base localbase (Debian 12 + python3 3.11, made with debootstrap) stands in for python:3.11-slim-bookworm"
  podman image exists localbase && return
  command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y debootstrap"
  local start rootfs=$CTR_ROOT/rootfs
  start=$(date +%s)
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" >/dev/null
  # What python:3.11-slim-bookworm leaves out too: downloaded packages, package lists, docs, man
  # pages and translations (~140 MB of the 275 MB debootstrap leaves).
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
         "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  tar -C "$rootfs" -c . | podman import - localbase >/dev/null
  rm -rf "$rootfs"
  say "base image made in $(( $(date +%s) - start )) s: $(( $(podman image inspect --format '{{.Size}}' localbase) / 1000000 )) MB"
}

cuda_args() {
  local flavour=${TORCH_CUDA:-cu126} index driver
  index=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/$flavour}
  if [ -z "${TORCH_INDEX_URL:-}" ] && [ -z "${TORCH_CUDA:-}" ] && ! reachable "$index/torch/"; then
    say "torch stand-in: $index unreachable, so torch $TORCH_VERSION comes from PyPI, whose build is CUDA 13.0 (cu130, driver >= 580)"
    flavour=cu130 index=https://pypi.org/simple
  fi
  driver=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["flavours"][sys.argv[2]]["min_driver"])' \
             docker/torch_flavours.json "$flavour") || die "docker/torch_flavours.json has no flavour $flavour"
  FLASH_ATTENTION=${FLASH_ATTENTION:-}
  if [ -z "$FLASH_ATTENTION" ]; then
    FLASH_ATTENTION=hub-kernel
    if ! reachable https://huggingface.co/api/models/kernels-community/flash-attn2; then
      FLASH_ATTENTION=none
      say "flash attention: huggingface.co unreachable, so the image is built with FLASH_ATTENTION=none and says so (doctor, provenance, labels)"
    fi
  fi
  # The gguf-wheel stage (compiling llama.cpp) runs beside the runtime stage's installs.
  jobs=(--jobs 2)
  build_args+=(--build-arg "TORCH_CUDA=$flavour" --build-arg "TORCH_INDEX_URL=$index"
               --build-arg "CLI_TUNER_MIN_DRIVER=$driver" --build-arg "FLASH_ATTENTION=$FLASH_ATTENTION")
  say "torch $TORCH_VERSION ($flavour from $index, NVIDIA driver >= $driver); flash attention: $FLASH_ATTENTION"
}

cpu_args() {
  local index=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu} wheels=${TORCH_WHEEL_DIR:-/opt/wheels}
  if reachable "$index/torch/"; then
    build_args+=(--build-arg "TORCH_INDEX_URL=$index")
  elif compgen -G "$wheels/torch-$TORCH_VERSION+cpu-*.whl" >/dev/null; then
    say "torch: $index unreachable, so torch $TORCH_VERSION+cpu comes from $wheels (mounted into the build only)"
    mounts+=(-v "$(realpath "$wheels"):/wheels:ro")
    build_args+=(--build-arg PIP_FIND_LINKS=/wheels --build-arg TORCH_INDEX_URL=https://pypi.org/simple)
  else
    die "$index is unreachable and $wheels holds no torch-$TORCH_VERSION+cpu wheel; set TORCH_WHEEL_DIR"
  fi
}

build() {
  build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "TORCH_VERSION=$TORCH_VERSION" --build-arg "IMAGE_TAG=$TAG")
  mounts=() jobs=()
  local revision start
  revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  [ -z "$(git status --porcelain 2>/dev/null)" ] || revision="$revision-dirty"
  build_args+=(--build-arg "GIT_REVISION=$revision")
  if [ -f "$HOST_CA" ]; then
    mounts+=(-v "$(realpath "$HOST_CA"):/run/host-ca.crt:ro")
    build_args+=(--build-arg PIP_CERT=/run/host-ca.crt)
  fi
  if [ "$VARIANT" = cuda ]; then cuda_args; else cpu_args; fi
  say "building $TAG from $DOCKERFILE (target $TARGET) on $BASE_IMAGE"
  start=$(date +%s)
  # --format docker: the OCI format drops SHELL (bash -o pipefail), which Docker honours.
  # No --layers: with vfs storage every instruction, ARG and LABEL included, would store a full copy
  # of the file system (the CUDA image's ~7.8 GB, a dozen times); without it the instructions run in
  # one container and commit one layer above the base. Docker and buildx keep the Dockerfile's layers.
  buildah bud --isolation chroot --format docker "${jobs[@]}" "${mounts[@]}" "${build_args[@]}" \
    -f "$DOCKERFILE" --target "$TARGET" -t "$TAG" .
  say "build time: $(( $(date +%s) - start )) s ($TAG, commit $revision)"
}

labels() {
  # shellcheck disable=SC2016  # a Go template, not a shell expression
  "$ENGINE" image inspect --format '{{range $k, $v := .Labels}}{{$k}}={{$v}}{{"\n"}}{{end}}' "$TAG" \
    | grep -E '^(cli-tuner\.|org\.opencontainers\.image\.(revision|version|base\.name))' | sed 's/^/    /'
}

# --- checks inside the image -------------------------------------------------------------------

check() {
  # check NAME [podman run options --] COMMAND...: one run of the image; exit code and last lines.
  local name=$1 rc=0 start log
  shift
  log=$outputs/$name.log
  start=$(date +%s)
  "$@" >"$log" 2>&1 || rc=$?
  say "$name: exit $rc in $(( $(date +%s) - start )) s; last lines:"
  tail -n 8 "$log" | sed 's/^/    /'
  if [ "$rc" -ne 0 ]; then failures+=("$name"); fi
  return 0
}

expect_in_log() {
  # expect_in_log NAME PATTERN WHAT: the check NAME's output must match PATTERN (grep -E).
  if ! grep -qE -- "$2" "$outputs/$1.log"; then
    say "$1: its output does not say $3 (/$2/)"
    failures+=("$1: $3")
  fi
}

# shellcheck disable=SC2329  # called through check
run_image() { "$ENGINE" run --rm "${run_opts[@]}" "$@"; }

# shellcheck disable=SC2329  # called through check
in_box() { "$ENGINE" exec "$box" python /app/entrypoint.py "$@"; }

doctor_says() {
  expect_in_log doctor 'no GPU|no CUDA device|cpu' "that there is no GPU"
  if [ "$VARIANT" = cuda ]; then
    expect_in_log doctor "CUDA [0-9]+\.[0-9]+ build" "which CUDA build torch is"
    expect_in_log doctor "driver (>= ?|)$("$ENGINE" image inspect --format '{{index .Labels "cli-tuner.min-driver"}}' "$TAG")" "the driver it needs"
    if [ "$("$ENGINE" image inspect --format '{{index .Labels "cli-tuner.flash-attention"}}' "$TAG")" = none ]; then
      expect_in_log doctor "built without the hub kernel" "that the image has no flash-attention source"
    fi
  fi
}

# shellcheck disable=SC2329  # called through check
start_box() {
  # One container the in-image commands run in (podman exec), as on a pod's web terminal: every run of
  # a multi-GB image copies it once with vfs storage. The CUDA image's is start.sh with TRAIN_MODE
  # empty, which must stay up, install PUBLIC_KEY and start sshd.
  local up=""
  "$ENGINE" rm -f "$box" >/dev/null 2>&1 || true
  if [ "$VARIANT" = cuda ]; then
    "$ENGINE" run -d --name "$box" "${run_opts[@]}" -e PUBLIC_KEY="$TEST_PUBLIC_KEY" "$TAG" >/dev/null || return 1
  else
    "$ENGINE" run -d --name "$box" "${run_opts[@]}" --entrypoint sleep "$TAG" infinity >/dev/null || return 1
  fi
  for _ in $(seq 120); do
    if [ "$VARIANT" != cuda ] || "$ENGINE" logs "$box" 2>&1 | grep -q 'stays up'; then up=yes; break; fi
    sleep 1
  done
  "$ENGINE" logs "$box" 2>&1
  [ -n "$up" ]
}

# shellcheck disable=SC2329  # called through check
start_sh_stays_up() {
  # TRAIN_MODE empty: start.sh stayed up (start_box), installed PUBLIC_KEY and started sshd; SIGTERM stops it.
  local listening="" key="" rc
  # Port 22 in state LISTEN (0A) in the container's own network namespace.
  # shellcheck disable=SC2016  # expanded by the container's shell
  "$ENGINE" exec "$box" bash -c 'cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk "\$2 ~ /:0016\$/ && \$4 == \"0A\"" | grep -q .' && listening=yes
  "$ENGINE" exec "$box" grep -qxF -- "$TEST_PUBLIC_KEY" /root/.ssh/authorized_keys && key=yes
  echo "stayed up through the checks above; PUBLIC_KEY installed: ${key:-no}; sshd listening on 22: ${listening:-no}"
  "$ENGINE" stop -t 30 "$box" >/dev/null   # SIGTERM, then SIGKILL after 30 s
  rc=$("$ENGINE" inspect --format '{{.State.ExitCode}}' "$box")
  "$ENGINE" logs "$box" 2>&1 | tail -n 2
  echo "after SIGTERM: exit $rc (143: stopped by the signal, not killed)"
  [ -n "$listening" ] && [ -n "$key" ] && [ "$rc" -eq 143 ]
}

# shellcheck disable=SC2329  # called through check
gguf_works() {
  # The gguf extra in the CUDA image, offline: llama-cpp-python's compiled library and its quantizer,
  # and llama.cpp's converters, which cli_tuner/serving/llama_cpp.py unpacks from the image's pinned
  # sdist (CLI_TUNER_LLAMA_CPP_SDIST) and which then start (their imports: gguf-py, torch, transformers).
  # shellcheck disable=SC2016  # expanded by the container's shell
  "$ENGINE" exec "$box" bash -c '
    set -e
    python -c "import llama_cpp; llama_cpp.llama_model_quantize; print(\"llama-cpp-python\", llama_cpp.__version__, \"binds llama_model_quantize\")"
    folder=$(python -c "from cli_tuner.serving import llama_cpp; print(llama_cpp.converters())")
    echo "converters unpacked offline from $CLI_TUNER_LLAMA_CPP_SDIST into $folder"
    for script in convert_hf_to_gguf.py convert_lora_to_gguf.py; do
      python "$folder/$script" --help >/dev/null
      echo "$script --help: exit 0"
    done'
}

hf_cache_with_tokenizers() {
  # A Hugging Face cache (hub layout: refs/main -> snapshots/<commit>/) holding each shipped config's
  # base model tokenizer, so validate reads it offline exactly as on a pod; prints the models missing.
  local config repo source dest commit=0000000000000000000000000000000000000000
  for config in "${SHIPPED_CONFIGS[@]}"; do
    repo=$(sed -n 's/^base_model: *\([^ #]*\).*/\1/p' "$config")
    source=$TOKENIZERS/$(basename "$repo" | tr '[:upper:]' '[:lower:]')
    dest=$outputs/hf/hub/models--${repo//\//--}
    if [ ! -d "$source" ]; then echo "$repo"; continue; fi
    mkdir -p "$dest/snapshots/$commit" "$dest/refs"
    cp -r "$source"/. "$dest/snapshots/$commit/"
    printf '%s' "$commit" > "$dest/refs/main"
  done
}

run_checks() {
  outputs=$(mktemp -d "${TMPDIR:-/tmp}/cli-tuner-$VARIANT-checks.XXXXXX")
  mkdir -p "$outputs/runs" "$outputs/hf"
  local missing config default_tokenizer
  missing=$(hf_cache_with_tokenizers)
  # The job runs with no network: validate and rehearse must work offline. Run folders go to a
  # scratch folder on the host, as /workspace/outputs would on a pod; the HF cache is the pod's.
  run_opts=(--network none -v "$outputs/runs:/workspace/outputs" -v "$outputs/hf:/workspace/.cache/huggingface"
            -e HF_HUB_OFFLINE=1)
  default_tokenizer=$TOKENIZERS/$(basename "$(sed -n 's/^base_model: *\([^ #]*\).*/\1/p' "$DEFAULT_CONFIG")" | tr '[:upper:]' '[:lower:]')
  if [ -d "$default_tokenizer" ]; then
    run_opts+=(-v "$(realpath "$default_tokenizer"):/tokenizer:ro" -e REHEARSAL_TOKENIZER=/tokenizer)
  fi
  if [ -n "$missing" ]; then
    say "no tokenizer under $TOKENIZERS for: $(echo "$missing" | tr '\n' ' ')(validate of those configs skips the token report; TRAIN_MODE=validate needs the default config's)"
  fi
  failures=()
  box=cli-tuner-check-$VARIANT-$$
  check start-container start_box
  check doctor in_box doctor
  doctor_says
  if [ "$VARIANT" = cuda ]; then
    # The job's own reading of the image's flash-attention source, offline: the hub kernel found where
    # LOCAL_KERNELS points, or the recorded FLASH_ATTENTION=none; exit 1 when neither.
    check flash-attention-source "$ENGINE" exec "$box" python -m cli_tuner.facts.attention
  fi
  for config in "${SHIPPED_CONFIGS[@]}"; do
    if grep -qxF -- "$(sed -n 's/^base_model: *\([^ #]*\).*/\1/p' "$config")" <<<"$missing"; then
      check "validate-$(basename "$config" .yaml)" in_box validate --config "$config" --no-data-report
    else
      check "validate-$(basename "$config" .yaml)" in_box validate --config "$config"
    fi
  done
  check rehearse in_box rehearse --config "$DEFAULT_CONFIG"
  if [ "$VARIANT" = cuda ]; then
    check gguf gguf_works
    check start-sh-stays-up start_sh_stays_up
  fi
  "$ENGINE" rm -f "$box" >/dev/null 2>&1 || true
  # The image's own entrypoint with TRAIN_MODE (the CPU image's reads it too; the CUDA image's is start.sh).
  check train-mode-validate run_image -e TRAIN_MODE=validate "$TAG"
  if [ "$VARIANT" = cuda ]; then
    expect_in_log train-mode-validate '^\[start\] running' "that start.sh ran it"
  fi
  say "logs and run folders: $outputs"
}

# --- sizes ----------------------------------------------------------------------------------------

sizes() {
  local bytes scratch
  bytes=$("$ENGINE" image inspect --format '{{.Size}}' "$TAG")
  say "image size: $(( bytes / 1000000 )) MB uncompressed ($TAG)"
  if [ "${SIZES:-yes}" != no ] && [ "$ENGINE" = podman ]; then
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/cli-tuner-push.XXXXXX")
    # What `podman push` / `docker push` send: each layer as a gzip blob (plus config and manifest).
    # (podman 4.3 compresses only the docker-dir format: "--compress can only be set when --format is 'docker-dir'".)
    podman save --format docker-dir --compress -o "$scratch/image" "$TAG" >/dev/null
    bytes=$(find "$scratch/image" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f\n", s}')   # mawk: print gives 3.6e+09, %d stops at 2^31-1
    rm -rf "$scratch"
    say "image size: $(( bytes / 1000000 )) MB compressed (gzip layers, what a registry push sends and a pod pulls)"
  elif [ "${SIZES:-yes}" != no ]; then
    # docker save has no per-layer compression: the gzip of its tar, within a percent of the push.
    bytes=$(docker save "$TAG" | gzip | wc -c)
    say "image size: $(( bytes / 1000000 )) MB compressed (gzip of docker save, about what a registry push sends)"
  fi
  say "the 15 largest installed Python packages (MB):"
  "$ENGINE" run --rm --network none --entrypoint python "$TAG" -c '
import importlib.metadata as md, os
sizes = []
for dist in md.distributions():
    total = 0
    for f in dist.files or ():
        try:
            total += os.path.getsize(dist.locate_file(f))
        except OSError:
            pass
    sizes.append((total, dist.metadata["Name"], dist.version))
for total, name, version in sorted(sizes, reverse=True)[:15]:
    print(f"    {total / 1e6:8.0f}  {name} {version}")
'
}

main() {
  VARIANT=${1:-}
  case "$VARIANT" in
    cuda) DOCKERFILE=Dockerfile.cuda TARGET=runtime TAG=${TAG:-cli-tuner:cuda} ;;
    cpu) DOCKERFILE=Dockerfile.cpu-validate TARGET=cpu TAG=${TAG:-cli-tuner:cpu} ;;
    *) die "usage: bash scripts/build_image.sh cpu|cuda [--check-only]" ;;
  esac
  cd "$(dirname "$0")/.."
  TORCH_VERSION=$(sed -n 's/^torch==//p' requirements.txt)
  HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
  TOKENIZERS=${TOKENIZERS:-../shared/data/tokenizers}
  CTR_ROOT=${CTR_ROOT:-/tmp/ctr}
  ENGINE=${CONTAINER_ENGINE:-podman}
  [ "$ENGINE" != podman ] || setup_storage
  if [ "${2:-}" = --check-only ]; then
    command -v "$ENGINE" >/dev/null || die "$ENGINE is missing"
    "$ENGINE" image inspect "$TAG" >/dev/null 2>&1 || die "no image $TAG: build it first (bash scripts/build_image.sh $VARIANT)"
  else
    [ "$ENGINE" = podman ] || die "only podman runs the checks after a buildah build: leave CONTAINER_ENGINE unset"
    for tool in podman buildah curl; do
      command -v "$tool" >/dev/null || die "$tool is missing: apt-get install -y podman buildah debootstrap runc curl"
    done
    choose_base
    build
  fi
  say "labels:"
  labels
  run_checks
  sizes
  if [ "${#failures[@]}" -gt 0 ]; then
    say "FAILED: ${failures[*]}"
    exit 1
  fi
  say "all checks passed in $TAG"
  exit 0
}

main "$@"
