"""Evaluation never takes a run down: a config whose eval split packs into no eval batch, while
anything needs eval metrics (metric_for_best_model, best-model tracking, early stopping, eval_steps),
is refused with exit 3 before any model loads, or its slice is grown until it holds one batch."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, data_sets, make_locked_data, run_folders

H100 = REPO / "configs" / "training_config_h100.yaml"
SMOKE_OVERLAY = REPO / "configs" / "axolotl_smoke_test.yaml"


@pytest.mark.slow
def test_a_rehearsal_of_the_h100_smoke_setup_evaluates_or_is_refused_before_loading(tmp_path):
    """The H200 run of 2026-12-04: the H100 config under sdpa (no flash-attn on the machine), 5 val
    examples; Axolotl packed them into 0 eval batches and metric_for_best_model raised KeyError."""
    from conftest import require_reference, run_entrypoint

    files = make_locked_data(tmp_path / "data", train=400, val=5, test=8)
    result = run_entrypoint("rehearse", "--config", str(H100), "--overlay", str(SMOKE_OVERLAY),
                            "--set", "attn_implementation=sdpa", *data_sets(files),
                            "--tokenizer", str(require_reference("mistral")),
                            "--output-root", str(tmp_path / "outputs"), env={"WANDB_API_KEY": ""})
    output = result.stdout + result.stderr
    if result.returncode == 3:  # refused before any model loads, in one line that names file, counts and fix
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, output[-3000:]
        assert str(files["val"]) in errors[0] and "eval batch" in errors[0] and "eval_sample_packing: false" in errors[0]
        assert "rehearsal model" not in output and "preparation" not in result.stdout
        return
    assert result.returncode == 0, output[-3000:]
    (run,) = run_folders(tmp_path / "outputs")
    history = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    assert any("eval_loss" in entry for entry in history), history
