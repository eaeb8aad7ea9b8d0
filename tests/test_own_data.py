"""Day one with your own data, as a user walks it through the command line: one data folder per run,
no network and no tokenizer, and the job started from another folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_tuner import data
from cli_tuner.errors import EXIT_DATA, EXIT_ENVIRONMENT
from conftest import REPO, make_locked_data, run_entrypoint

CONFIG = REPO / "configs" / "axolotl_config.yaml"
SAMPLE_DATA = REPO / "data" / "processed"


def manifest_hash(folder: Path) -> str:
    return json.loads(data.manifest_path(folder).read_text())["data_sha256"]


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


# ---------------------------------------------------------------- 1. one data folder per run

def test_validate_reads_every_split_from_the_data_dir(tmp_path):
    mine = make_locked_data(tmp_path / "mine")["train"].parent
    result = run_entrypoint("validate", "--data-dir", str(mine), "--no-data-report")
    assert result.returncode == 0, result.stderr[-2000:]
    # the stock config names data/processed/{train,val,test}.jsonl: all three are read from the user's folder
    assert f"data: 3 files match their manifest (data sha256 {manifest_hash(mine)[:16]}...)" in result.stdout


def test_train_data_dir_from_the_environment_and_a_split_outside_it_is_refused(tmp_path):
    mine = make_locked_data(tmp_path / "mine")["train"].parent
    elsewhere = make_locked_data(tmp_path / "elsewhere", test=9)["test"]
    result = run_entrypoint("validate", "--no-data-report", "--set", f"cli_tuner.test_file={elsewhere}",
                            env={"TRAIN_DATA_DIR": str(mine)})
    assert result.returncode == EXIT_DATA, result.stdout[-2000:] + result.stderr[-2000:]
    (line,) = error_lines(result)
    assert str(elsewhere) in line and f"outside the data folder {mine}" in line, line


def test_a_train_file_of_your_own_brings_its_own_val_and_test_splits(tmp_path):
    # the config's test_datasets and test_file still name data/processed; they are read from the train
    # file's folder, so the run never mixes two folders' splits
    mine = make_locked_data(tmp_path / "mine")
    result = run_entrypoint("validate", "--no-data-report", "--set", f"datasets.0.path={mine['train']}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"(data sha256 {manifest_hash(mine['train'].parent)[:16]}...)" in result.stdout


@pytest.mark.parametrize("verb", ["validate", "data-report", "smoke", "full", "rehearse", "check-checkpoint"])
def test_every_verb_that_reads_data_takes_a_data_dir(verb):
    result = run_entrypoint(verb, "--help")
    assert result.returncode == 0 and "--data-dir" in result.stdout and "TRAIN_DATA_DIR" in result.stdout


# ---------------------------------------------------------------- 2. offline, and tokenizers

def without_network_or_tokenizer(tmp_path: Path, offline: bool) -> dict:
    """No tokenizer anywhere the job looks; the hub either switched off or unreachable (a closed port)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), CLI_TUNER_SHARED_DATA=str(tmp_path / "no-shared-data"),
               HF_ENDPOINT="http://127.0.0.1:9")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "probe"])
def test_validate_without_network_or_tokenizer_ends_with_one_line(tmp_path, offline):
    result = subprocess.run([sys.executable, str(REPO / "entrypoint.py"), "validate"], cwd=REPO,
                            env=without_network_or_tokenizer(tmp_path, offline), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == EXIT_ENVIRONMENT, result.stderr[-2000:]
    assert "Retry" not in result.stdout + result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr  # one line on stderr
    line = result.stderr.strip()
    assert line.startswith("error: ") and "Qwen/Qwen2.5-Coder-7B-Instruct" in line
    assert str(tmp_path / "no-shared-data") in line and "hf download" in line, line  # where it looked, how to get it


def test_the_probe_takes_any_http_answer_as_the_hub_and_silence_as_no_network(monkeypatch):
    import http.server
    import socket
    import threading

    from cli_tuner import hub

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts the connection, never answers: what some sandboxes do for every address
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        assert hub.online()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        assert not hub.online()
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert not hub.online() and hub.why_offline() == "HF_HUB_OFFLINE=1"
    finally:
        server.shutdown()
        silent.close()


def test_a_tokenizer_path_that_does_not_exist_is_no_such_folder():
    result = run_entrypoint("validate", "--tokenizer", "./no/such/tokenizer")
    assert result.returncode == EXIT_ENVIRONMENT, result.stderr[-2000:]
    (line,) = error_lines(result)
    assert "no such folder" in line and "./no/such/tokenizer" in line and "hub" not in line, line


@pytest.mark.requires_reference_data("qwen", hub=False)
def test_the_job_finds_a_tokenizer_where_the_tests_do(tmp_path, qwen_tokenizer_dir):
    shared = tmp_path / "shared"
    (shared / "tokenizers").mkdir(parents=True)
    (shared / "tokenizers" / qwen_tokenizer_dir.name).symlink_to(qwen_tokenizer_dir)
    env = without_network_or_tokenizer(tmp_path, offline=True) | {"CLI_TUNER_SHARED_DATA": str(shared)}
    result = subprocess.run([sys.executable, str(REPO / "entrypoint.py"), "data-report"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"tokenizer {shared / 'tokenizers' / qwen_tokenizer_dir.name}" in result.stdout


# ---------------------------------------------------------------- 3. from another folder

def test_from_another_folder_the_error_names_the_folder_and_a_fix_that_works(tmp_path):
    result = run_entrypoint("validate", "--config", str(CONFIG), "--no-data-report", cwd=tmp_path)
    assert result.returncode == EXIT_DATA, result.stderr[-2000:]
    (line,) = error_lines(result)
    assert f"resolved against {tmp_path}" in line and "--data-dir" in line and "project folder" in line, line
    assert "write test_file" not in result.stderr
    fixed = run_entrypoint("validate", "--config", str(CONFIG), "--no-data-report", "--data-dir", str(SAMPLE_DATA),
                           cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert f"(data sha256 {manifest_hash(SAMPLE_DATA)[:16]}...)" in fixed.stdout


def test_estimate_memory_from_another_folder_reads_no_data(tmp_path):
    result = run_entrypoint("estimate-memory", "--config", str(CONFIG), "--target", "a5000", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
