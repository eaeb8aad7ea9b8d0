"""The training modes run validate's data checks before any model loads, cached by data hash;
`rehearse --set max_steps` is honoured, never silently replaced. No training runs here."""

from __future__ import annotations

import json

import pytest

from cli_tuner import cli, config
from cli_tuner.checks import preflight
from cli_tuner.commands import rehearse, smoke, training_mode
from cli_tuner.training import slices
from cli_tuner.errors import DataError, UsageError
from conftest import REPO, data_sets, make_locked_data, run_folders

CONFIG = REPO / "configs" / "axolotl_config.yaml"


def dangerous_data(folder):
    files = make_locked_data(folder, train=12, val=4, test=4)
    lines = files["train"].read_text().splitlines()
    lines[3] = json.dumps({"messages": [{"role": "user", "content": "wipe the disk"},
                                        {"role": "assistant", "content": "sudo rm -rf /"}]})
    files["train"].write_text("\n".join(lines) + "\n")
    from cli_tuner import data
    data.lock(folder, force=True)
    return files


def planned(files, tokenizer_dir, *sets, allow=False):
    loaded = config.load(CONFIG, sets=[*[s for s in data_sets(files) if s != "--set"],
                                       f"tokenizer_config={tokenizer_dir}", *sets], allow_dangerous_data=allow)
    return preflight.prepare(smoke.SPEC, loaded, check_environment=False)


def test_smoke_stops_on_dangerous_data_before_any_model_exit_3(capsys, tmp_path, qwen_tokenizer_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = dangerous_data(tmp_path / "data")
    outputs = tmp_path / "outputs"
    code = cli.main(["smoke", "--config", str(CONFIG), *data_sets(files), "--set", f"tokenizer_config={qwen_tokenizer_dir}",
                     "--output-root", str(outputs), "--skip-checks"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 3
    print(last)
    assert last.startswith(f"error: data report: {files['train']}:4: dangerous command"), last
    assert not outputs.exists() or run_folders(outputs) == []  # no run folder, no model


def test_allow_dangerous_data_means_it_in_training_modes(tmp_path, qwen_tokenizer_dir):
    files = dangerous_data(tmp_path / "data")
    with pytest.raises(DataError, match="dangerous"):
        training_mode.check_data(planned(files, qwen_tokenizer_dir), str(tmp_path / "out"), None)
    report = training_mode.check_data(planned(files, qwen_tokenizer_dir, allow=True), str(tmp_path / "out"), None)
    assert not report.errors and any("dangerous" in w for w in report.warnings)


def test_data_checks_are_cached_by_data_hash_and_settings(tmp_path, qwen_tokenizer_dir, monkeypatch):
    files = make_locked_data(tmp_path / "data", train=12, val=4, test=4)
    out = tmp_path / "out"
    plan = planned(files, qwen_tokenizer_dir)
    first, cached = preflight.check_training_data(plan, out)
    assert not cached and list((out / "prepared" / preflight.DATA_CHECKS_DIR).glob("*.json"))
    calls = []
    monkeypatch.setattr("cli_tuner.checks.data_report.check", lambda *a, **k: calls.append(1))
    again, cached = preflight.check_training_data(planned(files, qwen_tokenizer_dir), out)
    assert cached and calls == [] and again.train_lengths == first.train_lengths and again.warnings == first.warnings
    # A setting the report depends on is a new key: checked again.
    monkeypatch.undo()
    _, cached = preflight.check_training_data(planned(files, qwen_tokenizer_dir, "sequence_len=256"), out)
    assert not cached


def test_smoke_slice_grows_to_one_optimizer_step(tmp_path, qwen_tokenizer_dir):
    files = make_locked_data(tmp_path / "data", train=12, val=4, test=4)
    loaded = config.load(CONFIG, overlays=list(smoke.OVERLAYS),
                         sets=["gradient_accumulation_steps=12", *[s for s in data_sets(files) if s != "--set"],
                               f"tokenizer_config={qwen_tokenizer_dir}"])
    plan = preflight.prepare(smoke.SPEC, loaded, check_environment=False)
    report = training_mode.check_data(plan, str(tmp_path / "out"), None)
    slices.size_from_settings(plan.loaded, report)
    assert plan.loaded.settings.train_examples == 12
    plan.loaded.axolotl["gradient_accumulation_steps"] = 13
    with pytest.raises(DataError, match=r"train.jsonl: 12 examples \(\d+ tokens\) are fewer than one optimizer "
                                       r"step of .*axolotl_config.yaml takes \(13 examples\); smoke needs more"):
        slices.size_from_settings(plan.loaded, report)


def loaded_with(*sets):
    return config.load(CONFIG, sets=list(sets))


def test_rehearse_steps_come_from_set_max_steps_when_no_steps_flag():
    assert rehearse.choose_steps(None, loaded_with("max_steps=200")) == (200, "--set max_steps")
    assert rehearse.choose_steps(None, loaded_with()) == (rehearse.DEFAULT_STEPS, "the default; --steps N to change")
    assert rehearse.choose_steps(7, loaded_with()) == (7, "--steps")
    assert rehearse.choose_steps(7, loaded_with("max_steps=7")) == (7, "--steps")


def test_rehearse_refuses_two_different_lengths_exit_2(capsys):
    code = cli.main(["rehearse", "--steps", "3", "--set", "max_steps=200"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and last == ("error: --steps 3 and --set max_steps=200 disagree; give the rehearsal's "
                                  "length once")
    with pytest.raises(UsageError, match="positive step count"):
        rehearse.choose_steps(None, loaded_with("max_steps=0"))
