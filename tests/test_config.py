"""Config layering (overlays, --set), and validation stricter than Axolotl's.

Validation runs in-process through `cli.main`, so Axolotl is imported once for the whole module.
"""

from __future__ import annotations

import re

import pytest
import yaml

from cli_tuner import cli
from cli_tuner.config import apply_set, canonical_hash, deep_merge, load
from cli_tuner.errors import ConfigError, UsageError
from conftest import REPO, data_sets

A5000 = str(REPO / "configs" / "axolotl_config.yaml")


def test_deep_merge_merges_tables_and_replaces_lists():
    base = {"a": {"x": 1, "y": 2}, "l": [1, 2], "k": 1}
    merged = deep_merge(base, {"a": {"y": 3}, "l": [9]})
    assert merged == {"a": {"x": 1, "y": 3}, "l": [9], "k": 1}
    assert base["a"]["y"] == 2  # inputs untouched


@pytest.mark.parametrize("assignment, key, value", [
    ("micro_batch_size=2", "micro_batch_size", 2),
    ("bf16=false", "bf16", False),
    ("learning_rate=1e-4", "learning_rate", 1e-4),
    ("lora_target_modules=[q_proj, v_proj]", "lora_target_modules", ["q_proj", "v_proj"]),
    ("wandb_project=my run", "wandb_project", "my run"),
])
def test_set_values_are_yaml_typed(assignment, key, value):
    config = {}
    apply_set(config, assignment)
    assert config[key] == value


def test_set_reaches_nested_tables_and_list_items():
    config = {"datasets": [{"path": "a.jsonl"}], "cli_tuner": {"target": "a5000"}}
    apply_set(config, "datasets.0.path=b.jsonl")
    apply_set(config, "cli_tuner.target=h100")
    apply_set(config, "bnb_config_kwargs.bnb_4bit_quant_type=fp4")
    assert config["datasets"][0]["path"] == "b.jsonl"
    assert config["cli_tuner"]["target"] == "h100"
    assert config["bnb_config_kwargs"] == {"bnb_4bit_quant_type": "fp4"}


@pytest.mark.parametrize("assignment", ["no_equals_sign", "datasets.5.path=x"])
def test_bad_set_is_a_usage_error(assignment):
    with pytest.raises(UsageError):
        apply_set({"datasets": [{}]}, assignment)


def test_overlay_then_set_order_and_namespace_split(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("micro_batch_size: 3\ncli_tuner: {train_examples: 10}\n")
    loaded = load(A5000, overlays=[overlay], sets=["micro_batch_size=5"])
    assert loaded.axolotl["micro_batch_size"] == 5
    assert "cli_tuner" not in loaded.axolotl
    assert loaded.settings.model_dump(exclude_unset=True) == {"target": "a5000", "test_file": "data/processed/test.jsonl",
                                                              "train_examples": 10}
    assert loaded.settings.source("train_examples") == f"{overlay}: cli_tuner.train_examples"
    assert loaded.target == "a5000"


def test_missing_validation_file_falls_back_to_a_90_10_split():
    loaded = load(A5000, sets=["test_datasets=null"])
    assert loaded.axolotl["val_set_size"] == 0.1
    assert "val_set_size" not in load(A5000).axolotl


def test_hash_ignores_key_order():
    assert canonical_hash({"a": 1, "b": [1, 2]}) == canonical_hash({"b": [1, 2], "a": 1})


def test_config_that_is_not_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_model: x\nlora_r: [8\nlora_alpha: 16\n")
    with pytest.raises(ConfigError, match=rf"{bad}:\d+: not valid YAML"):
        load(bad)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load("configs/nope.yaml")


def test_smoke_overlay_is_only_the_documented_differences():
    overlay = yaml.safe_load((REPO / "configs" / "axolotl_smoke_test.yaml").read_text())
    assert overlay["max_steps"] == 10 and overlay["save_steps"] == 5 and overlay["eval_steps"] == 5
    assert overlay["logging_steps"] == 1
    assert overlay["cli_tuner"] == {"train_examples": 10, "val_examples": 5}
    smoke = load(A5000, overlays=[REPO / "configs" / "axolotl_smoke_test.yaml"]).axolotl
    full = load(A5000).axolotl
    changed = {k for k in set(smoke) | set(full) if smoke.get(k) != full.get(k)}
    assert changed <= set(overlay) - {"cli_tuner"}


# ---------------------------------------------------------------- validate: one bad case per check

def validate(capsys, locked_data, *sets: str, target: str | None = None, extra: tuple = ()) -> tuple[int, str]:
    argv = ["validate", "--config", A5000, "--no-data-report", *data_sets(locked_data)]
    for assignment in sets:
        argv += ["--set", assignment]
    argv += ["--target", target] if target else ["--set", "cli_tuner.target=null"]
    code = cli.main(argv + list(extra))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_the_default_config_passes(capsys, locked_data):
    code, output = validate(capsys, locked_data)
    assert code == 0, output
    assert "validate: OK" in output


@pytest.mark.parametrize("sets, exit_code, expected", [
    (["lora_alpah=16"], 4, "lora_alpah: unknown key, Axolotl would drop it silently; did you mean `lora_alpha`?"),
    (["datasets.0.feild_messages=messages"], 4, "datasets[0].feild_messages: unknown dataset key; did you mean `field_messages`?"),
    (["flash_attention=true", "attn_implementation=null"], 4, "flash_attention: "),
    (["learning_rate=abc"], 4, "learning_rate: could not convert string to float: 'abc' (got 'abc')"),
    (["micro_batch_size=0"], 4, "micro_batch_size: must be a positive integer, got 0"),
    (["gradient_accumulation_steps=-1"], 4, "gradient_accumulation_steps: must be a positive integer"),
    (["max_steps=0"], 4, "max_steps: must be greater than 0"),
    (["learning_rate=0"], 4, "learning_rate: must be greater than 0"),
    (["warmup_steps=500"], 4, "warmup_steps: 500 is not smaller than the 500 total steps"),
    (["save_steps=800"], 4, "save_steps: 800 never fires before the run ends at step 500"),
    (["eval_steps=501"], 4, "eval_steps: 501 never fires"),
    (["lora_target_modules=[q_proj, qkv_proj]"], 4, "lora_target_modules: 'qkv_proj' is not a module of qwen2"),
    (["trust_remote_code=true"], 4, "trust_remote_code: true runs Python from the model repository; pass --allow-trust-remote-code"),
    (["sample_packing=true", "attn_implementation=xformers"], 4, "sample_packing: attention xformers would let packed examples see each other"),
])
def test_each_check_catches_its_bad_case(capsys, locked_data, sets, exit_code, expected):
    code, output = validate(capsys, locked_data, *sets)
    assert code == exit_code, output
    assert expected in output
    assert "Traceback" not in output
    assert output.strip().splitlines()[-1].startswith("error: ")


def test_deprecated_key_names_its_replacement(capsys, locked_data):
    code, output = validate(capsys, locked_data, "flash_attention=true", "attn_implementation=null")
    assert code == 4
    assert "attn_implementation: flash_attention_2" in output


def test_trust_remote_code_with_explicit_flag_passes(capsys, locked_data):
    code, output = validate(capsys, locked_data, "trust_remote_code=true", extra=("--allow-trust-remote-code",))
    assert code == 0, output


def test_all_problems_are_listed_before_stopping(capsys, locked_data):
    code, output = validate(capsys, locked_data, "lora_alpah=16", "micro_batch_size=0")
    assert code == 4
    assert "lora_alpah" in output and "micro_batch_size" in output and "(and 1 more above)" in output


def test_dataset_path_that_does_not_exist_is_a_data_error(capsys, locked_data):
    code, output = validate(capsys, locked_data, f"test_datasets.0.path={locked_data['val'].parent / 'nope.jsonl'}")
    assert code == 3
    assert "nope.jsonl does not exist" in output


def test_format_the_config_expects_vs_what_the_file_holds(capsys, tmp_path):
    from cli_tuner import data

    folder = tmp_path / "text"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "list files: ls"}\n' * 20)
    data.lock(folder)
    code = cli.main(["validate", "--config", A5000, "--no-data-report", "--set", "test_datasets=null",
                     "--set", f"datasets.0.path={folder / 'train.jsonl'}", "--set", "cli_tuner.test_file=null",
                     "--set", "cli_tuner.target=null"])
    output = capsys.readouterr().err
    assert code == 3
    assert "type chat_template expects 'messages' records" in output


def test_unresolvable_base_model_offline(capsys, locked_data):
    code, output = validate(capsys, locked_data, "base_model=nobody/no-such-model-7b")
    assert code == 4
    assert "cannot be resolved offline" in output


def test_hash_mismatch_stops_validate_first(capsys, locked_data):
    with locked_data["val"].open("a") as handle:
        handle.write("\n ")
    code, output = validate(capsys, locked_data, "lora_alpah=1")
    assert code == 3
    assert "SHA256 mismatch" in output and "lora_alpah" not in output


@pytest.mark.parametrize("target, sets, expected", [
    ("m4", [], "load_in_4bit: 4-bit bitsandbytes quantization is not supported on Apple M4"),
    ("t4", ["attn_implementation=flash_attention_2"], "attn_implementation: Flash Attention cannot run on Tesla T4"),
    ("t4", [], "bf16: Tesla T4 has no bf16 support; use fp16: true"),
])
def test_target_hardware_checks(capsys, locked_data, target, sets, expected):
    code, output = validate(capsys, locked_data, *sets, target=target)
    assert code == 5, output
    assert expected in output


@pytest.mark.parametrize("config, tokenizer", [
    ("axolotl_config.yaml", "qwen"),
    ("training_config_h100.yaml", "mistral"),
    ("training_config_m4.yaml", "mistral"),
])
def test_every_shipped_config_validates_with_data_report_and_memory(capsys, config, tokenizer):
    from conftest import require_reference

    tokenizer_dir = require_reference(tokenizer)
    code = cli.main(["validate", "--config", str(REPO / "configs" / config), "--tokenizer", str(tokenizer_dir)])
    output = capsys.readouterr()
    assert code == 0, output.err
    assert "validate: OK" in output.out
    assert "tokens min/med/p95/max" in output.out  # the token statistics
    assert "fits" in output.out and "expected peak" in output.out and "upper bound" in output.out  # the memory breakdown
    # the full run's training time as a range, with what it rests on
    assert re.search(r"projected training time on .+: .+ to .+ \(model: .+\) for \d+ steps, .+; rests on ", output.out), output.out


def test_epoch_based_interval_problems_are_warnings_not_errors(capsys):
    code = cli.main(["validate", "--config", str(REPO / "configs" / "axolotl_config.yaml"), "--no-data-report",
                     "--set", "max_steps=null", "--set", "save_steps=100000"])
    output = capsys.readouterr()
    assert code == 0
    assert "warning: save_steps: 100000 never fires in the ~55 steps this data gives (estimate)" in output.err
    # a packed config's steps are unknown without the data's lengths: no count of unpacked rows stands in
    code = cli.main(["validate", "--config", str(REPO / "configs" / "training_config_h100.yaml"), "--no-data-report"])
    output = capsys.readouterr()
    assert code == 0 and "never fires in the ~42 steps" not in output.err


def test_a_config_without_sequence_len_is_read_at_axolotls_default(tmp_path):
    """Axolotl trains a config without sequence_len at 512 tokens (schemas/config.py, default=512);
    every reader of the training shape (memory, steps, eval batches, calibration, throughput) must
    count the same 512, not a guess of its own."""
    from cli_tuner.batching import eval_batches, steps
    from cli_tuner.estimates import calibration, memory, throughput
    from cli_tuner.facts import gpus, models

    raw = yaml.safe_load(open(A5000))
    raw.pop("sequence_len")
    raw.update(sample_packing=True, micro_batch_size=2, multipack_real_batches=False)
    path = tmp_path / "no_sequence_len.yaml"
    path.write_text(yaml.safe_dump(raw))
    loaded = load(path)
    cfg = loaded.axolotl
    facts = models.lookup(loaded.base_model)
    gpu = gpus.KNOWN_GPUS["a5000"]

    assert loaded.shape.sequence_len == 512
    assert memory.read_setup(cfg, facts, gpu).sequence_len == 512
    assert steps.need_for_one_step(cfg).bin_tokens == 2 * 512
    assert eval_batches.batching(cfg).bin_tokens == 2 * 512
    assert calibration.longest_micro_batch(cfg) == 2 * 512
    assert throughput.step_parts(facts, gpu, cfg) == throughput.step_parts(facts, gpu, {**cfg, "sequence_len": 512})
