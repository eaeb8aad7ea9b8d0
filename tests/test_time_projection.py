"""One time projection (throughput.project_time): what validate prints, what docs/performance.md's
table shows (scripts/training_time_table.py), and that it follows Axolotl's batching."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from cli_tuner import cli
from cli_tuner.batching.epoch import BatchingPlan, count_epoch
from cli_tuner.estimates import throughput
from cli_tuner.facts import gpus, models
from conftest import REPO

spec = importlib.util.spec_from_file_location("training_time_table", REPO / "scripts" / "training_time_table.py")
table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table)

MISTRAL = models.lookup("mistralai/Mistral-7B-Instruct-v0.2")
H100 = gpus.resolve_target("h100", None)
# QLoRA, one 512-token row per micro batch, sdpa (packed bins are real rows of sequence_len)
PADDED = {"sequence_len": 512, "micro_batch_size": 1, "gradient_accumulation_steps": 4, "num_epochs": 1,
          "attn_implementation": "sdpa", "pad_to_sequence_len": True, "adapter": "qlora", "load_in_4bit": True,
          "gradient_checkpointing": True}


def projected(cfg: dict, lengths: list[int], processes: int = 1) -> throughput.TimeProjection:
    epoch = count_epoch(lengths, BatchingPlan.from_axolotl(cfg), seed=42)
    return throughput.project_time(cfg, MISTRAL, H100, epoch, processes)


def table_rows() -> dict[str, list[str]]:
    doc = (REPO / "docs" / "performance.md").read_text(encoding="utf-8")
    rows = [line.strip("|").split("|") for line in doc.splitlines() if line.startswith("| ") and ".yaml |" in line
            and line.split("|")[1].strip() in {n.split("/")[-1] for n in table.CONFIGS}]
    return {cells[0].strip(): [c.strip() for c in cells] for cells in rows}


def test_packing_two_examples_per_row_halves_the_steps_and_the_time():
    lengths = [256] * 400  # two fit one 512-token row exactly
    padded = projected(PADDED, lengths)
    packed = projected({**PADDED, "sample_packing": True}, lengths)
    assert packed.steps * 2 == padded.steps == 100
    assert packed.seconds == pytest.approx(padded.seconds / 2)  # every micro batch the same shape: time follows steps


def test_padding_only_to_the_batch_longest_charges_the_example_not_the_sequence_len():
    to_longest = {**PADDED, "sequence_len": 2048, "pad_to_sequence_len": False}  # the M4 config's collator
    to_sequence = {**PADDED, "sequence_len": 2048}
    short, long = [50] * 64, [500] * 64
    assert projected(to_longest, short).steps == projected(to_sequence, short).steps == 16
    assert projected(to_longest, short).processed_tokens_per_epoch == 64 * 50
    assert projected(to_longest, short).seconds < projected(to_longest, long).seconds < projected(to_sequence, long).seconds
    assert projected(to_sequence, short).seconds == pytest.approx(projected(to_sequence, long).seconds)


def test_processes_split_the_steps_and_max_steps_fixes_them():
    lengths = [300] * 64
    one, two = projected(PADDED, lengths), projected(PADDED, lengths, processes=2)
    assert two.steps * 2 == one.steps and two.seconds == pytest.approx(one.seconds / 2)
    fixed = projected({**PADDED, "max_steps": 3 * one.steps}, lengths)
    assert fixed.steps == 3 * one.steps and fixed.seconds == pytest.approx(3 * one.seconds)


def test_the_docs_table_is_what_the_script_writes_from_lengths_of_todays_train_file():
    record = json.loads(table.LENGTHS.read_text(encoding="utf-8"))
    assert table.stale_files(record) == [], "the train file changed: run scripts/training_time_table.py --measure --write"
    doc = (REPO / "docs" / "performance.md").read_text(encoding="utf-8")
    assert table.markdown_table(record) in doc, "docs/performance.md's table is stale: run scripts/training_time_table.py --write"


@pytest.mark.parametrize("config, tokenizer", [
    ("configs/axolotl_config.yaml", "qwen"),
    ("configs/training_config_h100.yaml", "mistral"),
    ("configs/training_config_m4.yaml", "mistral"),
])
def test_validate_projects_the_time_the_docs_table_shows(capsys, config, tokenizer):
    from conftest import require_reference

    code = cli.main(["validate", "--config", str(REPO / config), "--tokenizer", str(require_reference(tokenizer))])
    output = capsys.readouterr()
    assert code == 0, output.err
    found = re.search(r"projected training time on [^:]+: (.+? to .+?) \(model: (.+?), [\d,]+ processed tokens/s\) "
                      r"for (\d+) steps", output.out)
    assert found, output.out
    low_high, model, steps = found.groups()
    row = table_rows()[config.split("/")[-1]]
    assert row[-1] == f"{low_high} (model: {model}) for {steps} steps"


def test_without_the_lengths_validate_says_its_projection_is_an_upper_bound():
    from cli_tuner.estimates import calibration

    to_longest = {**PADDED, "sequence_len": 2048, "pad_to_sequence_len": False}
    measured = calibration.project(to_longest, MISTRAL, H100, 64, None, train_lengths=[50] * 64)
    assumed = calibration.project(to_longest, MISTRAL, H100, 64, None, train_lengths=None)
    assert assumed.time.steps == measured.time.steps and assumed.time.seconds > measured.time.seconds
    assert "upper bound" in assumed.line() and "upper bound" not in measured.line()
    padded = calibration.project(PADDED, MISTRAL, H100, 64, None, train_lengths=None)  # padded anyway: exact
    assert "upper bound" not in padded.line()
    assert calibration.project({**PADDED, "sample_packing": True}, MISTRAL, H100, 64, None) is None  # packing needs them
