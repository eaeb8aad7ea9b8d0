"""End to end: `rehearse` trains through the real `axolotl train` on CPU and leaves a complete run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from cli_tuner import data
from cli_tuner.config import canonical_hash
from conftest import run_folders

pytestmark = pytest.mark.slow

PROVENANCE_KEYS = {
    "schema", "run_id", "mode", "status", "error", "base_model", "requested_base_model", "config",
    "resolved_config", "data", "versions", "device", "image", "git_commit", "started_utc", "ended_utc",
    "wall_seconds", "steps", "metrics", "tracking", "rehearsal", "checkpoint_check",
}


@pytest.fixture
def rehearsal(rehearsed):
    """The session's shared run (conftest.rehearsed), as (result, files, runs, tokenizer)."""
    return rehearsed.result, rehearsed.files, [rehearsed.run], rehearsed.tokenizer


def test_rehearse_succeeds_and_says_which_tokenizer(rehearsal):
    result, _, runs, tokenizer = rehearsal
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    if tokenizer:
        assert f"rehearsal tokenizer: real tokenizer from {tokenizer}" in result.stdout
    else:
        assert ("rehearsal tokenizer: small local BPE tokenizer" in result.stdout
                and "pass --tokenizer DIR to use it" in result.stdout), result.stdout[-3000:]
    assert "W&B: no WANDB_API_KEY, logging offline" in result.stdout or "W&B: WANDB_MODE=offline" in result.stdout
    assert runs[0].name.startswith("rehearse-")


def test_checkpoints_and_adapter_exist(rehearsal):
    _, _, (run,), _ = rehearsal
    checkpoint = run / "checkpoint-2"
    for name in ("adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "trainer_state.json"):
        assert (checkpoint / name).is_file(), name
    adapter = json.loads((run / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert adapter["r"] == 8 and adapter["lora_alpha"] == 16
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 2


def test_provenance_is_complete_and_honest(rehearsal):
    _, files, (run,), _ = rehearsal
    record = json.loads((run / "provenance.json").read_text())
    assert PROVENANCE_KEYS <= set(record), PROVENANCE_KEYS - set(record)
    assert record["status"] == "succeeded" and record["error"] is None and record["mode"] == "rehearse"
    assert record["steps"] == {"planned": 2, "completed": 2}
    assert isinstance(record["metrics"]["train_loss"], float) and isinstance(record["metrics"]["eval_loss"], float)
    assert record["requested_base_model"] == "Qwen/Qwen2.5-Coder-7B-Instruct"
    assert record["rehearsal"]["architecture"] == "qwen2"
    from test_config_matrix import ALLOWED
    assert {d["key"] for d in record["rehearsal"]["divergences"]} == ALLOWED[("axolotl_config.yaml", None)]
    assert record["device"]["type"] == "cpu"
    for package in ("python", "torch", "axolotl", "transformers", "peft", "bitsandbytes", "accelerate"):
        assert record["versions"][package], package
    assert record["versions"]["axolotl"] == "0.19.0" and record["versions"]["torch"].startswith("2.13.0")
    manifest = json.loads((files["train"].parent / data.MANIFEST_NAME).read_text())
    assert record["data"]["files"][str(files["train"])]["sha256"] == manifest["files"]["train.jsonl"]["sha256"]
    resolved = yaml.safe_load((run / "resolved_config.yaml").read_text())
    assert canonical_hash(resolved) == record["config"]["resolved_sha256"]
    assert resolved == record["resolved_config"]
    assert resolved["output_dir"] == str(run)
    assert record["tracking"]["wandb"] == "offline"
    assert record["started_utc"] <= record["ended_utc"] and record["wall_seconds"] > 0
    # The tokenized data is cached on the output volume, keyed by the data hash.
    prepared = run.parent / "prepared" / record["data"]["data_sha256"][:16]
    assert resolved["dataset_prepared_path"] == str(prepared) and any(prepared.iterdir())


def own_splits_only(record: dict, files: dict) -> None:
    """The run read the user's three locked splits and nothing else, each with its hash."""
    manifest = json.loads(data.manifest_path(files["train"].parent).read_text())
    assert record["data"]["data_sha256"] == manifest["data_sha256"]
    assert record["data"]["files"] == {str(files[split]): {"sha256": manifest["files"][f"{split}.jsonl"]["sha256"],
                                                           "lines": manifest["files"][f"{split}.jsonl"]["lines"]}
                                       for split in ("train", "val", "test")}
    assert record["data"]["test_file"] == str(files["test"])
    assert [d["path"] for d in record["resolved_config"]["datasets"]] == [str(files["train"])]
    (val,) = [Path(d["path"]) for d in record["resolved_config"]["test_datasets"]]
    # a rehearsal evaluates on the first examples of the user's val split, copied into the run folder
    assert val == files["val"] or files["val"].read_text().startswith(val.read_text()), val


def test_a_data_dir_of_your_own_is_all_the_run_trains_and_evaluates_on(rehearsal):
    _, files, (run,), _ = rehearsal
    own_splits_only(json.loads((run / "provenance.json").read_text()), files)
    evaluation = json.loads((run / "phase2-final" / "eval.json").read_text())
    assert evaluation["summary"]["test_file"] == str(files["test"])
    assert evaluation["summary"]["test_file_sha256"] == data.sha256_file(files["test"])


def test_the_plugin_measures_the_run_without_gpu_memory_on_cpu(rehearsal):
    """measurements.json from inside the real `axolotl train`: GPU fields null, tokens and time real."""
    _, _, (run,), _ = rehearsal
    record = json.loads((run / "measurements.json").read_text())
    assert record["device"] == "cpu" and record["gpu_memory"] is None and "no CUDA" in record["gpu_memory_note"]
    resolved = yaml.safe_load((run / "resolved_config.yaml").read_text())
    assert record["steps_measured"] == resolved["max_steps"]
    assert record["micro_batches_per_step"] == resolved["gradient_accumulation_steps"]  # the config's own
    assert 0 < record["tokens"]["real"] < record["tokens"]["processed"]   # padded to 512: real tokens are fewer
    assert record["tokens"]["counted_by"] == ["attention_mask"]
    assert record["real_tokens_per_second"] > 0 and record["step_seconds"]["median_after_first"] > 0
    assert record["dataset"]["examples"] > 0
    summary = json.loads((run / "provenance.json").read_text())["measurements"]
    assert summary["real_tokens_per_second"] == record["real_tokens_per_second"] and summary["peak_device_gib"] is None


def test_phase2_final_and_checkpoint_check(rehearsal):
    _, _, (run,), _ = rehearsal
    final = run / "phase2-final"
    assert (final / "adapter_model.safetensors").is_file() and (final / "eval.json").is_file()
    evaluation = json.loads((final / "eval.json").read_text())
    record = json.loads((final / "provenance.json").read_text())
    assert record["checkpoint_check"]["summary"] == evaluation["summary"]
    assert record["checkpoint_check"]["gated"] is False


def test_full_mode_checks_the_final_adapter_and_enforces_the_gate(rehearsal, tmp_path):
    """`full` on CPU with the rehearsal's tiny model as a local base: same code path as on a pod.

    The gate must fail with exit 6 while the run itself is recorded as trained, with the check's summary in provenance and phase2-final/.
    """
    from conftest import run_entrypoint

    _, files, (run,), _ = rehearsal
    cpu = ["load_in_4bit=false", "adapter=lora", "bnb_config_kwargs=null", "bf16=false", "tf32=false",
           "optimizer=adamw_torch", "gradient_checkpointing=false", "max_steps=2", "warmup_steps=1",
           "save_steps=2", "eval_steps=2", "gradient_accumulation_steps=1", f"base_model={run / 'rehearsal-model'}",
           "cli_tuner.target=null",
           # An unreachable bar (the adapter 100 points above the base model), so the gate's failure
           # path runs whatever the random model writes.
           "cli_tuner.min_margin_over_base=1.0", "cli_tuner.min_syntax_rate=1.0"]
    sets = [arg for pair in (("--set", s) for s in cpu) for arg in pair]
    result = run_entrypoint("full", *sets, "--skip-checks", "--output-root", str(tmp_path / "outputs"),
                            env={"TRAIN_DATA_DIR": str(files["train"].parent)}, timeout=1800)  # trains, then evaluates twice
    assert result.returncode == 6, result.stdout[-3000:] + result.stderr[-3000:]
    assert "checkpoint check failed" in result.stderr.strip().splitlines()[-1]
    (full_run,) = run_folders(tmp_path / "outputs")
    record = json.loads((full_run / "provenance.json").read_text())
    # Trained, but not a success: the gate's failure is the run's final status, in both copies.
    assert record["status"] == "failed_gate" and record["mode"] == "full"
    own_splits_only(record, files)  # gated on the user's own test split
    assert record["error"].startswith("checkpoint check failed: ")
    assert json.loads((full_run / "phase2-final" / "provenance.json").read_text())["status"] == "failed_gate"
    assert [a["outcome"] for a in json.loads((full_run / "attempts.json").read_text())] == ["failed_gate"]
    assert record["checkpoint_check"]["gated"] is True and record["checkpoint_check"]["gate_failures"]
    assert (full_run / "phase2-final" / "adapter_model.safetensors").is_file()
    assert (full_run / "phase2-final" / "eval.json").is_file()
    # Started again (a RunPod restart, unattended, no key): already finished, never retrained.
    again = run_entrypoint("full", "--data-dir", str(files["train"].parent), *sets, "--skip-checks", "--unattended",
                           "--output-root", str(tmp_path / "outputs"), env={"RUNPOD_POD_ID": "pod123", "RUNPOD_API_KEY": ""})
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1] == (f"error: {full_run}: already finished (status failed_gate); its "
                                                     f"outputs are kept: pass --new-run to train again")
    assert "on finish (already finished): cannot stop pod pod123: RUNPOD_API_KEY is not set" in again.stdout


# The job's own lines (checks, divergences, bars, evaluation); Axolotl's output, hundreds of lines, goes to train.log
LINE_BUDGET = 75


def test_the_console_shows_one_bar_per_phase_and_axolotls_log_goes_to_train_log(rehearsal):
    """Off a terminal (captured here, like CI or `docker logs`): milestone lines, no carriage
    returns, none of Axolotl's banner, config dump or library warnings; train.log has them all."""
    result, _, (run,), _ = rehearsal
    console_text = result.stdout + result.stderr
    assert len(console_text.splitlines()) < LINE_BUDGET, console_text
    assert "\r" not in result.stdout
    for line in ("[cli-tuner] data check: passed", "[cli-tuner] preparation: started",
                 "[cli-tuner] preparation: done", "[cli-tuner] training: started, 2 steps",
                 "[cli-tuner] training: step 2/2, loss",
                 "[cli-tuner] checkpoint check: 8 prompts answered"):
        assert line in result.stdout, line
    # milestones come from polling progress.json, so a fast step may pass unseen; at most one per step
    milestones = re.findall(r"^\[cli-tuner\] training: (1)/2 steps \((\d+)%\), loss [\d.]+", result.stdout, re.M)
    assert len(milestones) <= 1 and all(int(p) == int(s) * 50 for s, p in milestones), result.stdout
    for axolotl_only in ("#@@", '"axolotl_config_path"', "[axolotl.train]", "Tokenizing Prompts", "wandb:",
                         "Loading weights"):
        assert axolotl_only not in console_text, axolotl_only
    log = (run / "train.log").read_text()
    for line in ("#@@", '"axolotl_config_path"', "[axolotl.train] Starting trainer", "Tokenizing Prompts"):
        assert line in log, line
    progress = json.loads((run / "progress.json").read_text())
    assert progress["trainable_tokens_per_second"] > 0 and progress["step"] == 2


def test_a_run_interrupted_in_its_last_step_resumes_without_training_past_its_limit(rehearsal, tmp_path):
    """Interrupted in step 2 of 2 (a Ctrl-C or a pod's SIGTERM during the last step): checkpoint-2 is the
    whole training. Started again, the job must not hand it to the trainer, which always runs one more
    step on a resume (transformers checks the step limit only after a step), but publish and check it."""
    import shutil

    from conftest import run_entrypoint

    result, files, (run,), tokenizer = rehearsal
    assert result.returncode == 0
    copy = tmp_path / "outputs" / run.name
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "phase2-final")  # the run's own final files, not its checkpoint's
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        (copy / name).unlink()
    record = json.loads((copy / "provenance.json").read_text())
    record.update(status="interrupted", error="signal 15 at step 2")
    (copy / "provenance.json").write_text(json.dumps(record))
    chosen = ["--tokenizer", str(tokenizer)] if tokenizer else []
    resumed = run_entrypoint("rehearse", "--data-dir", str(files["train"].parent), *chosen, "--output-root", str(tmp_path / "outputs"),
                             env={"WANDB_API_KEY": "", "HF_HUB_OFFLINE": "1"})
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"{run.name}: resuming from checkpoint-2 (status was interrupted)" in resumed.stdout
    assert "step 3/2" not in resumed.stdout
    after = json.loads((copy / "provenance.json").read_text())
    assert after["status"] == "succeeded" and after["steps"] == {"planned": 2, "completed": 2}
    assert after["resumed_from"] == "checkpoint-2"
    assert not (copy / "checkpoint-3").exists()
    assert (copy / "phase2-final" / "adapter_model.safetensors").is_file()
    progress = json.loads((copy / "progress.json").read_text())
    assert progress["step"] == 2 and progress["train_end"] is True


def test_a_later_check_of_the_run_writes_beside_its_eval_record(rehearsal):
    """check-checkpoint pointed at the run folder checks phase2-final and writes eval-2.json there: the
    run's eval.json (the one provenance summarises) is kept, and no second eval.json lands in the run."""
    from conftest import run_entrypoint

    result, files, (run,), _ = rehearsal
    final = run / "phase2-final"
    before = (final / "eval.json").read_bytes()
    assert json.loads(before)["run_status"] == json.loads((run / "provenance.json").read_text())["status"] == "succeeded"
    check = run_entrypoint("check-checkpoint", "--checkpoint", str(run), "--sample-size", "2", "--max-new-tokens", "8",
                           "--no-execution", "--min-syntax-rate", "0", "--min-command-rate", "0", "--allow-dangerous")
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    assert f"wrote {final / 'eval-2.json'}" in check.stdout
    assert (final / "eval.json").read_bytes() == before and not (run / "eval.json").exists()
    assert json.loads((final / "eval-2.json").read_text())["summary"]["n"] == 2
