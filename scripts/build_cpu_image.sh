#!/usr/bin/env bash
# Build Dockerfile.cpu-validate with buildah and run the job in it with podman, on a Linux machine
# with neither a Docker engine nor access to Docker Hub: the base image is made locally with
# debootstrap. Prints the build time, the image size and each command's exit code and last lines.
#
#   sudo apt-get install -y podman buildah debootstrap runc     # once (Debian/Ubuntu, as root)
#   bash scripts/build_cpu_image.sh
#
# Settings, all optional, through the environment:
#   BASE_IMAGE       image to build on; default "localbase", made with debootstrap when missing
#   TAG              tag of the image built (default cli-tuner:cpu)
#   TORCH_INDEX_URL  where the CPU torch comes from (default PyTorch's CPU index)
#   TORCH_WHEEL_DIR  folder holding torch-2.13.0+cpu-*.whl; mounted into the build and used when the
#                    index above cannot be reached (default /opt/wheels when it holds one)
#   HOST_CA          CA bundle the build's pip trusts, for TLS-intercepting proxies
#                    (default /etc/ssl/certs/ca-certificates.crt when present)
#   TOKENIZER_DIR    base model tokenizer folder, mounted read-only for validate and rehearse
#                    (default ../shared/data/tokenizers/qwen2.5-coder-7b-instruct when present)
#   CTR_ROOT         podman/buildah storage and config when CONTAINERS_STORAGE_CONF is unset (/tmp/ctr)
#   RUN_COMMANDS     "no" to build only
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-localbase}
TAG=${TAG:-cli-tuner:cpu}
TORCH_VERSION=$(sed -n 's/^torch==//p' requirements.txt)
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
TORCH_WHEEL_DIR=${TORCH_WHEEL_DIR:-/opt/wheels}
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
TOKENIZER_DIR=${TOKENIZER_DIR:-../shared/data/tokenizers/qwen2.5-coder-7b-instruct}
CTR_ROOT=${CTR_ROOT:-/tmp/ctr}

say() { printf '[build_cpu_image] %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 5; }

for tool in podman buildah; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install -y podman buildah debootstrap runc"
done

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

if ! podman image exists "$BASE_IMAGE"; then
  [ "$BASE_IMAGE" = localbase ] || die "base image $BASE_IMAGE not found; pull it or leave BASE_IMAGE unset"
  command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y debootstrap"
  say "making the base image localbase (Debian 12 + python3 3.11) with debootstrap"
  start=$(date +%s)
  rootfs=$CTR_ROOT/rootfs
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" >/dev/null
  # What python:3.11-slim-bookworm leaves out too: downloaded packages, package lists, docs, man
  # pages and translations (~140 MB of the 275 MB debootstrap leaves).
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
         "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  tar -C "$rootfs" -c . | podman import - localbase >/dev/null
  rm -rf "$rootfs"
  say "base image made in $(( $(date +%s) - start )) s: $(( $(podman image inspect --format '{{.Size}}' localbase) / 1000000 )) MB"
fi

build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "TORCH_VERSION=$TORCH_VERSION"
            --build-arg "IMAGE_TAG=$TAG")
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain 2>/dev/null)" ] || revision="$revision-dirty"
build_args+=(--build-arg "GIT_REVISION=$revision")
mounts=()
if [ -f "$HOST_CA" ]; then
  mounts+=(-v "$(realpath "$HOST_CA"):/run/host-ca.crt:ro")
  build_args+=(--build-arg PIP_CERT=/run/host-ca.crt)
fi
if curl -fsS -o /dev/null --max-time 15 "$TORCH_INDEX_URL/torch/" 2>/dev/null; then
  build_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
elif compgen -G "$TORCH_WHEEL_DIR/torch-$TORCH_VERSION+cpu-*.whl" >/dev/null; then
  say "$TORCH_INDEX_URL unreachable: torch from $TORCH_WHEEL_DIR (mounted into the build only)"
  mounts+=(-v "$(realpath "$TORCH_WHEEL_DIR"):/wheels:ro")
  build_args+=(--build-arg PIP_FIND_LINKS=/wheels --build-arg TORCH_INDEX_URL=https://pypi.org/simple)
else
  die "$TORCH_INDEX_URL is unreachable and $TORCH_WHEEL_DIR holds no torch-$TORCH_VERSION+cpu wheel; set TORCH_WHEEL_DIR"
fi

say "building $TAG from Dockerfile.cpu-validate on $BASE_IMAGE"
start=$(date +%s)
# --format docker: the OCI format drops SHELL (bash -o pipefail), which Docker honours.
buildah bud --isolation chroot --layers --format docker "${mounts[@]}" "${build_args[@]}" \
  -f Dockerfile.cpu-validate --target cpu -t "$TAG" .
build_s=$(( $(date +%s) - start ))
size_bytes=$(podman image inspect --format '{{.Size}}' "$TAG")
say "build time: ${build_s} s"
say "image size: $(( size_bytes / 1000000 )) MB ($TAG, uncompressed)"
say "labels: $(podman image inspect --format '{{index .Labels "org.opencontainers.image.revision"}} {{index .Labels "org.opencontainers.image.version"}}' "$TAG")"

[ "${RUN_COMMANDS:-yes}" = no ] && exit 0

# The job runs with no network: validate and rehearse must work offline. Outputs go to a scratch
# folder on the host, as /workspace/outputs would on a pod.
outputs=$(mktemp -d "${TMPDIR:-/tmp}/cli-tuner-outputs.XXXXXX")
run_opts=(--rm --network none -v "$outputs:/workspace/outputs" -e HF_HUB_OFFLINE=1)
if [ -d "$TOKENIZER_DIR" ]; then
  run_opts+=(-v "$(realpath "$TOKENIZER_DIR"):/tokenizer:ro" -e REHEARSAL_TOKENIZER=/tokenizer)
  tokenizer_args=(--tokenizer /tokenizer)
else
  say "no tokenizer at $TOKENIZER_DIR: validate skips the token report, rehearse builds a local one"
  tokenizer_args=(--no-data-report)
fi

failures=0
run_in_image() {
  local name=$1; shift
  local log=$outputs/$name.log rc=0 start
  start=$(date +%s)
  podman run "${run_opts[@]}" "$TAG" "$@" >"$log" 2>&1 || rc=$?
  say "$name: exit $rc in $(( $(date +%s) - start )) s; last lines:"
  tail -n 8 "$log" | sed 's/^/    /'
  [ "$rc" -eq 0 ] || failures=$((failures + 1))
}
run_in_image help --help
run_in_image validate validate --config configs/axolotl_config.yaml "${tokenizer_args[@]}"
run_in_image rehearse rehearse --config configs/axolotl_config.yaml
say "logs and run folders: $outputs"
[ "$failures" -eq 0 ] || die "$failures command(s) failed in the image"
say "all commands succeeded"
