#!/usr/bin/env bash
# The CUDA image's start script (tini runs it as PID 1's only child), following RunPod's conventions:
#   - arguments given:       run that entrypoint command and exit with its code
#                            (docker run IMAGE validate --config ...; compose's `command:`)
#   - TRAIN_MODE set:        run that mode (the entrypoint reads TRAIN_MODE) and exit with its code
#   - neither:               stay up for RunPod's web terminal, with sshd when PUBLIC_KEY holds a key;
#                            a pod stop (SIGTERM/SIGINT to this script) is forwarded to every training
#                            job started from the terminal or SSH (each writes OUTPUT_ROOT/.job-PID.pid),
#                            and the script waits for them to checkpoint and exit
# In every case the host's NVIDIA driver is checked first against CLI_TUNER_MIN_DRIVER, and sshd is
# started when PUBLIC_KEY is set, so a training pod can be watched over SSH too.
set -euo pipefail

# /app in the image; found from this file so /start.sh (a link) and a checkout both work.
APP_DIR=$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")

log() { printf '[start] %s\n' "$*"; }

# The image sets no NVIDIA_REQUIRE_CUDA (its base is not nvidia/cuda), so the NVIDIA container toolkit
# starts it on any driver; this is where a too-old one is caught, in one line that names the driver needed. Without the check
# it would fail at the first CUDA call with a message that does not say which driver is needed.
# CLI_TUNER_MIN_DRIVER and CLI_TUNER_TORCH_CUDA come from the image (Dockerfile.cuda's TORCH_CUDA,
# docker/torch_flavours.json). nvidia-smi is there when the NVIDIA runtime mounted the GPU; without
# it the job's own checks report the missing GPU.
check_driver() {
  local minimum=${CLI_TUNER_MIN_DRIVER:-525} flavour=${CLI_TUNER_TORCH_CUDA:-cu126} version cuda major
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  version=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1) || return 0
  [ -n "$version" ] || return 0
  # cu126 -> CUDA 12.6; under minor version compatibility any driver of CUDA 12.0 or newer runs it.
  cuda=${flavour#cu}
  cuda="${cuda%?}.${cuda: -1}"
  major=${cuda%%.*}
  if [ "${version%%.*}" -lt "${minimum%%.*}" ]; then
    printf 'error: NVIDIA driver %s is older than %s, which this image needs (its torch is the %s build, CUDA %s); ' \
      "$version" "$minimum" "$flavour" "$cuda" >&2
    printf 'use a host with driver %s or newer (on RunPod: filter pods by CUDA version %s.0 or newer)\n' \
      "$minimum" "$major" >&2
    return 5
  fi
  log "NVIDIA driver $version (needs >= $minimum for the $flavour build of torch)"
}

start_sshd() {
  [ -n "${PUBLIC_KEY:-}" ] || return 0
  mkdir -p /root/.ssh
  chmod 700 /root/.ssh
  touch /root/.ssh/authorized_keys
  # A restarted pod runs this again: add the key once.
  grep -qxF -- "$PUBLIC_KEY" /root/.ssh/authorized_keys || printf '%s\n' "$PUBLIC_KEY" >> /root/.ssh/authorized_keys
  chmod 600 /root/.ssh/authorized_keys
  ssh-keygen -A >/dev/null   # host keys are made per container, never baked into the image
  /usr/sbin/sshd
  log "sshd started on port 22"
}

driver_status=0
check_driver || driver_status=$?
start_sshd

if [ "$#" -gt 0 ] || [ -n "${TRAIN_MODE:-}" ]; then
  [ "$driver_status" -eq 0 ] || exit "$driver_status"
  log "running: python $APP_DIR/entrypoint.py ${*:-(TRAIN_MODE=$TRAIN_MODE)}"
  cd "$APP_DIR"
  exec python "$APP_DIR/entrypoint.py" "$@"
fi

log "TRAIN_MODE is empty: the container stays up for the web terminal and SSH."
log "  cd $APP_DIR && python entrypoint.py --help   # the commands"
log "  python entrypoint.py doctor                  # GPU, driver and package checks"
log "  python entrypoint.py smoke                   # 10-step run into ${OUTPUT_ROOT:-outputs}"

# Jobs started from a terminal are not our children: tini delivers a pod stop to this script only,
# and without forwarding it the trainer would die with the container, without a checkpoint.
JOBS_ROOT=${OUTPUT_ROOT:-$APP_DIR/outputs}
forward_stop() {
  local signal=$1 file pid pids=()
  for file in "$JOBS_ROOT"/.job-*.pid; do
    [ -e "$file" ] || continue
    pid=$(head -c 32 "$file" 2>/dev/null | tr -cd '0-9') || true
    if [ -n "$pid" ] && kill -s "$signal" "$pid" 2>/dev/null; then
      pids+=("$pid")
    fi
  done
  log "SIG$signal: forwarded to ${#pids[@]} training job(s) ${pids[*]:-}; waiting for their checkpoints"
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do sleep 0.5; done
  done
  if [ -n "${sleeper:-}" ]; then kill "$sleeper" 2>/dev/null || true; fi
  if [ "$signal" = INT ]; then exit 130; fi
  exit 143
}
trap 'forward_stop TERM' TERM
trap 'forward_stop INT' INT
sleep infinity &
sleeper=$!
wait "$sleeper"
