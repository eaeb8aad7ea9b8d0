"""`rehearse --processes 2`: two ranks of the real `axolotl train` over gloo DDP, through torchrun, the
launcher path `smoke`/`full --gpus N` take. Rank 0 alone writes; a kill -9 of one rank ends the
run cleanly and the same command resumes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, SHORT_ROWS, data_sets, make_locked_data, run_folders

pytestmark = pytest.mark.slow
ENV = {"WANDB_API_KEY": "", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    from conftest import run_entrypoint

    root = tmp_path_factory.mktemp("ddp")
    files = make_locked_data(root / "data")
    result = run_entrypoint("rehearse", "--processes", "2", *data_sets(files), *SHORT_ROWS, "--output-root", str(root / "outputs"),
                            env=ENV)
    return result, run_folders(root / "outputs")


def test_two_ranks_over_gloo_end_with_one_checkpoint_and_one_adapter(two_ranks):
    result, runs = two_ranks
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 processes (1 machine, ddp, gloo on CPU)" in result.stdout
    (run,) = runs
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
    checkpoint = run / "checkpoint-2"
    for name in ("adapter_model.safetensors", "optimizer.pt", "trainer_state.json", "rng_state_0.pth", "rng_state_1.pth"):
        assert (checkpoint / name).is_file(), name
    assert (run / "phase2-final" / "adapter_model.safetensors").is_file()
    record = json.loads((run / "provenance.json").read_text())
    assert record["status"] == "succeeded"
    assert record["world_size"] == 2 and record["layout"] == {"world_size": 2, "strategy": "ddp"}


def test_the_ranks_trained_as_one_and_rank_0_alone_wrote(two_ranks):
    _, (run,) = two_ranks
    log = (run / "train.log").read_text(errors="replace")
    # One W&B run, one logger: a rank that did not join the process group would log its own.
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
    assert log.count("'grad_norm'") == 2, "one line per step: the ranks were not one DDP group"
    assert "[RANK:1] Saving model checkpoint" not in log  # a rank outside the group saved as its own rank 0
    assert json.loads((run / "progress.json").read_text())["step"] == 2


def _rank_pids(job: subprocess.Popen) -> dict[str, int]:
    """LOCAL_RANK -> pid of each rank: torchrun's own children, not their DataLoader workers."""
    import psutil

    pids = {}
    for proc in psutil.Process(job.pid).children(recursive=True):
        try:
            if "axolotl.cli.train" in " ".join(proc.cmdline()) and "torchrun" in " ".join(proc.parent().cmdline()):
                pids[proc.environ().get("LOCAL_RANK")] = proc.pid
        except psutil.Error:
            continue
    return pids


# Steps left after checkpoint-2 for the kill to land while training (the test polls every 0.5 s); a run
# that ends first fails the test (no rank was killed), it never passes without the kill.
KILL_STEPS = 12


def test_kill_9_of_one_rank_ends_the_run_and_the_same_command_resumes(tmp_path):
    files = make_locked_data(tmp_path / "data")
    command = [sys.executable, str(REPO / "entrypoint.py"), "rehearse", "--processes", "2", "--steps", str(KILL_STEPS),
               "--save-steps", "2", *data_sets(files), *SHORT_ROWS, "--output-root", str(tmp_path / "outputs")]
    env = {**os.environ, **ENV}
    job = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed, deadline = None, time.time() + 900
    while job.poll() is None and time.time() < deadline and killed is None:
        ready = [p for p in (tmp_path / "outputs").glob("rehearse-*/checkpoint-2")
                 if (p / "rng_state_1.pth").is_file() and (p / "trainer_state.json").is_file()]
        pids = _rank_pids(job) if ready else {}
        if "1" in pids:
            os.kill(pids["1"], signal.SIGKILL)  # our own grandchild, by pid
            killed = pids["1"]
        time.sleep(0.5)
    output, _ = job.communicate(timeout=600)
    assert killed is not None, output[-3000:]
    assert job.returncode == 1, output[-3000:]
    (run,) = run_folders(tmp_path / "outputs")
    record = json.loads((run / "provenance.json").read_text())
    assert record["status"] == "failed" and record["ended_utc"]

    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    record = json.loads((run / "provenance.json").read_text())
    assert record["status"] == "succeeded" and record["world_size"] == 2
    assert record["resumed_from"] and record["resumed_from"].startswith("checkpoint-")
    assert record["steps"]["completed"] == KILL_STEPS


def test_sigterm_reaches_every_rank_and_they_checkpoint_the_same_step(tmp_path):
    files = make_locked_data(tmp_path / "data")
    command = [sys.executable, str(REPO / "entrypoint.py"), "rehearse", "--processes", "2", "--steps", "30",
               "--save-steps", "100", *data_sets(files), *SHORT_ROWS, "--output-root", str(tmp_path / "outputs")]
    job = subprocess.Popen(command, cwd=REPO, env={**os.environ, **ENV}, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 900
    while job.poll() is None and time.time() < deadline:
        progress = list((tmp_path / "outputs").glob("rehearse-*/progress.json"))
        if progress and (json.loads(progress[0].read_text() or "{}").get("step") or 0) >= 2:
            job.send_signal(signal.SIGTERM)  # what docker stop sends the job
            break
        time.sleep(0.5)
    output, _ = job.communicate(timeout=600)
    assert job.returncode == 130, output[-3000:]
    assert "asking 2 ranks to checkpoint and stop" in output
    (run,) = run_folders(tmp_path / "outputs")
    (checkpoint,) = run.glob("checkpoint-*")
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    record = json.loads((run / "provenance.json").read_text())
    assert record["status"] == "interrupted" and record["last_checkpoint"] == checkpoint.name
