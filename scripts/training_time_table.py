"""The training-time table of docs/performance.md, generated: each shipped config on the sample data
it reads by default, timed by cli_tuner.estimates.throughput.project_time, the function `validate`
prints, over the train examples' token lengths as validate's data report measures them.

    .venv/bin/python scripts/training_time_table.py --measure  # re-measure the lengths (needs the tokenizers)
    .venv/bin/python scripts/training_time_table.py            # print the table
    .venv/bin/python scripts/training_time_table.py --write    # replace the table in docs/performance.md

The lengths are kept in docs/measurements/train_lengths-sample.json with the hash of the train file
they were measured on; tests/test_time_projection.py fails while the docs' table differs from this
output, while the train file has changed since it was measured, or while validate prints another time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cli_tuner import config as config_module, data  # noqa: E402
from cli_tuner.batching.epoch import BatchingPlan  # noqa: E402
from cli_tuner.estimates import throughput  # noqa: E402
from cli_tuner.facts import gpus, models  # noqa: E402
from scripts.doc_table import replace_table  # noqa: E402

CONFIGS = ("configs/axolotl_config.yaml", "configs/training_config_h100.yaml", "configs/training_config_m4.yaml")
DATA_DIR = REPO / "data" / "processed"
LENGTHS = REPO / "docs" / "measurements" / "train_lengths-sample.json"
TABLE_DOC = REPO / "docs" / "performance.md"
HEADER = ("| config | target | batching | train examples | steps per epoch | processed tokens per epoch "
          "| per step | per epoch | the run, as `validate` prints it |")


def load(config: str) -> config_module.LoadedConfig:
    return config_module.load(REPO / config, data_dir=DATA_DIR)


def measure() -> dict:
    """Each config's train token lengths, as validate's data report counts them (the config's tokenizer
    and chat template), with the train file's sha256."""
    from cli_tuner.checks import data_report

    record = {}
    for config in CONFIGS:
        loaded = load(config)
        report = data_report.check(loaded)
        train = loaded.split_files()["train"]
        record[config] = {"tokenizer": loaded.tokenizer_source, "train_files": {p.name: data.sha256_file(p) for p in train},
                          "lengths": report.train_lengths}
    return record


def stale_files(record: dict) -> list[str]:
    """The train files whose bytes differ from those the lengths were measured on."""
    stale = []
    for config, entry in record.items():
        for name, sha in entry["train_files"].items():
            path = DATA_DIR / name
            if not path.is_file() or data.sha256_file(path) != sha:
                stale.append(f"{config}: {path}")
    return stale


def run_line(time: throughput.TimeProjection) -> str:
    """The figures of validate's projection line (calibration.Projection.line), from the same function."""
    low, high = time.range_seconds
    return (f"{throughput.format_duration(low)} to {throughput.format_duration(high)} "
            f"(model: {throughput.format_duration(time.seconds)}) for {time.steps} steps")


def rows(record: dict) -> list[str]:
    lines = []
    for config in CONFIGS:
        loaded = load(config)
        cfg = loaded.axolotl
        gpu = gpus.resolve_target(loaded.target, None)
        facts = models.lookup(loaded.base_model)
        lengths = record[config]["lengths"]
        time = throughput.project_time(cfg, facts, gpu, throughput.epoch_of(cfg, lengths, None))
        lines.append(f"| {Path(config).name} | {gpu.name} | {BatchingPlan.from_axolotl(cfg).describe()} | "
                     f"{len(lengths):,} | {time.steps_per_epoch:,} | {time.processed_tokens_per_epoch:,} | "
                     f"{time.step_seconds:.2f} s | {throughput.format_duration(time.epoch_seconds)} | "
                     f"{run_line(time)} |")
    return lines


def markdown_table(record: dict | None = None) -> str:
    record = record if record is not None else json.loads(LENGTHS.read_text(encoding="utf-8"))
    return "\n".join([HEADER, "|---|---|---|---:|---:|---:|---:|---:|---|", *rows(record)])


def write() -> None:
    replace_table(TABLE_DOC, HEADER, markdown_table())


if __name__ == "__main__":
    if "--measure" in sys.argv[1:]:
        LENGTHS.write_text(json.dumps(measure(), indent=None, separators=(",", ":")) + "\n", encoding="utf-8")
        print(f"wrote {LENGTHS.relative_to(REPO)}")
    if "--write" in sys.argv[1:]:
        write()
    elif "--measure" not in sys.argv[1:]:
        print(markdown_table())
