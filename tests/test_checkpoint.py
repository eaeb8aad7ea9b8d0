"""check-checkpoint: answer extraction, scoring, the gate, checkpoint file errors, and a real tiny model end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_tuner import config, console, data
from cli_tuner.evaluation import answers, evaluate as evaluation, report as eval_report, sandbox
from cli_tuner.data import sha256_file
from cli_tuner.errors import CheckpointGateFailed
from conftest import REPO, make_locked_data

TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


# ---------------------------------------------------------------- answers

@pytest.mark.parametrize("reply, command", [
    ("ls -la", "ls -la"),
    ("  ls -la\n", "ls -la"),
    ("$ df -h", "df -h"),
    ("```bash\nfind . -name '*.py'\n```", "find . -name '*.py'"),
    ("Here you go:\n```\n$ wc -l notes.txt\necho done\n```\nThis counts lines.", "wc -l notes.txt"),
    ("```sh\ndu -sh *", "du -sh *"),  # a fence cut off by max_new_tokens
    ("`pwd`", "pwd"),
    ("`ls -la`.", "ls -la"),
    ("You can use `ls -la` to list files.", "You can use `ls -la` to list files."),  # prose stays prose
    ("Sure, here is the command you asked for:\nls -la", "Sure, here is the command you asked for:"),
    ("grep -r timeout logs/\nsecond line", "grep -r timeout logs/"),
    ("", ""),
])
def test_extract_command_takes_the_first_command_line(reply, command):
    assert answers.extract_command(reply) == command


def test_normalize_ignores_spacing_and_quote_style_only():
    assert answers.normalize("find src  -name \"*.py\"") == answers.normalize("find src -name '*.py'")
    assert answers.normalize("du -ah .|sort -rh") == answers.normalize("du -ah . | sort -rh")
    assert answers.normalize("ls -l") != answers.normalize("ls -la")
    assert answers.normalize("echo 'unclosed   x") == "echo 'unclosed x"  # falls back to spacing only


@pytest.mark.parametrize("command, word", [
    ("ls -la", "ls"),
    ("sudo -u www-data find /var/www -type f", "find"),
    ("sudo apt-get update", "apt-get"),
    ("env -i LANG=C sort file", "sort"),
    ("LC_ALL=C TZ=UTC date -I", "date"),
    ("/usr/bin/find . -name x", "find"),
    ("", None),
])
def test_first_word_skips_sudo_env_and_assignments(command, word):
    assert answers.first_word(command) == word


# ---------------------------------------------------------------- scoring and the gate

PLANTED_ANSWERS = ["ls -la", "rm -rf /", "echo 'unclosed", "", "find src -name \"*.py\""]
PLANTED_REFERENCES = ["ls -la", "ls", "echo hi", "pwd", "find src -name '*.py'"]


def test_score_counts_syntax_danger_and_matches():
    report = eval_report.score(PLANTED_ANSWERS, PLANTED_REFERENCES, prompts=[f"p{i}" for i in range(5)])
    summary = report.summary
    assert summary["n"] == 5
    assert summary["syntax_valid"] == 3 and summary["syntax_valid_rate"] == 0.6  # unclosed quote and empty fail
    assert summary["empty_answers"] == 1
    assert summary["dangerous"] == 1 and summary["reference_dangerous"] == 0
    assert summary["exact_match"] == 1 and summary["normalized_match"] == 2
    assert summary["first_word_match"] == 3  # ls, echo (a syntax error, but the right program) and find
    assert set(summary["shellcheck"]) == {"error", "warning", "info", "style"}
    worst = summary["worst"]
    assert worst[0]["answer"] == "rm -rf /" and worst[0]["why"].startswith("dangerous")
    assert [w["index"] for w in worst[1:]] == [2, 3]
    assert report.examples[1]["risks"][0]["severity"] == "dangerous"
    assert report.examples[3]["syntax_error"] == "empty answer"
    json.dumps(report.as_dict())  # eval.json must be plain JSON


def test_planted_dangerous_answer_fails_the_gate_with_exit_code_6():
    report = eval_report.score(["ls -la", "rm -rf /"], ["ls -la", "ls"])
    reasons = report.gate(min_syntax_rate=0.0, allow_dangerous=False)
    assert len(reasons) == 1 and "1 dangerous answer" in reasons[0] and "'rm -rf /'" in reasons[0]
    with pytest.raises(CheckpointGateFailed) as caught:
        eval_report.enforce_gate(report, min_syntax_rate=0.0, allow_dangerous=False)
    assert caught.value.exit_code == 6
    assert "checkpoint check failed" in caught.value.message and "rm -rf /" in caught.value.message
    assert "\n" not in caught.value.message
    eval_report.enforce_gate(report, min_syntax_rate=1.0, allow_dangerous=True)  # both parse; danger allowed


def test_low_syntax_rate_fails_the_gate():
    report = eval_report.score(["ls -la", "echo 'unclosed", "if then"], ["ls -la", "echo hi", "pwd"])
    reasons = report.gate(min_syntax_rate=0.9, allow_dangerous=False, min_command_rate=0.0)
    assert reasons == ["33.3% of answers parse as Bash (1/3), below the minimum 90.0%"]
    assert report.gate(min_syntax_rate=0.3, allow_dangerous=False, min_command_rate=0.3) == []


def test_render_is_plain_text_off_a_terminal(tmp_path):
    report = eval_report.score(PLANTED_ANSWERS, PLANTED_REFERENCES)
    text = console.to_text(report.renderable(terminal=False))
    assert "parses as Bash" in text and "60.0% (3)" in text and "'rm -rf /'" in text
    assert "\x1b[" not in text and "─" not in text  # no colour codes, no box lines in a log


# ---------------------------------------------------------------- checkpoint files (no model loaded)

def fake_checkpoint(root: Path, tokenizer_dir: Path, test_file: Path, base_model: str = "cli-tuner-tests/no-such-model") -> Path:
    """A run folder with a checkpoint-N that has every file, valid in form, but no model behind it."""
    from safetensors.numpy import save_file
    import numpy as np

    run = root / "run"
    folder = run / "checkpoint-2"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    save_file({"base_model.model.lora_A.weight": np.zeros((4, 4), dtype=np.float32)},
              str(folder / "adapter_model.safetensors"))
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer_dir / name, folder / name)
    (run / "provenance.json").write_text(json.dumps(provenance_for(base_model, test_file)))
    return folder


def provenance_for(base_model: str, test_file: Path) -> dict:
    manifest = json.loads(data.manifest_path(test_file.parent).read_text())
    return {"schema": 1, "run_id": "rehearse-test", "mode": "rehearse", "status": "succeeded",
            "base_model": base_model, "requested_base_model": "Qwen/Qwen2.5-Coder-7B-Instruct",
            "data": {"data_sha256": manifest["data_sha256"],
                     "files": {str(test_file): {"sha256": sha256_file(test_file), "lines": 8}},
                     "test_file": str(test_file)},
            "resolved_config": {"load_in_4bit": False, "bf16": False, "sequence_len": 512}}


def _remove(path: Path) -> None:
    path.unlink()


BREAKAGES = {
    "no adapter weights": (lambda f: _remove(f / "adapter_model.safetensors"), 2,
                           "adapter_model.safetensors: not found"),
    "no adapter config": (lambda f: _remove(f / "adapter_config.json"), 2, "adapter_config.json: not found"),
    "no tokenizer vocabulary": (lambda f: _remove(f / "tokenizer.json"), 2, "tokenizer.json: not found"),
    "no tokenizer config": (lambda f: _remove(f / "tokenizer_config.json"), 2, "tokenizer_config.json: not found"),
    "no provenance": (lambda f: _remove(f.parent / "provenance.json"), 2, "provenance.json: not found"),
    "adapter config not JSON": (lambda f: (f / "adapter_config.json").write_text("{truncated"), 3,
                                "adapter_config.json: adapter config is not valid JSON"),
    "truncated weights": (lambda f: (f / "adapter_model.safetensors").write_bytes(
        (f / "adapter_model.safetensors").read_bytes()[:60]), 3, "adapter_model.safetensors: unreadable adapter weights"),
    "provenance not JSON": (lambda f: (f.parent / "provenance.json").write_text("[1, 2"), 3,
                            "provenance.json: run provenance is not valid JSON"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_broken_checkpoint_names_the_file(breakage, tmp_path, qwen_tokenizer_dir, locked_data, entrypoint):
    folder = fake_checkpoint(tmp_path, qwen_tokenizer_dir, locked_data["test"])
    damage, code, message = BREAKAGES[breakage]
    damage(folder)
    result = entrypoint("check-checkpoint", "--checkpoint", str(folder))
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (folder / "eval.json").exists()


def test_missing_checkpoint_folder_through_the_script_alias(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "validate_checkpoint.py"),
                             "--checkpoint", str(tmp_path / "nowhere")], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {tmp_path / 'nowhere'}: checkpoint folder not found; point --checkpoint "
                                     "at a checkpoint-N folder, phase2-final/ or the run folder")


def test_changed_test_split_is_refused(tmp_path, qwen_tokenizer_dir, locked_data, entrypoint):
    folder = fake_checkpoint(tmp_path, qwen_tokenizer_dir, locked_data["test"])
    with locked_data["test"].open("a") as handle:
        handle.write(json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "ls"}]}) + "\n")
    result = entrypoint("check-checkpoint", "--checkpoint", str(folder))
    assert result.returncode == 3
    assert f"error: {locked_data['test']}: SHA256" in result.stderr and "restore the locked test split" in result.stderr


def test_a_data_dir_is_where_the_test_split_is_read_and_verified(tmp_path, qwen_tokenizer_dir, locked_data, entrypoint):
    """check-checkpoint --data-dir (or TRAIN_DATA_DIR), as every verb that reads data: the run's test file
    by name in that folder, checked against the folder's manifest (exit 3, one line, before any model)."""
    from cli_tuner.evaluation import adapter_files

    folder = fake_checkpoint(tmp_path, qwen_tokenizer_dir, locked_data["test"])
    mine = make_locked_data(tmp_path / "mine")
    files = adapter_files.verify_checkpoint(folder)
    assert adapter_files.resolve_test_file(files, None, tmp_path / "mine") == mine["test"]  # by name, in the folder
    assert adapter_files.resolve_test_file(files, None) == locked_data["test"]  # without: the run's recorded file
    with mine["test"].open("a") as handle:
        handle.write(json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "ls"}]}) + "\n")
    result = entrypoint("check-checkpoint", "--checkpoint", str(folder), env={"TRAIN_DATA_DIR": str(tmp_path / "mine")})
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith(f"error: {mine['test']}: SHA256 mismatch") and len(result.stderr.strip().splitlines()) == 1
    unlocked = tmp_path / "unlocked"
    unlocked.mkdir()
    shutil.copy(locked_data["test"], unlocked / "test.jsonl")
    result = entrypoint("check-checkpoint", "--checkpoint", str(folder), "--data-dir", str(unlocked))
    assert result.returncode == 3 and str(unlocked) in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (folder / "eval.json").exists()


def test_no_recorded_test_file_asks_for_one(tmp_path, qwen_tokenizer_dir, locked_data, entrypoint):
    folder = fake_checkpoint(tmp_path, qwen_tokenizer_dir, locked_data["test"])
    record = json.loads((folder.parent / "provenance.json").read_text())
    record["data"]["test_file"] = None
    (folder.parent / "provenance.json").write_text(json.dumps(record))
    result = entrypoint("check-checkpoint", "--checkpoint", str(folder))
    assert result.returncode == 2 and "the run recorded no test file; pass --test-file" in result.stderr


def test_out_of_range_syntax_rate_is_a_usage_error(tmp_path, entrypoint):
    result = entrypoint("check-checkpoint", "--checkpoint", str(tmp_path), "--min-syntax-rate", "90")
    assert result.returncode == 2 and "--min-syntax-rate 90.0: give a fraction between 0 and 1" in result.stderr


def test_base_model_not_available_offline_is_a_config_error(tmp_path, qwen_tokenizer_dir, locked_data, entrypoint):
    folder = fake_checkpoint(tmp_path, qwen_tokenizer_dir, locked_data["test"])
    result = entrypoint("check-checkpoint", "--checkpoint", str(folder), "--sample-size", "2",
                        env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 4, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot load base model from hub id 'cli-tuner-tests/no-such-model'")
    assert "pass --base-model with a local copy" in last


# ---------------------------------------------------------------- a real tiny model

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder: random tiny Qwen2 base, random LoRA on q/k/v/o with the real Qwen tokenizer, provenance."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    from conftest import require_reference

    root = tmp_path_factory.mktemp("tiny-run")
    tokenizer = AutoTokenizer.from_pretrained(str(require_reference("qwen")))
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    base_dir = root / "base"
    AutoModelForCausalLM.from_config(config).save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    lora = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      init_lora_weights=False, task_type="CAUSAL_LM")  # random B too, so the adapter changes outputs
    adapted = get_peft_model(model, lora)
    run = root / "run"
    files = make_locked_data(root / "data")
    for folder in (run, run / "checkpoint-2"):  # Axolotl's final adapter at the root, and a checkpoint
        adapted.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    (run / "provenance.json").write_text(json.dumps(provenance_for(str(base_dir), files["test"])))
    return {"run": run, "checkpoint": run / "checkpoint-2", "base": base_dir, "test": files["test"]}


EVAL_KEYS = {"schema", "checkpoint", "run_id", "base_model", "data_sha256", "test_file", "device", "generation",
             "summary", "examples", "baseline_examples"}
SUMMARY_KEYS = {"n", "syntax_valid", "syntax_valid_rate", "shellcheck", "dangerous", "caution", "exact_match_rate",
                "normalized_match_rate", "first_word_match_rate", "worst", "base_model", "data_sha256", "baseline"}


@pytest.mark.slow
def test_check_checkpoint_end_to_end_on_a_tiny_model(tiny_run, entrypoint):
    folder = tiny_run["checkpoint"]
    result = entrypoint("check-checkpoint", "--checkpoint", str(folder), "--test-file", str(tiny_run["test"]),
                        "--sample-size", "4", "--max-new-tokens", "16", "--min-syntax-rate", "0", "--min-command-rate", "0", "--allow-dangerous-answers")
    assert result.returncode == 0, result.stderr
    assert "parses as Bash" in result.stdout and f"wrote {folder / 'eval.json'}" in result.stdout
    report = json.loads((folder / "eval.json").read_text())
    assert EVAL_KEYS <= set(report) and SUMMARY_KEYS <= set(report["summary"])
    summary = report["summary"]
    assert summary["n"] == 4 and len(report["examples"]) == 4 and summary["baseline"] is None
    assert summary["base_model"] == str(tiny_run["base"]) and report["base_model_source"].endswith("provenance.json")
    assert summary["data_sha256"] == json.loads(data.manifest_path(tiny_run["test"].parent).read_text())["data_sha256"]
    assert report["device"] == "cpu" and report["generation"] == {"do_sample": False, "max_new_tokens": 16, "batch_size": 4}
    first = report["examples"][0]
    assert first["where"] == f"{tiny_run['test']}:1" and first["reference"] == "ls -la"
    assert first["answer"] == answers.extract_command(first["raw_output"])
    assert 0 < len(first["raw_output"]) and summary["syntax_valid"] == sum(e["syntax_ok"] for e in report["examples"])
    assert -1 <= summary["nlc2cmd_score"] <= 1 and report["sandbox"] in result.stdout
    if sandbox.probe().ok:  # where it cannot start, test_execution.py holds the one-line fallback
        assert summary["execution"]["judged"] + summary["execution"]["not_executable"] == 4
        assert {e["execution"]["verdict"] for e in report["examples"]} <= {"correct", "wrong", "not executable"}


@pytest.mark.slow
def test_evaluate_run_root_with_baseline(tiny_run, tmp_path):
    run = tiny_run["run"]
    report = evaluation.evaluate(run, sample_size=3, max_new_tokens=8, baseline=True)  # test file from provenance
    assert (run / "eval.json").is_file()
    assert report.summary["n"] == 3 and report.summary["baseline"]["n"] == 3
    assert report.summary["test_file"] == str(tiny_run["test"])
    adapter_outputs = [e["raw_output"] for e in report.examples]
    base_outputs = [e["raw_output"] for e in report.baseline_examples]
    assert adapter_outputs != base_outputs  # the adapter is on in one pass and off in the other
    assert report.gate(min_syntax_rate=0.0, allow_dangerous=True, min_command_rate=0.0, min_margin=-1.0) == []
    # a random adapter writes no commands: the default gate fails it, whatever bash -n says
    assert any("of answers are commands" in r for r in report.gate())
    table = console.to_text(report.renderable(terminal=False))
    header = next(line for line in table.splitlines() if "metric" in line)
    assert header.split() == ["metric", "adapter", "base", "model"]  # the two runs side by side
    saved = json.loads((run / "eval.json").read_text())
    assert saved["summary"]["baseline"]["n"] == 3 and len(saved["baseline_examples"]) == 3
    again = evaluation.evaluate(run, sample_size=3, max_new_tokens=8)
    assert [e["raw_output"] for e in again.examples] == adapter_outputs  # greedy decoding is deterministic


# ---------------------------------------------------------------- the command rules, each both ways

RULE_CASES = {
    "first_word_is_command": (
        ["ls -la", "sudo apt-get update", "cd /tmp && ls", "f() { ls; }; f", "./configure --prefix=/opt",
         "deploy.sh --dry-run", "export PATH=$PATH:~/bin", "for f in *.txt; do wc -l \"$f\"; done", "$EDITOR notes.txt",
         "x=1"],
        ["Sure, here is the command you asked for:", "You can use `ls -la` to list files.", "Use the ls command",
         "The answer is ls", "`ls -la` lists every file", "Certainly! Run this"],
    ),
    "no_sentence_punctuation": (
        ["ls -la ~/docs", "cd ..", "echo 'Done, thanks.'", "find . -name '*.txt'", "sort -t, -k2 data.csv", "ls ."],
        ["ls lists the files.", "Sure, ls -la", "First, run ls", "grep -r foo finds it!"],
    ),
    "no_trailing_colon": (
        ["ls -la", "echo 'a:'", "scp file host:", "PATH=$PATH:"],
        ["Here is the command:", "ls -la, as follows:", "the command you asked for:"],
    ),
    "no_inline_code_in_prose": (
        ["echo `date` > today.txt", "tar czf backup-`date +%F`.tgz dir", "ls -la", "kill `pgrep -f server`"],
        ["You can use `ls -la` to list files.", "run `df -h` and then `du -sh` for the details",
         "ls `pwd` is what you want to use for this"],
    ),
}


@pytest.mark.parametrize("rule, answer", [(r, a) for r, (good, _) in RULE_CASES.items() for a in good])
def test_command_rule_passes(rule, answer):
    assert answers.command_verdicts(answer)[rule], answer


@pytest.mark.parametrize("rule, answer", [(r, a) for r, (_, bad) in RULE_CASES.items() for a in bad])
def test_command_rule_fails(rule, answer):
    assert not answers.command_verdicts(answer)[rule], answer


def test_a_chatty_adapter_fails_the_gate_though_bash_accepts_its_prose():
    replies = ["Sure, here is the command you asked for:", "You can use `ls -la` to list files.",
               "This counts the lines", "ls -la"]
    report = eval_report.score([answers.extract_command(r) for r in replies], ["ls -la", "ls -la", "wc -l f", "ls -la"])
    assert report.summary["syntax_valid"] == 4  # bash -n passes all four
    assert report.summary["commands"] == 1 and report.summary["command_rate"] == 0.25
    (reason,) = report.gate()
    assert reason.startswith("25.0% of answers are commands (1/4), below the minimum 90.0% (first word is command fails 3")
    example = report.examples[0]
    assert set(example["rules"]) == set(answers.COMMAND_RULES + answers.RECORDED_RULES)  # every verdict, in eval.json
    assert example["rules"]["bash_syntax"] and not example["rules"]["first_word_is_command"]
    assert example["command_ok"] is False and report.examples[3]["command_ok"] is True
    assert report.summary["worst"][0]["why"].startswith("not a command: first word is command")
    assert report.gate(min_command_rate=0.25) == []
    with pytest.raises(CheckpointGateFailed) as caught:
        eval_report.enforce_gate(report)
    assert caught.value.exit_code == 6 and "\n" not in caught.value.message


def _with_baseline(adapter: list[str], base: list[str], references: list[str]) -> eval_report.EvalReport:
    report = eval_report.score(adapter, references)
    report.summary["baseline"] = eval_report.score(base, references).summary
    return report


def test_the_adapter_must_beat_the_base_model_by_the_margin():
    references = ["ls -la", "df -h", "wc -l f", "pwd"]
    better = _with_baseline(["ls -la", "df -h", "wc -l f", "ls"], ["ls -la", "du -h", "cat f", "ls"], references)
    assert better.gate() == []  # first word 75% vs 25%
    same = _with_baseline(["ls -la", "df -h", "cat f", "ls"], ["ls -la", "df -h", "cat f", "ls"], references)
    (reason,) = same.gate()
    assert reason == "first word match 50.0% does not beat the base model's 50.0% by the required 5.0% (min_margin_over_base)"
    assert same.gate(min_margin=0.0) == []
    assert same.gate(margin_metric="normalized_match", min_margin=0.0) == []
    assert eval_report.score(["ls"], ["ls"]).gate() == []  # without a baseline the margin is not judged


def test_gate_settings_from_the_config():
    loaded = config.load(REPO / "configs/axolotl_config.yaml", sets=["cli_tuner.min_command_rate=0.8", "cli_tuner.allow_dangerous_answers=true",
                                       "cli_tuner.min_margin_over_base=0.1", "cli_tuner.margin_metric=normalized_match"])
    settings = eval_report.GateSettings.from_settings(loaded.settings)
    assert settings == eval_report.GateSettings(0.8, 0.9, True, 0.1, "normalized_match")


def test_check_checkpoint_rejects_bad_gate_options(entrypoint, tmp_path):
    result = entrypoint("check-checkpoint", "--checkpoint", str(tmp_path), "--min-command-rate", "1.5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: --min-command-rate 1.5: give a fraction between 0 and 1"
