"""Token budget of every shipped config: real vs processed tokens per epoch, steps, time on its GPU.

    .venv/bin/python -m bench.bench_tokens                      # sample data and NL2Bash, all configs
    .venv/bin/python -m bench.bench_tokens --dataset nl2bash=../shared/data/nl2bash --json

For each config it shows the config as shipped and its counterparts: padded to sequence_len
without packing (the spec's setup) and with sample packing (for configs/axolotl_config.yaml the
overlay configs/overlays/packing.yaml). Tokens come from Axolotl's chat_template strategy with
the config's real tokenizer; batches from Axolotl's multipack sampler (cli_tuner/batching/epoch.py);
time from cli_tuner/estimates/throughput.py's project_time, the function validate prints, charged for
every processed token (padding included: the GPU computes on it).
"""

from __future__ import annotations

if __package__ in (None, ""):  # `python bench/bench_tokens.py`: make the repo importable
    import sys
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))
    __package__ = "bench"

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cli_tuner.batching import epoch as epoch_batching

from . import chat_lengths

REPO = chat_lengths.REPO
SHIPPED_CONFIGS = ("configs/axolotl_config.yaml", "configs/training_config_h100.yaml", "configs/training_config_m4.yaml")
# The efficient counterpart of a config, where one is shipped as an overlay file.
PACKING_OVERLAYS = {"axolotl_config.yaml": "configs/overlays/packing.yaml"}
PADDED_SETS = ["sample_packing=false", "eval_sample_packing=false", "pad_to_sequence_len=true"]
PACKED_SETS = ["sample_packing=true"]
DEFAULT_DATASETS = {
    "sample": REPO / "data" / "processed" / "train.jsonl",
    "nl2bash": REPO.parent / "shared" / "data" / "nl2bash",
}


@dataclass(frozen=True)
class Variant:
    config: str
    name: str          # shipped, padded, packed
    overlays: tuple = ()
    sets: tuple = ()

    @property
    def label(self) -> str:
        extra = [Path(o).name for o in self.overlays] + list(self.sets)
        return f"{Path(self.config).name} [{self.name}]" + (f" + {', '.join(extra)}" if extra else "")


def variants_of(config: str, loaded_cfg: dict) -> list[Variant]:
    """The config as shipped, plus the padded and packed versions it is not already."""
    shipped = epoch_batching.BatchingPlan.from_axolotl(loaded_cfg)
    found = [Variant(config, "shipped")]
    if shipped.sample_packing or not shipped.pad_to_sequence_len:
        found.append(Variant(config, "padded", sets=tuple(PADDED_SETS)))
    if not shipped.sample_packing:
        overlay = PACKING_OVERLAYS.get(Path(config).name)
        if overlay and (REPO / overlay).is_file():
            found.append(Variant(config, "packed", overlays=(str(REPO / overlay),)))
        else:
            found.append(Variant(config, "packed", sets=tuple(PACKED_SETS)))
    return found


def epoch_seconds(count: epoch_batching.EpochCount, cfg: dict, facts, gpu, mfu: float | None) -> float | None:
    """One epoch's time: throughput.project_time, the projection validate prints."""
    from cli_tuner.estimates import throughput

    projection = throughput.project_time(cfg, facts, gpu, count, mfu=mfu)
    return projection.epoch_seconds if projection is not None else None


def parse_pairs(items: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"error: {option} {item!r}: expected NAME=PATH")
        name, path = item.split("=", 1)
        pairs[name.strip()] = path.strip()
    return pairs


def measure(args) -> tuple[list[dict], list[str]]:
    from cli_tuner import config as config_module
    from cli_tuner import tokenizer as tokenizer_loader
    from cli_tuner.facts import gpus, models as model_facts

    overrides = parse_pairs(args.tokenizer_dir, "--tokenizer-dir")
    datasets = parse_pairs(args.dataset, "--dataset") if args.dataset else {k: str(v) for k, v in DEFAULT_DATASETS.items()}
    results, notes = [], []
    tokenizers: dict[str, object] = {}
    lengths_cache: dict[tuple, chat_lengths.Lengths] = {}
    for dataset_name, source in datasets.items():
        source_path = Path(source)
        if not source_path.exists():
            notes.append(f"{dataset_name}: {source_path} not found, skipped")
            continue
        rows = chat_lengths.load_rows(source_path)
        for config in args.config or SHIPPED_CONFIGS:
            config_path = str(REPO / config) if not Path(config).is_absolute() else config
            base = config_module.load(config_path)
            for variant in variants_of(config, base.axolotl):
                loaded = config_module.load(config_path, overlays=[*variant.overlays, *args.overlay],
                                            sets=[*variant.sets, *args.sets])
                cfg = loaded.axolotl
                tokenizer_dir = chat_lengths.tokenizer_dir_for(loaded.base_model, loaded.tokenizer_source, overrides,
                                                               args.tokenizer)
                if tokenizer_dir not in tokenizers:
                    tokenizers[tokenizer_dir] = tokenizer_loader.load(tokenizer_dir)
                key = (dataset_name, tokenizer_dir, chat_lengths.strategy_fingerprint(cfg))
                if key not in lengths_cache:
                    lengths_cache[key] = chat_lengths.tokenized_lengths(rows, tokenizers[tokenizer_dir], cfg)
                lengths = lengths_cache[key]
                plan = epoch_batching.BatchingPlan.from_axolotl(cfg)
                count = epoch_batching.count_epoch(lengths.total, plan, seed=int(cfg.get("seed") or 42))
                target = args.target or loaded.target
                row = {
                    "dataset": dataset_name, "dataset_source": str(source_path), "examples_in_dataset": len(rows),
                    "config": config, "variant": variant.name, "label": variant.label,
                    "tokenizer": tokenizer_dir, "batching": plan.describe(),
                    "sequence_len": plan.sequence_len, "micro_batch_size": plan.micro_batch_size,
                    "gradient_accumulation_steps": plan.gradient_accumulation_steps,
                    "token_slots_per_step": plan.token_slots_per_step,
                    "trainable_tokens": int(lengths.trainable.sum()),
                    **count.as_dict(),
                    "real_tokens_per_step": round(count.real_tokens / count.optimizer_steps) if count.optimizer_steps else 0,
                    "target": target, "gpu": None, "est_seconds_per_epoch": None, "time_note": None,
                }
                try:
                    gpu = gpus.resolve_target(target, None)
                    facts = model_facts.lookup(loaded.base_model)
                    if facts is None:
                        raise ValueError(f"no architecture facts for {loaded.base_model}")
                    row["gpu"] = gpu.name
                    seconds = epoch_seconds(count, cfg, facts, gpu, args.mfu)
                    row["est_seconds_per_epoch"] = round(seconds, 1) if seconds is not None else None
                except Exception as exc:  # noqa: BLE001 - the table still shows tokens; say why time is missing
                    row["time_note"] = f"{type(exc).__name__}: {exc}"
                results.append(row)
    return results, notes


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def render(results: list[dict], notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(170, Console().width))
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        rows = [r for r in results if r["dataset"] == dataset]
        table = Table(title=f"{dataset}: {rows[0]['examples_in_dataset']:,} examples ({rows[0]['dataset_source']})",
                      title_justify="left")
        for column in ("config [variant]", "batching", "real tok/epoch", "processed tok/epoch", "efficiency",
                       "steps/epoch", "real tok/step", "GPU", "est. time/epoch"):
            table.add_column(column, justify="left" if column in ("config [variant]", "batching", "GPU") else "right",
                             no_wrap=column in ("config [variant]", "batching"))
        for r in rows:
            table.add_row(f"{Path(r['config']).stem} [{r['variant']}]", r["batching"], f"{r['real_tokens']:,}",
                          f"{r['processed_tokens']:,}", f"{r['token_efficiency']:.3f}", f"{r['optimizer_steps']:,}",
                          f"{r['real_tokens_per_step']:,}", r["gpu"] or r["target"] or "?",
                          _duration(r["est_seconds_per_epoch"]))
        console.print(table)
    missing = {r["time_note"] for r in results if r["time_note"]}
    for note in [*notes, *sorted(missing)]:
        console.print(f"note: {note}")
    console.print("efficiency = real tokens / processed tokens (padding included); steps = optimizer steps "
                  "(micro batches / gradient_accumulation_steps); time from cli_tuner/estimates/throughput.py's throughput "
                  "model on the config's target GPU, charged for processed tokens")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_tokens", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[],
                        help=f"config to measure (repeatable; default: {', '.join(SHIPPED_CONFIGS)})")
    parser.add_argument("--overlay", action="append", default=[], metavar="YAML",
                        help="extra YAML merged over every variant (repeatable)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key in every variant, e.g. --set sample_packing_bin_size=512")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=PATH",
                        help="chat JSONL file or NL2Bash folder (all.nl + all.cm); repeatable "
                             "(default: sample=data/processed/train.jsonl, nl2bash=../shared/data/nl2bash)")
    parser.add_argument("--tokenizer", default=None, help="one local tokenizer folder for every config")
    parser.add_argument("--tokenizer-dir", action="append", default=[], metavar="NAME=PATH",
                        help="local tokenizer folder for a base_model id (default: ../shared/data/tokenizers/...)")
    parser.add_argument("--target", default=None, help="GPU to estimate time on (default: each config's cli_tuner.target)")
    parser.add_argument("--mfu", type=float, default=None,
                        help="model FLOPs utilization (default: cli_tuner.estimates.throughput's calibrated curve)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


def quiet_libraries() -> None:
    import logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    for name in ("axolotl", "transformers", "datasets", "torchao", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    from cli_tuner.errors import CliTunerError

    try:
        results, notes = measure(args)
    except CliTunerError as exc:  # a missing tokenizer or a bad config: one line, as the CLI does
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    if not results:
        print("error: no dataset found; pass --dataset NAME=PATH", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps({"results": results, "notes": notes}, indent=2))
    else:
        render(results, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
