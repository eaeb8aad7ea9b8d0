"""CPU rehearsal throughput with and without sample packing, in one run, as a ratio.

    .venv/bin/python -m bench.bench_rehearsal_packing            # ~4 min on 2 cores
    .venv/bin/python -m bench.bench_rehearsal_packing --steps 8 --json

Runs `entrypoint.py rehearse --packing off` and then `--packing on` on the same config, data,
tokenizer and step count, and reads what Axolotl logged: per step the trainable (label) tokens
and the token slots processed (`tokens/trainable`, `tokens/total` in trainer_state.json), and the
trainable-token rate between consecutive logs. Throughput is taken over steps 2..N: step 1 pays
for one-time warm-up, and the evaluations (Axolotl evaluates at the start and at the end) fall
outside those intervals. train_runtime (which includes both evaluations) is shown beside it.

Data: the first --train-examples / --val-examples / --test-examples of each split, written to a
temporary folder and locked, from data/processed when it holds a locked dataset, else from the
NL2Bash corpus converted with cli_tuner.corpus.nl2bash (its leak-free, filtered splits).
"""

from __future__ import annotations

if __package__ in (None, ""):  # `python bench/bench_rehearsal_packing.py`
    import sys
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))
    __package__ = "bench"

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .chat_lengths import DEFAULT_TOKENIZER_DIRS, REPO

SAMPLE_DATA = REPO / "data" / "processed"
NL2BASH = REPO.parent / "shared" / "data" / "nl2bash"
SPLITS = ("train", "val", "test")


def subset_data(data_dir: str | None, out_dir: Path, counts: dict[str, int]) -> tuple[Path, str]:
    """Locked split files holding the first counts[split] lines of each split of `data_dir`
    (default: the shipped sample data, or NL2Bash converted when that is not locked)."""
    from cli_tuner import data
    from cli_tuner.corpus import nl2bash

    source = Path(data_dir) if data_dir else (SAMPLE_DATA if (SAMPLE_DATA / "provenance.json").is_file() else None)
    if source is None:
        converted = out_dir / "nl2bash-full"
        nl2bash.convert(NL2BASH / "all.nl", NL2BASH / "all.cm", converted, seed=42, force=True)
        source, description = converted, f"NL2Bash ({NL2BASH}) converted by cli_tuner.corpus.nl2bash, seed 42"
    else:
        data.verify([source / f"{name}.jsonl" for name in SPLITS])
        description = f"{source} (manifest verified)"
    subset = out_dir / "data"
    subset.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        lines = [line for line in (source / f"{name}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
        (subset / f"{name}.jsonl").write_text("\n".join(lines[:counts[name]]) + "\n", encoding="utf-8")
    data.lock(subset, force=True)
    return subset, f"{description}; first {counts['train']}/{counts['val']}/{counts['test']} of train/val/test"


def rehearse(packing: str, args, data_dir: Path, output_root: Path) -> dict:
    command = [sys.executable, str(REPO / "entrypoint.py"), "rehearse", "--config", args.config,
               "--packing", packing, "--steps", str(args.steps), "--tokenizer", args.tokenizer,
               "--new-run", "--output-root", str(output_root),
               "--set", f"datasets.0.path={data_dir / 'train.jsonl'}",
               "--set", f"test_datasets.0.path={data_dir / 'val.jsonl'}",
               "--set", f"cli_tuner.test_file={data_dir / 'test.jsonl'}",
               # Separate prepared-dataset caches: neither run may reuse the other's tokenized set.
               "--set", f"dataset_prepared_path={output_root / 'prepared'}"]
    if args.skip_checks:
        command.append("--skip-checks")
    if args.allow_dangerous_data:
        command.append("--allow-dangerous-data")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline",
           "AXOLOTL_DO_NOT_TRACK": "1"}
    log_path = output_root / f"rehearse-packing-{packing}.log"
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        result = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        tail = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()][-5:]
        raise SystemExit(f"error: rehearse --packing {packing} exited {result.returncode} "
                         f"(log {log_path}):\n  " + "\n  ".join(tail))
    run_dirs = [p for p in output_root.iterdir() if p.is_dir() and (p / "progress.json").is_file()]
    if len(run_dirs) != 1:
        raise SystemExit(f"error: expected one run folder under {output_root}, found {len(run_dirs)}")
    return {**throughput(run_dirs[0]), "wall_s": round(wall, 1), "run_dir": str(run_dirs[0]), "log": str(log_path)}


def throughput(run_dir: Path) -> dict:
    """Token rates of one rehearsal from its last checkpoint's trainer_state.json and progress.json."""
    progress = json.loads((run_dir / "progress.json").read_text())
    states = sorted(run_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    if not states:
        raise SystemExit(f"error: {run_dir} has no checkpoint-*/trainer_state.json")
    history = json.loads(states[-1].read_text())["log_history"]
    return rates_from_history(history, progress.get("train_runtime"))


def rates_from_history(history: list[dict], train_runtime: float | None) -> dict:
    steps = [h for h in history if "tokens/trainable" in h and "loss" in h]
    if len(steps) < 2:
        raise SystemExit("error: fewer than 2 logged training steps; run with --steps 3 or more")
    seconds = trainable = total = 0.0
    for previous, current in zip(steps, steps[1:]):
        delta = current["tokens/trainable"] - previous["tokens/trainable"]
        rate = current.get("tokens/train_per_sec_per_gpu")
        if not rate:
            continue
        seconds += delta / rate
        trainable += delta
        total += current["tokens/total"] - previous["tokens/total"]
    last = steps[-1]
    return {
        "steps": last["step"],
        "trainable_tokens": int(last["tokens/trainable"]),
        "processed_tokens": int(last["tokens/total"]),
        "trainable_fraction": round(last["tokens/trainable"] / last["tokens/total"], 4),
        "timed_steps": f"2..{last['step']}",
        "timed_seconds": round(seconds, 2),
        "trainable_tokens_per_s": round(trainable / seconds, 1) if seconds else None,
        "processed_tokens_per_s": round(total / seconds, 1) if seconds else None,
        "train_runtime_s": train_runtime,
        "trainable_tokens_per_s_incl_eval": round(last["tokens/trainable"] / train_runtime, 1) if train_runtime else None,
    }


def render(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"CPU rehearsal, {report['steps']} steps each: {report['config']}", title_justify="left")
    for column in ("packing", "trainable tokens", "processed tokens", "trainable/processed", "timed s (steps 2..N)",
                   "trainable tok/s", "processed tok/s", "train_runtime s", "wall s"):
        table.add_column(column, justify="left" if column == "packing" else "right")
    for name in ("off", "on"):
        r = report["runs"][name]
        table.add_row(name, f"{r['trainable_tokens']:,}", f"{r['processed_tokens']:,}", f"{r['trainable_fraction']:.3f}",
                      f"{r['timed_seconds']:.1f}", f"{r['trainable_tokens_per_s']:.1f}", f"{r['processed_tokens_per_s']:.1f}",
                      f"{r['train_runtime_s']:.1f}", f"{r['wall_s']:.1f}")
    console = Console(width=max(150, Console().width))
    console.print(table)
    console.print(f"packing on / off, trainable tokens per second: [bold]{report['ratio_trainable_tokens_per_s']:.2f}x[/bold] "
                  f"(including evaluations: {report['ratio_incl_eval']:.2f}x)")
    console.print(f"data: {report['data']}; tokenizer: {report['tokenizer']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_rehearsal_packing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/axolotl_config.yaml")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER_DIRS["Qwen/Qwen2.5-Coder-7B-Instruct"]))
    parser.add_argument("--data-dir", default=None,
                        help="locked split folder (default: data/processed if locked, else NL2Bash converted)")
    parser.add_argument("--train-examples", type=int, default=2000)
    parser.add_argument("--val-examples", type=int, default=16)
    parser.add_argument("--test-examples", type=int, default=8)
    parser.add_argument("--output-root", default=None, help="where the two runs go (default: a temporary folder)")
    parser.add_argument("--skip-checks", action="store_true", help="pass --skip-checks to rehearse")
    parser.add_argument("--allow-dangerous-data", action="store_true", help="pass --allow-dangerous-data to rehearse")
    parser.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = Path(args.output_root) if args.output_root else Path(tempfile.mkdtemp(prefix="bench-packing-"))
    root.mkdir(parents=True, exist_ok=True)
    counts = {"train": args.train_examples, "val": args.val_examples, "test": args.test_examples}
    data_dir, description = subset_data(args.data_dir, root, counts)
    runs = {}
    for packing in ("off", "on"):
        out = root / f"packing-{packing}"
        out.mkdir(exist_ok=True)
        runs[packing] = rehearse(packing, args, data_dir, out)
    off, on = runs["off"], runs["on"]
    report = {
        "config": args.config, "steps": args.steps, "tokenizer": args.tokenizer, "data": description,
        "runs": runs,
        "ratio_trainable_tokens_per_s": round(on["trainable_tokens_per_s"] / off["trainable_tokens_per_s"], 2),
        "ratio_incl_eval": round(on["trainable_tokens_per_s_incl_eval"] / off["trainable_tokens_per_s_incl_eval"], 2),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
