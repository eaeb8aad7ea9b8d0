"""The command line as a user meets it: help, modes, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, data_sets


def test_help_lists_every_command_and_the_exit_codes(entrypoint):
    result = entrypoint("--help")
    assert result.returncode == 0
    for command in ("validate", "smoke", "full", "rehearse", "lock-data", "doctor", "data-report",
                    "estimate-memory", "check-checkpoint", "convert-nl2bash"):
        assert command in result.stdout
    assert "130 interrupted" in result.stdout


def test_help_and_lock_data_do_not_import_heavy_libraries():
    code = ("import sys; from cli_tuner import cli, data; cli.build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'transformers', 'axolotl') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_no_arguments_and_no_train_mode_prints_help(entrypoint):
    result = entrypoint(env={"TRAIN_MODE": ""})
    assert result.returncode == 2
    assert "usage:" in result.stdout


def test_unknown_train_mode_is_a_usage_error(entrypoint):
    result = entrypoint(env={"TRAIN_MODE": "bogus"})
    assert result.returncode == 2
    assert result.stderr.strip() == "error: TRAIN_MODE='bogus' is not a mode; use one of validate, smoke, full, rehearse"


def test_unknown_command_is_a_usage_error(entrypoint):
    result = entrypoint("train-everything")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_train_mode_selects_the_command(entrypoint, tmp_path):
    result = entrypoint(env={"TRAIN_MODE": "validate", "TRAIN_CONFIG": str(tmp_path / "absent.yaml")})
    assert result.returncode == 4
    assert "absent.yaml: config file not found" in result.stderr


def test_lock_data_cli_refuses_overwrite(entrypoint, locked_data):
    result = entrypoint("lock-data", "--data-dir", str(locked_data["train"].parent))
    assert result.returncode == 2
    assert "already exists; pass --force" in result.stderr
    assert entrypoint("lock-data", "--data-dir", str(locked_data["train"].parent), "--force").returncode == 0


@pytest.mark.parametrize("mode", ["validate", "smoke", "full", "rehearse"])
def test_one_changed_byte_stops_every_training_command_before_the_model(entrypoint, locked_data, tmp_path, mode):
    raw = bytearray(locked_data["train"].read_bytes())
    raw[5] ^= 1
    locked_data["train"].write_bytes(bytes(raw))
    outputs = tmp_path / "outputs"
    extra = [] if mode == "validate" else ["--output-root", str(outputs)]
    if mode in ("smoke", "full"):
        extra.append("--skip-checks")  # past the GPU check, which comes first (a CPU machine has none)
    result = entrypoint(mode, *data_sets(locked_data), *extra)
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {locked_data['train']}: SHA256 mismatch: manifest ")
    assert "Traceback" not in result.stderr
    assert not outputs.exists()  # no run folder, no model, nothing half-made
