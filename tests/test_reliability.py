"""Preempted pods and stopped containers, for real: `rehearse` trains through `axolotl train`
on CPU and is killed (SIGKILL, as when a pod vanishes) or stopped (SIGTERM/SIGINT, what
`docker stop` and RunPod send), then started again with the same command.

What must hold: a restart resumes from the newest complete checkpoint and says so, a
half-written checkpoint is skipped and set aside, a signal saves a checkpoint and exits 130
with an `interrupted` provenance, a second signal stops at once, the finished run's
provenance is consistent, and no secret from the environment reaches a file or the log.

Five rehearsal starts, about 4 minutes in all on two busy cores; the small local tokenizer
is used (no --tokenizer) because its 2k vocabulary builds and trains faster than Qwen's 151k.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cli_tuner import data
from cli_tuner.config import canonical_hash
from conftest import REPO, SHORT_ROWS, data_sets, make_locked_data

pytestmark = pytest.mark.slow

# Checkpoints every 3 steps, killed after the first: at least four more are saved after the
# restart, enough for the trainer's checkpoint rotation (Axolotl keeps 4 by default) to reach
# anything that looks like one of its checkpoints.
KILL_STEPS = 18
SIGNAL_STEPS = 30  # no periodic checkpoint: the one found after a signal is the signal's
START_TIMEOUT = 400  # seconds until training is under way on a busy two-core runner
# Recognizable fakes: if either string shows up in a file or the log, a secret leaked.
FAKE_WANDB_KEY = "feedfacecafebeef0123456789abcdefd00dfeed"
FAKE_HF_TOKEN = "hf_CliTunerFakeTokenThatMustNotLeak0123"
FAKE_RUNPOD_KEY = "rpa_CliTunerFakeRunpodKeyThatMustNotLeak42"
SECRETS = [FAKE_WANDB_KEY, FAKE_HF_TOKEN, FAKE_RUNPOD_KEY]
SECRET_ENV = {"WANDB_API_KEY": FAKE_WANDB_KEY, "HF_TOKEN": FAKE_HF_TOKEN, "RUNPOD_API_KEY": FAKE_RUNPOD_KEY, "WANDB_MODE": "offline",
              "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def rehearse_command(files, root: Path, *options: str) -> list[str]:
    return [sys.executable, str(REPO / "entrypoint.py"), "rehearse", *data_sets(files), *SHORT_ROWS,
            "--output-root", str(root / "outputs"), "--set", f"dataset_prepared_path={root / 'prepared'}",
            *options]


def environment(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update(extra or {})
    return env


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    """In its own session, like a container's PID 1; output goes to files, never a full pipe."""
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("w"), stderr=errors_of(log).open("w"),
                            start_new_session=True)


def errors_of(log: Path) -> Path:
    return log.with_suffix(".stderr")


def last_error(log: Path) -> str:
    return (errors_of(log).read_text().strip().splitlines() or [""])[-1]


def finish(command: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def wait_for(condition, process: subprocess.Popen, log: Path, what: str, timeout: float = START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process.poll() is not None:
            pytest.fail(f"rehearse exited {process.returncode} before {what}:\n{log.read_text()[-3000:]}\n"
                        f"{errors_of(log).read_text()[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"no {what} after {timeout} s:\n{log.read_text()[-3000:]}")


def the_run(root: Path) -> Path | None:
    runs = [p for p in (root / "outputs").glob("rehearse-*") if p.is_dir()]
    return runs[0] if len(runs) == 1 else None


def progress(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "progress.json").read_text())
    except (OSError, ValueError):
        return {}


def processes_mentioning(marker: str) -> list[int]:
    """PIDs whose command line contains marker: the entrypoint and the `axolotl train` it runs in
    its own session (which a kill of the entrypoint's process group does not reach)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def kill_like_a_vanished_pod(process: subprocess.Popen, marker: str) -> None:
    """SIGKILL everything at the same instant: freeze all groups first, so the parent cannot
    notice its child dying and record anything."""
    groups = set()
    for pid in [process.pid, *processes_mentioning(marker)]:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            pass
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for group in groups:
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                pass
    process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(marker) == [], "training survived the kill"


def complete_checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps whose checkpoint the trainer finished: it writes trainer_state.json last."""
    steps = []
    for folder in run_dir.glob("checkpoint-*"):
        try:
            state = json.loads((folder / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        if (folder / "adapter_model.safetensors").is_file() and state.get("global_step") == int(folder.name[11:]):
            steps.append(state["global_step"])
    return sorted(steps)


def training_steps_logged(output: str) -> int:
    return sum(1 for line in output.splitlines() if line.startswith("{'loss': "))


def assert_consistent_success(run_dir: Path, files: dict, steps: int, resumed_from: str, previous: str) -> dict:
    record = json.loads((run_dir / "provenance.json").read_text())
    assert record["status"] == "succeeded" and record["error"] is None
    assert record["steps"] == {"planned": steps, "completed": steps}
    assert record["resumed_from"] == resumed_from and record["previous_attempt"] == previous
    manifest = json.loads((files["train"].parent / data.MANIFEST_NAME).read_text())
    assert record["data"]["data_sha256"] == manifest["data_sha256"]
    resolved = yaml.safe_load((run_dir / "resolved_config.yaml").read_text())
    assert canonical_hash(resolved) == record["config"]["resolved_sha256"]
    assert resolved["resume_from_checkpoint"] == str(run_dir / resumed_from)
    final_state = json.loads((run_dir / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    assert final_state["global_step"] == steps
    assert (run_dir / "phase2-final" / "adapter_model.safetensors").is_file()
    return record


def files_holding(root: Path, secrets: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            hits += [f"{path}: {secret[:8]}..." for secret in secrets if secret.encode() in content]
    return hits


# ------------------------------------------------------------------ SIGKILL, half-written checkpoint, secrets

def test_a_killed_run_resumes_from_its_newest_complete_checkpoint_and_leaks_no_secret(tmp_path):
    files = make_locked_data(tmp_path / "data")
    command = rehearse_command(files, tmp_path, "--steps", str(KILL_STEPS), "--save-steps", "3")
    env = environment(SECRET_ENV)
    first_log = tmp_path / "first.log"
    process = start(command, env, first_log)
    try:
        def first_checkpoint_saved():
            run_dir = the_run(tmp_path)
            return run_dir if run_dir and (run_dir / "checkpoint-3" / "trainer_state.json").is_file() else None

        run_dir = wait_for(first_checkpoint_saved, process, first_log, "checkpoint-3")
        kill_like_a_vanished_pod(process, str(tmp_path / "outputs"))
    finally:
        if process.poll() is None:
            process.kill()

    assert not progress(run_dir).get("train_end"), "the kill came after training ended; nothing was tested"
    killed = json.loads((run_dir / "provenance.json").read_text())
    assert killed["status"] == "running" and killed["ended_utc"] is None  # honest: nobody recorded an end
    newest = max(complete_checkpoint_steps(run_dir))
    # A checkpoint the kill cut short: the newest one copied, its adapter weights cut in half.
    broken = run_dir / "checkpoint-99"
    shutil.copytree(run_dir / f"checkpoint-{newest}", broken)
    weights = broken / "adapter_model.safetensors"
    weights_size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: weights_size // 2])
    os.utime(broken)  # written at the kill, after every complete checkpoint

    second = finish([*command, "--verbose"], env)  # --verbose: Axolotl's step lines on stdout, to count them
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"{run_dir.name}: resuming from checkpoint-{newest} (status was running)" in second.stdout
    assert "skipping checkpoint-99: unreadable adapter_model.safetensors" in second.stdout
    assert not broken.exists()
    assert training_steps_logged(second.stdout) == KILL_STEPS - newest  # continued, did not start over
    # --verbose streams Axolotl's log itself in place of the bars, and train.log still gets it
    assert "[axolotl.train] Starting trainer" in second.stdout and '"axolotl_config_path"' in second.stdout
    assert "[cli-tuner] training: started" not in second.stdout
    assert "[axolotl.train] Starting trainer" in (run_dir / "train.log").read_text()
    assert_consistent_success(run_dir, files, KILL_STEPS, f"checkpoint-{newest}", "running")

    leaks = files_holding(tmp_path / "outputs", SECRETS)
    leaks += files_holding(tmp_path / "prepared", SECRETS)
    logs = first_log.read_text() + errors_of(first_log).read_text() + second.stdout + second.stderr
    leaks += [f"captured log: {s[:8]}..." for s in SECRETS if s in logs]
    assert leaks == []
    # W&B really ran, offline, with the key in its environment.
    assert (run_dir / "wandb").is_dir()
    tracking = json.loads((run_dir / "provenance.json").read_text())["tracking"]
    assert tracking["wandb"] == "offline"
    # One W&B run across the kill and the restart: both offline runs carry the run folder's id.
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(p.name.endswith("-" + tracking["wandb_run_id"]) for p in offline), offline

    # Set aside, not deleted, and not mistaken by the trainer's checkpoint rotation for one of its own.
    asides = [p for p in run_dir.iterdir() if "checkpoint-99" in p.name]
    assert len(asides) == 1, f"the set-aside checkpoint-99 is gone: {sorted(p.name for p in run_dir.iterdir())}"
    assert (asides[0] / "adapter_model.safetensors").stat().st_size == weights_size // 2


# ------------------------------------------------------------------ SIGINT + SIGTERM, then SIGTERM, then resume

def test_signals_checkpoint_and_exit_130_a_second_stops_at_once_and_a_restart_resumes(tmp_path):
    files = make_locked_data(tmp_path / "data")
    command = rehearse_command(files, tmp_path, "--steps", str(SIGNAL_STEPS), "--save-steps", "100")
    env = environment({"WANDB_MODE": "offline"})

    def training_started():
        run_dir = the_run(tmp_path)
        return run_dir if run_dir and (progress(run_dir).get("step") or 0) >= 1 else None

    # 1. Two signals at once (Ctrl-C, then docker stop): no waiting for a checkpoint.
    log = tmp_path / "double.log"
    process = start(command, env, log)
    run_dir = wait_for(training_started, process, log, "a training step")
    os.kill(process.pid, signal.SIGINT)
    os.kill(process.pid, signal.SIGTERM)
    sent = time.monotonic()
    assert process.wait(timeout=60) == 130, log.read_text()[-3000:] + errors_of(log).read_text()
    assert time.monotonic() - sent < 15
    assert processes_mentioning(str(run_dir)) == []
    record = json.loads((run_dir / "provenance.json").read_text())
    assert record["status"] == "interrupted" and record["error"].startswith("signal 2 at step ")
    assert complete_checkpoint_steps(run_dir) == []
    assert last_error(log).startswith("error: interrupted by signal 2 at step ")

    # 2. The same command again: nothing to resume, starts over in the same folder; one SIGTERM.
    log = tmp_path / "term.log"
    restarted = time.time()
    process = start(command, env, log)

    def training_again():  # progress.json of this attempt, not the one the first attempt left
        fresh = (run_dir / "progress.json").is_file() and (run_dir / "progress.json").stat().st_mtime >= restarted
        return fresh and (progress(run_dir).get("step") or 0) >= 2

    wait_for(training_again, process, log, "training again")
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=120) == 130, log.read_text()[-3000:] + errors_of(log).read_text()
    output = log.read_text()
    assert f"{run_dir.name}: unfinished run without a usable checkpoint; starting it again from step 0" in output
    assert "(reused from the interrupted run)" in output
    record = json.loads((run_dir / "provenance.json").read_text())
    step = record["steps"]["completed"]
    assert record["status"] == "interrupted" and record["error"] == f"signal 15 at step {step}"
    assert 2 <= step < SIGNAL_STEPS and record["last_checkpoint"] == f"checkpoint-{step}"
    assert complete_checkpoint_steps(run_dir) == [step]  # saved at the step it stopped, though save_steps is 100
    assert last_error(log) == (f"error: interrupted by signal 15 at step {step}; start the same "
                                               f"command again to resume from checkpoint-{step}")

    # 3. And again: resumes from that checkpoint and finishes.
    last = finish([*command, "--verbose"], env)  # --verbose: Axolotl's step lines on stdout, to count them
    assert last.returncode == 0, last.stdout[-3000:] + last.stderr[-3000:]
    assert f"{run_dir.name}: resuming from checkpoint-{step} (status was interrupted)" in last.stdout
    assert training_steps_logged(last.stdout) == SIGNAL_STEPS - step
    assert_consistent_success(run_dir, files, SIGNAL_STEPS, f"checkpoint-{step}", "interrupted")
