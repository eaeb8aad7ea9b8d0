"""A pod's life, for real on CPU: the interactive flow of docs/runpod.md stopped by a pod stop,
timed checkpoints, and a run that crashes the same way until the job refuses and stops the pod.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, SHORT_ROWS, data_sets, make_locked_data
from test_lifecycle import FAKE_RUNPOD_KEY, FakeRunPod
from test_reliability import complete_checkpoint_steps, errors_of, the_run, wait_for

pytestmark = pytest.mark.slow

START = REPO / "docker" / "start.sh"


def test_a_pod_stop_reaches_a_job_started_from_the_terminal_which_checkpoints_on_a_timer_too(tmp_path):
    files = make_locked_data(tmp_path / "data")
    outputs = tmp_path / "outputs"
    env = {k: v for k, v in os.environ.items() if k not in ("TRAIN_MODE", "PUBLIC_KEY", "RUNPOD_POD_ID")}
    # The venv's own bin first, as /opt/venv/bin is in the image (a symlinked python would lose the venv).
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin", OUTPUT_ROOT=str(outputs),
               WANDB_MODE="offline")
    start_log = tmp_path / "start.log"
    container = subprocess.Popen(["bash", str(START)], env=env, stdout=start_log.open("w"), stderr=subprocess.STDOUT,
                                 cwd="/", start_new_session=True)
    # The docs' interactive flow, as typed in the web terminal (not a child of start.sh).
    job_log = tmp_path / "rehearse.log"
    command = (f"cd {REPO} && nohup python entrypoint.py rehearse {' '.join(data_sets(files) + SHORT_ROWS)} --steps 400 "
               f"--save-steps 1000 --set cli_tuner.checkpoint_every_minutes=0.05 > {job_log} 2> {errors_of(job_log)} &")
    subprocess.run(["bash", "-c", command], env=env, check=True, start_new_session=True)
    job_pid = None
    try:
        def timed_checkpoint_saved():
            run_dir = the_run(tmp_path)
            return run_dir if run_dir and complete_checkpoint_steps(run_dir) else None

        run_dir = wait_for(timed_checkpoint_saved, container, job_log, "a timed checkpoint")
        (pid_file,) = outputs.glob(".job-*.pid")
        job_pid = int(pid_file.read_text())
        timed = complete_checkpoint_steps(run_dir)
        os.kill(container.pid, signal.SIGTERM)  # RunPod stopping the pod
        assert container.wait(timeout=180) == 143, start_log.read_text()
    finally:
        if container.poll() is None:
            container.kill()
        if job_pid:
            try:
                os.kill(job_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert f"SIGTERM: forwarded to 1 training job(s) {job_pid}" in start_log.read_text()
    record = json.loads((run_dir / "provenance.json").read_text())
    step = record["steps"]["completed"]
    assert record["status"] == "interrupted" and record["error"] == f"signal 15 at step {step}"
    assert step in complete_checkpoint_steps(run_dir)  # the stop's own checkpoint
    # Before the stop: checkpoints on the clock, though save_steps (1000) never came.
    assert timed and all(s < step for s in timed)
    assert "timed checkpoint at step" in (run_dir / "train.log").read_text()
    assert record["trainer"]["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert record["trainer"]["checkpoint_every_minutes"] == 0.05
    assert not list(outputs.glob(".job-*.pid"))  # the job removed its pid file on the way out
    attempts = json.loads((run_dir / "attempts.json").read_text())
    assert [a["outcome"] for a in attempts] == ["interrupted"]
    # W&B offline names its run folder after the run id: the run folder's stable one.
    assert [p.name.rsplit("-", 1)[0] for p in (run_dir / "wandb").glob("offline-run-*")]
    assert all(p.name.endswith(record["tracking"]["wandb_run_id"]) for p in (run_dir / "wandb").glob("offline-run-*"))


CRASH = """
import os, sys
# Only in the trainer's process (the job sets its W&B folder there): fail the same way every time.
# site swallows an exception raised here, so write the error and leave as a crashing trainer would.
if os.environ.get("WANDB_DIR") and os.environ.get("CLI_TUNER_CHECKPOINT_EVERY_MINUTES"):
    sys.stderr.write("RuntimeError: CUDA error: an illegal memory access was encountered\\n")
    sys.stderr.flush()
    os._exit(1)
"""


def test_identical_crashes_are_retried_then_refused_and_the_pod_is_stopped(tmp_path):
    files = make_locked_data(tmp_path / "data")
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(CRASH)
    api = FakeRunPod()
    env = dict(os.environ, PYTHONPATH=str(inject), RUNPOD_POD_ID="pod123", RUNPOD_API_KEY=FAKE_RUNPOD_KEY,
               RUNPOD_API_BASE_URL=api.url, WANDB_MODE="offline")
    command = [sys.executable, str(REPO / "entrypoint.py"), "rehearse", *data_sets(files), *SHORT_ROWS, "--unattended",
               "--output-root", str(tmp_path / "outputs"), "--set", "cli_tuner.max_identical_failures=2"]
    try:
        for attempt in (1, 2):  # what RunPod's restarts would do
            result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
            assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
            assert "illegal memory access" in result.stderr.strip().splitlines()[-1]
            assert api.requests == []  # a crash is retried by the restart, the pod stays up
        run_dir = the_run(tmp_path)
        record = json.loads((run_dir / "provenance.json").read_text())
        assert record["status"] == "failed" and "illegal memory access" in record["error"]
        third = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while not api.requests and time.monotonic() < deadline and third.poll() is None:
            time.sleep(0.2)
        os.kill(third.pid, signal.SIGTERM)  # RunPod stopping the pod after podStop
        stdout, stderr = third.communicate(timeout=60)
    finally:
        api.close()
    assert third.returncode == 7, stdout[-2000:] + stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith(f"error: refused: the last 2 attempts of {run_dir.name} failed the same way")
    assert "on finish (exit 7): stopping pod pod123 through RunPod's API" in stdout
    (request,) = api.requests
    assert 'podId: "pod123"' in request["body"]["query"]
    assert FAKE_RUNPOD_KEY not in stdout + stderr
    assert not any(FAKE_RUNPOD_KEY.encode() in p.read_bytes() for p in run_dir.rglob("*") if p.is_file())
    outcomes = [a["outcome"] for a in json.loads((run_dir / "attempts.json").read_text())]
    assert outcomes == ["failed", "failed"]  # the refusal trains nothing and is no attempt
