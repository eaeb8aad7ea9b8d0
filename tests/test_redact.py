"""One list of secrets (redact.SECRET_VARIABLES), masked on every path that writes text: the trainer's
log and its console stream, provenance, the model cards and the export's own files. Each secret is
planted in the environment, and in what the job writes from, and found in none of those."""

from __future__ import annotations

import json
import os
import sys

import pytest

from cli_tuner import redact
from cli_tuner.training import export as exporting, launcher, pipeline, provenance
from test_export import finished_run

PLANTED = {
    "WANDB_API_KEY": "wandb0123456789abcdefPlantedWandbKey0123",
    "HF_TOKEN": "hf_PlantedHfTokenThatMustNotLeak01234567",
    "HUGGING_FACE_HUB_TOKEN": "hf_PlantedHubTokenThatMustNotLeak7654321",
    "RUNPOD_API_KEY": "rpa_PlantedRunpodKeyThatMustNotLeak4242",
}


@pytest.fixture
def planted(monkeypatch):
    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)
    return list(PLANTED.values())


def leaks(text: str) -> list[str]:
    return [name for name, value in PLANTED.items() if value in text]


def files_holding(root) -> list[str]:
    return [f"{path}: {name}" for path in root.rglob("*") if path.is_file()
            for name, value in PLANTED.items() if value.encode() in path.read_bytes()]


def test_the_list_names_every_secret_the_job_may_hold():
    assert set(redact.SECRET_VARIABLES) == set(PLANTED)


def test_only_values_long_enough_to_be_keys_are_masked(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "x")
    monkeypatch.setenv("WANDB_API_KEY", PLANTED["WANDB_API_KEY"])
    assert redact.redact("x marks the spot, key " + PLANTED["WANDB_API_KEY"]) == "x marks the spot, key ***"


# A trainer that prints what a crashing library might: its whole environment's secrets.
LEAKY_TRAINER = f"""
import os, sys
for name in {list(PLANTED)!r}:
    print(f"{{name}}={{os.environ[name]}}", flush=True)
print("Traceback (most recent call last):", flush=True)
print("ValueError: bad key " + os.environ["HF_TOKEN"], flush=True)
sys.exit(1)
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_the_trainer_s_log_and_its_console_stream_hold_no_secret(planted, tmp_path, capsys, monkeypatch, verbose):
    monkeypatch.setattr(launcher, "command", lambda *args, **kwargs: [sys.executable, "-c", LEAKY_TRAINER])
    returncode, _ = pipeline.run_training(tmp_path / "resolved_config.yaml", tmp_path, dict(os.environ), verbose=verbose)
    captured = capsys.readouterr()
    log = (tmp_path / "train.log").read_text()
    assert returncode == 1 and "ValueError: bad key ***" in log and "HF_TOKEN=***" in log
    assert leaks(log) == [] and leaks(captured.out + captured.err) == []


def test_provenance_holds_no_secret(planted, tmp_path):
    record = {"run_id": "r", "status": "running", "resolved_config": {"hub_token": PLANTED["HF_TOKEN"]},
              PLANTED["RUNPOD_API_KEY"]: "a key that is a secret"}
    written = provenance.Provenance(tmp_path, record)
    written.update(error=f"trainer said: {PLANTED['WANDB_API_KEY']} {PLANTED['HUGGING_FACE_HUB_TOKEN']}")
    text = (tmp_path / "provenance.json").read_text()
    assert leaks(text) == [] and json.loads(text)["resolved_config"]["hub_token"] == redact.MASK
    assert written.record["resolved_config"]["hub_token"] == PLANTED["HF_TOKEN"]  # the run's own copy is untouched
    check = {"summary": {"n": 1}, "gate_failures": [f"why {PLANTED['RUNPOD_API_KEY']}"]}
    provenance.record_rescored_check(tmp_path / "provenance.json", check, "r")
    assert leaks((tmp_path / "provenance.json").read_text()) == []


def test_the_model_cards_and_the_export_files_hold_no_secret(planted, tmp_path, capsys):
    run = finished_run(tmp_path)
    for folder in (run, run / "phase2-final"):
        record = json.loads((folder / "provenance.json").read_text())
        record["resolved_config"] = {"wandb_project": PLANTED["WANDB_API_KEY"], "hub_model_id": PLANTED["HF_TOKEN"]}
        record["requested_base_model"] = PLANTED["HUGGING_FACE_HUB_TOKEN"]
        record["error"] = PLANTED["RUNPOD_API_KEY"]
        (folder / "provenance.json").write_text(json.dumps(record))
    result = exporting.export(run, exporting.ExportOptions(merge=False))
    assert (result.folder / "adapter" / "README.md").is_file()
    card = (result.folder / "adapter" / "README.md").read_text()
    assert redact.MASK in card and leaks(card) == []
    assert files_holding(result.folder) == []  # the cards, export.json, the copied provenance and eval
    assert json.loads((result.folder / "adapter" / "provenance.json").read_text())["error"] == redact.MASK
