"""Paying only for training: the finish setting (stop the pod through RunPod's API, idle, exit),
the run lock, attempts, the trainer's environment and the W&B run id. Fast: no training here.

RunPod's API is a local HTTP server on 127.0.0.1; the real `runpod` SDK is pointed at it with
RUNPOD_API_BASE_URL, which the SDK reads, so the request it makes is the one a pod would send.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from cli_tuner.errors import (AlreadyFinished, CheckpointGateFailed, ConfigError, DataError, EXIT_USAGE, Interrupted,
                              RepeatedFailure, RunFolderBusy, TrainingFailed)
from cli_tuner import config
from cli_tuner.commands import full, smoke
from cli_tuner.settings import Settings
from cli_tuner.training import attempts, lifecycle, run_lock, tracking
from conftest import REPO

FAKE_RUNPOD_KEY = "rpa_CliTunerFakeRunpodKeyThatMustNotLeak42"


class Said(list):
    def __call__(self, message: str) -> None:
        self.append(message)


class FakeRunPod:
    """RunPod's GraphQL endpoint: records each request; optionally sends the pod's stop signal."""

    def __init__(self, status: int = 200, then_signal_pid: int | None = None):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                outer.requests.append({"path": self.path, "body": json.loads(body),
                                       "authorization": self.headers.get("Authorization")})
                answer = {"data": {"podStop": {"id": "pod123", "desiredStatus": "EXITED"}}} if status == 200 else \
                    {"errors": [{"message": "pod not found"}]}
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                if then_signal_pid:  # what RunPod does next: stop the container
                    threading.Timer(0.3, os.kill, (then_signal_pid, signal.SIGTERM)).start()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def runpod_api(monkeypatch):
    servers = []

    def make(**kwargs):
        server = FakeRunPod(**kwargs)
        servers.append(server)
        monkeypatch.setenv("RUNPOD_API_BASE_URL", server.url)
        return server

    yield make
    for server in servers:
        server.close()


# ------------------------------------------------------------------ stop, idle, exit

def test_stop_asks_runpods_api_to_stop_this_pod_and_waits_for_the_stop(runpod_api):
    api = runpod_api(then_signal_pid=os.getpid())
    said = Said()
    env = {"RUNPOD_POD_ID": "pod123", "RUNPOD_API_KEY": FAKE_RUNPOD_KEY}
    started = time.monotonic()
    code = lifecycle.carry_out(lifecycle.Finish("stop", "auto"), 6, "exit 6", say=said, env=env)
    assert code == 6 and time.monotonic() - started < 30  # left on the pod's SIGTERM, not the timeout
    (request,) = api.requests
    assert request["path"] == "/graphql"
    assert 'podStop(input: { podId: "pod123" })' in request["body"]["query"]
    assert request["authorization"] == f"Bearer {FAKE_RUNPOD_KEY}"
    assert said[0].startswith("on finish (exit 6): stopping pod pod123 through RunPod's API")
    assert said[-1] == "pod stop under way (signal 15); exiting 6"
    assert not any(FAKE_RUNPOD_KEY in line for line in said)


def test_a_refused_stop_is_reported_and_the_job_exits(runpod_api):
    server = runpod_api(status=400)
    said = Said()
    code = lifecycle.carry_out(lifecycle.Finish("stop", "auto"), 0, "succeeded", say=said,
                               env={"RUNPOD_POD_ID": "pod123", "RUNPOD_API_KEY": FAKE_RUNPOD_KEY})
    assert code == 0 and len(server.requests) == 1
    assert said[-1].startswith("on finish: RunPod did not stop pod pod123 (QueryError: pod not found); exiting 0")
    assert not any(FAKE_RUNPOD_KEY in line for line in said)


def test_stop_without_the_runpod_extra_says_so_in_one_line_and_the_job_exits(runpod_api, monkeypatch):
    # The CPU image leaves the SDK out (requirements-runpod.txt): None in sys.modules makes `import runpod` fail.
    api = runpod_api()
    monkeypatch.setitem(sys.modules, "runpod", None)
    said = Said()
    code = lifecycle.carry_out(lifecycle.Finish("stop", "auto"), 3, "exit 3", say=said,
                               env={"RUNPOD_POD_ID": "pod123", "RUNPOD_API_KEY": FAKE_RUNPOD_KEY})
    assert code == 3 and api.requests == []
    assert said[-1] == ("on finish: cannot stop pod pod123: the RunPod SDK is not installed (the CUDA image has it): "
                        "pip install -r requirements-runpod.txt -c requirements-lock.txt; exiting 3, "
                        "stop the pod in the RunPod console")
    assert "\n" not in said[-1] and not any(FAKE_RUNPOD_KEY in line for line in said)


def test_stop_without_an_api_key_exits_and_says_the_pod_keeps_billing(runpod_api):
    api = runpod_api()
    said = Said()
    code = lifecycle.carry_out(lifecycle.Finish("stop", "auto"), 0, "succeeded", say=said,
                               env={"RUNPOD_POD_ID": "pod123"})
    assert code == 0 and api.requests == []
    assert said == ["on finish (succeeded): cannot stop pod pod123: RUNPOD_API_KEY is not set; exiting 0, "
                    "and the pod bills until you stop it in the RunPod console"]


def test_idle_stays_up_until_the_pod_is_stopped():
    said = Said()
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    started = time.monotonic()
    assert lifecycle.carry_out(lifecycle.Finish("idle", "cli_tuner.on_finish"), 0, "succeeded", say=said) == 0
    assert time.monotonic() - started >= 0.9
    assert said == ["on finish (succeeded): staying up idle (on_finish=idle, cli_tuner.on_finish); "
                    "the pod bills until you stop it", "signal 15: exiting 0"]


@pytest.mark.parametrize("option, configured, mode, unattended, env, action", [
    (None, None, "full", False, {"RUNPOD_POD_ID": "p"}, "stop"),       # full on a pod stops it
    (None, None, "smoke", True, {"RUNPOD_POD_ID": "p"}, "stop"),       # so does any TRAIN_MODE start
    (None, None, "smoke", False, {"RUNPOD_POD_ID": "p"}, "exit"),      # a smoke typed in the terminal returns
    (None, None, "full", True, {}, "exit"),                            # not on RunPod: exit
    (None, "idle", "full", True, {"RUNPOD_POD_ID": "p"}, "idle"),      # the config decides over auto
    ("exit", "idle", "full", True, {"RUNPOD_POD_ID": "p"}, "exit"),    # the option over the config
])
def test_the_finish_setting(option, configured, mode, unattended, env, action, monkeypatch):
    monkeypatch.delenv("ON_FINISH", raising=False)
    sets = [f"cli_tuner.on_finish={configured}"] if configured else []
    loaded = config.load(REPO / "configs/axolotl_config.yaml", sets=sets, on_finish=option)
    assert lifecycle.resolve_finish(loaded.settings, {"smoke": smoke, "full": full}[mode].SPEC.stops_pod_when_attended,
                                    unattended, env=env).action == action


def test_the_finish_settings_precedence(monkeypatch, tmp_path):
    """--on-finish, then --set, then ON_FINISH, then the file: each named as the source."""
    base = tmp_path / "c.yaml"
    base.write_text((REPO / "configs/axolotl_config.yaml").read_text() + "\n" +
                    "cli_tuner: {target: a5000, test_file: data/processed/test.jsonl, on_finish: idle}\n")

    def source(**kwargs):
        settings = config.load(base, **kwargs).settings
        return settings.on_finish, settings.source("on_finish")

    monkeypatch.delenv("ON_FINISH", raising=False)
    assert source() == ("idle", f"{base}: cli_tuner.on_finish")
    monkeypatch.setenv("ON_FINISH", "exit")
    assert source() == ("exit", "ON_FINISH")
    assert source(sets=["cli_tuner.on_finish=stop"]) == ("stop", "--set cli_tuner.on_finish")
    assert source(sets=["cli_tuner.on_finish=stop"], on_finish="idle") == ("idle", "--on-finish")


def test_a_misspelt_finish_setting_names_the_key(monkeypatch):
    monkeypatch.setenv("ON_FINISH", "shutdown")
    with pytest.raises(ConfigError) as caught:
        config.load(REPO / "configs/axolotl_config.yaml")
    assert caught.value.message.startswith("ON_FINISH (stands in for cli_tuner.on_finish): 'shutdown' is not one of "
                                           "the listed values; allowed: one of auto, stop, idle, exit; fix: set ON_FINISH=")


@pytest.mark.parametrize("error, unattended, follows", [
    (None, False, True),
    (CheckpointGateFailed("gate"), False, True),
    (Interrupted("signal"), True, False),            # the pod is being stopped already
    (RunFolderBusy("busy"), True, False),             # another process is training: never stop under it
    (TrainingFailed("crash"), True, False),           # RunPod's restart resumes; attempts cap it
    (TrainingFailed("crash"), False, True),           # left alone in a terminal: nobody restarts it
    (AlreadyFinished("done"), True, True),
    (AlreadyFinished("done"), False, False),
    (RepeatedFailure("refused"), True, True),
    (DataError("bad data"), True, True),
    (DataError("bad data"), False, False),
])
def test_which_endings_follow_the_finish_setting(error, unattended, follows):
    assert lifecycle.applies(error, unattended) is follows


# ------------------------------------------------------------------ the trainer's environment, W&B

def test_the_trainer_gets_expandable_segments_unless_the_user_chose(monkeypatch):
    env, record = lifecycle.trainer_environment({}, Settings())
    assert env["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True" == record["PYTORCH_CUDA_ALLOC_CONF"]
    assert env["CLI_TUNER_CHECKPOINT_EVERY_MINUTES"] == "10.0"
    env, _ = lifecycle.trainer_environment({"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:128"}, Settings())
    assert env["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:128"


def test_lifecycle_keys_do_not_change_the_run_identity():
    loaded = config.load(REPO / "configs/training_config_h100.yaml",
                         sets=["cli_tuner.on_finish=idle", "cli_tuner.checkpoint_every_minutes=5",
                               "cli_tuner.max_identical_failures=2", "cli_tuner.price_per_hour=2.5",
                               "cli_tuner.memory_headroom=0.1"])
    assert loaded.settings.identity() == {"target": "h100", "test_file": "data/processed/test.jsonl"}


def test_the_wandb_run_id_is_stable_per_run_folder_and_resumes(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    monkeypatch.delenv("WANDB_RESUME", raising=False)
    cfg = {"wandb_project": "cli-tuner"}
    first, summary = tracking.training_environment(cfg, tmp_path / "full-abc", say=Said(), identity_key="c|d")
    again, _ = tracking.training_environment(cfg, tmp_path / "full-abc", say=Said(), identity_key="c|d")
    other, _ = tracking.training_environment(cfg, tmp_path / "full-abc-2", say=Said(), identity_key="c|d")
    assert first["WANDB_RUN_ID"] == again["WANDB_RUN_ID"] == summary["wandb_run_id"]
    assert first["WANDB_RUN_ID"].startswith("full-abc-") and other["WANDB_RUN_ID"] != first["WANDB_RUN_ID"]
    assert first["WANDB_RESUME"] == "allow"
    monkeypatch.setenv("WANDB_RUN_ID", "chosen-by-user")
    assert tracking.training_environment(cfg, tmp_path / "full-abc", say=Said())[0]["WANDB_RUN_ID"] == "chosen-by-user"


# ------------------------------------------------------------------ attempts

def test_identical_failures_are_counted_and_refused_after_the_limit(tmp_path):
    for _ in range(2):
        attempts.begin(tmp_path, 2).end("failed", "axolotl train exited 1: [2026-01-01 10:00:00,123] CUDA out of memory")
    with pytest.raises(RepeatedFailure) as caught:
        attempts.begin(tmp_path, 2)
    assert caught.value.exit_code == 7
    assert caught.value.message.startswith(f"refused: the last 2 attempts of {tmp_path.name} failed the same way (")
    assert attempts.begin(tmp_path, 3).history[-1]["outcome"] == "running"  # a higher limit lets it try again


def test_different_failures_or_a_vanished_attempt_break_the_streak(tmp_path):
    attempts.begin(tmp_path, 2).end("failed", "out of memory")
    attempts.begin(tmp_path, 2).end("failed", "disk full")
    attempts.begin(tmp_path, 2)  # killed with the pod: nobody records its end
    history = attempts.begin(tmp_path, 2).history
    assert [a["outcome"] for a in history] == ["failed", "failed", "vanished", "running"]


# ------------------------------------------------------------------ the run lock, two real processes

HOLD = """
import sys, time
from pathlib import Path
from cli_tuner.training import run_lock
lock = run_lock.acquire(Path(sys.argv[1]), say=print)
print("holding", flush=True)
time.sleep(600)
"""


def hold_lock(run_dir: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_second_process_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    holder = hold_lock(tmp_path)
    try:
        with pytest.raises(RunFolderBusy) as caught:
            run_lock.acquire(tmp_path, say=Said())
        assert caught.value.exit_code == EXIT_USAGE
        assert f"is in use by pid {holder.pid} on " in caught.value.message and "(running)" in caught.value.message
    finally:
        holder.kill()
        holder.wait()
    said = Said()
    lock = run_lock.acquire(tmp_path, say=said)  # the holder died with its lock still recorded
    try:
        assert said[0].startswith(f"run folder lock: taking over from pid {holder.pid} on ")
        assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_a_training_start_against_a_busy_run_folder_is_refused(tmp_path, locked_data):
    from conftest import data_sets, run_entrypoint

    run_dir = tmp_path / "outputs" / "shared"
    run_dir.mkdir(parents=True)
    holder = hold_lock(run_dir)
    try:
        result = run_entrypoint("rehearse", *data_sets(locked_data), "--output-root", str(tmp_path / "outputs"),
                                "--run-id", "shared", "--skip-checks", "--unattended",
                                env={"RUNPOD_POD_ID": "pod123", "RUNPOD_API_KEY": FAKE_RUNPOD_KEY})
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {run_dir} is in use by pid {holder.pid} on ") and "(running)" in last
    assert "on finish" not in result.stdout  # never stops the pod under the process that trains
    assert FAKE_RUNPOD_KEY not in result.stdout + result.stderr
