"""Smoke's calibration and the decision `full` takes from it, on recorded numbers (no GPU here).

The measurement fixtures below are shaped like an RTX A5000 smoke run of the default config;
they are test inputs, not measurements. The estimator, the projection and the commands are real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_tuner import cli, config, console
from cli_tuner.batching import steps as batching_steps
from cli_tuner.checks import preflight
from cli_tuner.estimates import calibration, memory
from cli_tuner.errors import EnvironmentProblem
from cli_tuner.facts import gpus, machine as machine_facts, models
from cli_tuner.paths import CALIBRATION_FILE, MEASUREMENTS_FILE, PROVENANCE_FILE
from cli_tuner.training import pipeline
from conftest import REPO, data_sets, require_reference

A5000 = gpus.spec_for_device("NVIDIA RTX A5000", 23.57, "8.6")
QWEN = models.lookup("Qwen/Qwen2.5-Coder-7B-Instruct")
FAKE_A5000 = machine_facts.Machine(kind="cuda", device_name="NVIDIA RTX A5000", total_memory_gib=23.57,
                                   compute_capability="8.6", bf16=True, device_count=1, torch_version="2.13.0+cu128")


def measured(peak=9.4, tokens_per_micro=512, step_seconds=2.6, mean_tokens=67.0) -> dict:
    """A measurements.json as the plugin writes it (fixture numbers)."""
    return {"schema": 1, "device": "cuda", "gpu_name": "NVIDIA RTX A5000",
            "gpu_memory": {"peak_device_gib": peak, "peak_allocated_gib": peak - 1.5, "peak_reserved_gib": peak - 0.5,
                           "train_peak_reserved_gib": peak - 0.5, "load_peak_reserved_gib": peak - 2.0,
                           "total_gib": 23.57, "context_gib": 0.5},
            "steps_measured": 10, "step_seconds": {"median_after_first": step_seconds},
            "tokens": {"real": 2600, "processed": 20480, "trainable": 700},
            "processed_tokens_per_second": 4 * tokens_per_micro / step_seconds, "real_tokens_per_second": 100.0,
            "mfu": 0.12, "max_tokens_per_micro_batch": tokens_per_micro, "micro_batches_per_step": 4,
            "dataset": {"examples": 10, "mean_tokens": mean_tokens, "max_tokens": 90}}


def loaded(*sets: str) -> config.LoadedConfig:
    return config.load(REPO / "configs/axolotl_config.yaml", sets=list(sets))


def entry_for(full, **overrides):
    return calibration.record(full, QWEN, A5000, measured(**overrides), "d" * 64, "smoke-x", smoke_wall_seconds=120.0)


def test_the_entry_compares_measured_with_the_estimate_for_the_same_batch():
    full = loaded()
    entry = entry_for(full)
    assert entry["key"] == calibration.entry_key(calibration.config_key(full), "d" * 64, "RTX A5000")
    assert entry["estimated"]["peak_gib"] == pytest.approx(memory.estimate(full.axolotl, QWEN, A5000).total_gib, abs=1e-3)
    assert entry["measured"]["overhead_seconds"] == pytest.approx(120.0 - 2.6 * 10)
    text = console.to_text(calibration.comparison(entry))
    assert "peak GPU memory" in text and "9.40" in text and "MFU" in text
    # each phase's measured peak beside its estimate: loading 7.4 + 0.5 context, training 8.9 + 0.5
    assert "loading peak, device" in text and "7.90" in text and "training peak, device" in text and "9.40" in text
    assert entry["estimated"]["load_peak_gib"] > entry["estimated"]["train_peak_gib"]


def test_price_and_headroom_do_not_change_the_calibration_key():
    plain = calibration.config_key(loaded())
    assert calibration.config_key(loaded("cli_tuner.price_per_hour=0.27", "cli_tuner.memory_headroom=0.2")) == plain
    assert calibration.config_key(loaded("micro_batch_size=2")) != plain


def test_a_measured_peak_with_headroom_fits_and_the_time_and_cost_are_projected():
    full = loaded()
    decision = calibration.decide(entry_for(full), full, QWEN, A5000, 220, headroom=0.05, price_per_hour=0.27)
    assert decision.fits
    # padded to sequence_len: smoke's micro-batch is the full run's longest, so nothing is added
    assert decision.projected_peak_gib == pytest.approx(9.4)
    assert decision.steps == 500                       # max_steps of the config
    assert decision.projected_seconds == pytest.approx(500 * 2.6 + 94.0)
    assert decision.projected_cost == pytest.approx((500 * 2.6 + 94.0) / 3600 * 0.27)
    assert "~23 min for 500 steps, ~0.10 at 0.27/h" in decision.time_line()


def test_too_little_headroom_refuses_with_exit_5_and_one_line():
    full = loaded()
    decision = calibration.decide(entry_for(full, peak=22.9), full, QWEN, A5000, 220, headroom=0.05, price_per_hour=None)
    assert not decision.fits
    with pytest.raises(EnvironmentProblem) as caught:
        calibration.raise_unless_fits(decision)
    assert caught.value.exit_code == 5
    message = str(caught.value)
    assert "\n" not in message and "will not fit" in message and "22.90 GiB" in message and "headroom" in message


def test_a_shorter_smoke_batch_is_projected_to_the_full_runs_longest_with_the_estimators_growth():
    # padded to the batch's longest: smoke's rows were 96 tokens, the full run's can reach 4096
    full = loaded("pad_to_sequence_len=false", "sequence_len=4096")

    def training(seq):
        return sum(memory.estimate({**full.axolotl, "sequence_len": seq}, QWEN, A5000).parts.values())

    entry = entry_for(full, tokens_per_micro=96)
    decision = calibration.decide(entry, full, QWEN, A5000, 220, headroom=0.05, price_per_hour=None)
    growth = training(4096) - training(96)
    assert growth > 1.0
    # the measured training peak (reserved 8.9 + context 0.5) grows; loading's does not
    assert decision.projected_peak_gib == pytest.approx(9.4 + growth, abs=1e-3)
    assert "smoke's was 96" in decision.memory_line()


def test_packed_full_runs_count_steps_from_smokes_tokens_per_example():
    full = loaded("sample_packing=true", "max_steps=null", "num_epochs=3", "sequence_len=2048")
    entry = entry_for(full, tokens_per_micro=2048, mean_tokens=66.0)
    steps = calibration.full_steps(full.axolotl, 12_607, entry)
    assert steps == 3 * -(-12_607 * 66 // int(2048 * 4 * batching_steps.PACKED_FILL))


def test_settings_defaults_and_the_environment_price(monkeypatch):
    monkeypatch.delenv("GPU_PRICE_PER_HOUR", raising=False)
    assert calibration.settings(loaded()) == (0.05, None)
    monkeypatch.setenv("GPU_PRICE_PER_HOUR", "2.39")
    assert calibration.settings(loaded()) == (0.05, 2.39)
    assert calibration.settings(loaded("cli_tuner.price_per_hour=0.5")) == (0.05, 0.5)  # --set wins over the stand-in


# ----------------------------------------------------------------------------- through the commands

@pytest.fixture
def pod(monkeypatch, tmp_path):
    """An RTX A5000 pod as the commands see it; training replaced by a recorded smoke run."""
    monkeypatch.setattr(machine_facts, "detect", lambda: FAKE_A5000)
    monkeypatch.setattr(preflight, "environment_checks", lambda *a, **k: ([], None))
    calls = []

    def fake_run(plan, options, rehearsal_options=None):
        calls.append(plan.mode)
        run_dir = Path(options.output_root) / f"{plan.mode}-run"
        run_dir.mkdir(parents=True, exist_ok=True)
        if plan.mode == "smoke":
            (run_dir / MEASUREMENTS_FILE).write_text(json.dumps(measured()))
            (run_dir / PROVENANCE_FILE).write_text(json.dumps({"wall_seconds": 120.0}))
        return run_dir

    monkeypatch.setattr(pipeline, "run", fake_run)
    return calls


def tokenizer_sets() -> list[str]:
    """The training modes run validate's data checks first, with the config's real tokenizer."""
    return ["--set", f"tokenizer_config={require_reference('qwen')}"]


def test_smoke_saves_the_calibration_and_full_reads_it(pod, locked_data, tmp_path, capsys):
    root = tmp_path / "out"
    common = ["--config", str(REPO / "configs/axolotl_config.yaml"), *data_sets(locked_data), *tokenizer_sets(),
              "--output-root", str(root)]
    assert cli.main(["smoke", *common]) == 0
    printed = capsys.readouterr().out
    assert "smoke measured vs estimated" in printed and "calibration saved" in printed
    entries = json.loads((root / CALIBRATION_FILE).read_text())
    assert len(entries) == 1 and next(iter(entries.values()))["measured"]["peak_device_gib"] == 9.4

    assert cli.main(["full", *common, "--set", "cli_tuner.price_per_hour=0.27"]) == 0
    printed = capsys.readouterr().out
    assert "smoke measured 9.40 GiB peak on RTX A5000" in printed
    assert "projected wall time: ~23 min for 500 steps, ~0.10 at 0.27/h" in printed
    assert pod == ["smoke", "full"]

    # a measured peak the headroom cannot leave free: refused before training, exit 5, one line
    entries = json.loads((root / CALIBRATION_FILE).read_text())
    next(iter(entries.values()))["measured"]["peak_device_gib"] = 14.0
    (root / CALIBRATION_FILE).write_text(json.dumps(entries))
    assert cli.main(["full", *common, "--set", "cli_tuner.memory_headroom=0.45"]) == 5
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "will not fit" in errors[0] and "limit 12.96 GiB with 45% headroom" in errors[0]
    assert pod == ["smoke", "full"]  # training never started


def test_full_without_a_calibration_says_so_and_goes_on(pod, locked_data, tmp_path, capsys):
    common = ["--config", str(REPO / "configs/axolotl_config.yaml"), *data_sets(locked_data), *tokenizer_sets(),
              "--output-root", str(tmp_path / "out")]
    assert cli.main(["full", *common]) == 0
    assert "no smoke calibration" in capsys.readouterr().out and pod == ["full"]
