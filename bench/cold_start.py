"""Cold start: time from a fresh process to the first training step, by phase, and the dataset cache.

    .venv/bin/python -m bench.cold_start            # ~3 min on 2 cores
    .venv/bin/python -m bench.cold_start --json

What is measured (all on this machine, with the CPU rehearsal's tiny model of the config's
architecture and the real tokenizer; on a pod "model load" is the 4-bit 7B instead):

1. Phases, twice, each in a fresh Python process that runs what `axolotl train` runs, in the same
   order, with a clock between the calls: interpreter start, `import torch`, `import transformers`,
   the Axolotl imports, `load_cfg` (schema validation), `load_datasets` (tokenization, filtering,
   packing estimate; reads the prepared-dataset cache when it can), model load (+ LoRA), trainer
   build, then `trainer.train()` until the first optimizer step ends (Axolotl evaluates once
   before it: eval_on_start comes with eval_steps). The first run starts with an empty
   dataset_prepared_path, the second finds what the first saved.
2. The cache key: the train file is then rewritten in place (half its lines, same path) and the
   dataset loaded again. Axolotl 0.19 keys the prepared cache on the dataset's path, type and
   the tokenizer's name, not on the file's content, so this shows whether a stale set is reused.
3. End to end: `entrypoint.py rehearse` (the job's own checks, data hash verification, tiny model
   build, then `axolotl train` in a subprocess), timed from launch until progress.json reports
   step 1 (polled every 0.2 s); resolved_config.yaml's mtime marks the hand-over to Axolotl.
"""

from __future__ import annotations

if __package__ in (None, ""):  # `python bench/cold_start.py`
    import sys
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))
    __package__ = "bench"

import time

WORKER_STARTED = time.time()  # before any heavy import: the worker's own clock starts here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from . import OFFLINE_ENV, QWEN_REFERENCE  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ worker (a fresh process)

def worker(config_path: str, mode: str) -> dict:
    marks: list[tuple[str, float]] = [("python start", WORKER_STARTED)]

    def mark(name: str) -> None:
        marks.append((name, time.time()))

    import torch  # noqa: F401
    mark("import torch")
    import transformers  # noqa: F401
    mark("import transformers")
    from axolotl.cli.args import TrainerCliArgs
    from axolotl.cli.config import load_cfg
    from axolotl.common.datasets import load_datasets
    from axolotl.integrations.base import PluginManager
    from axolotl.train import setup_model_and_tokenizer
    from axolotl.utils.trainer import setup_trainer
    from transformers import TrainerCallback
    mark("import axolotl")

    cfg = load_cfg(config_path)
    mark("config (load_cfg: schema, defaults, plugins)")
    prepared = Path(cfg.dataset_prepared_path)
    before = set(prepared.glob("*")) if prepared.is_dir() else set()
    meta = load_datasets(cfg=cfg, cli_args=TrainerCliArgs())
    mark("dataset preparation (load_datasets)")
    after = set(prepared.glob("*")) if prepared.is_dir() else set()
    dataset = {"train_rows": len(meta.train_dataset), "eval_rows": len(meta.eval_dataset) if meta.eval_dataset else 0,
               "prepared_folders_created": len(after - before), "total_num_steps": meta.total_num_steps}
    if mode == "prepare-only":
        return {"marks": marks, "dataset": dataset}

    model, tokenizer, peft_config, processor = setup_model_and_tokenizer(cfg)
    mark("model load (+ LoRA)")
    trainer = setup_trainer(cfg=cfg, train_dataset=meta.train_dataset, eval_dataset=meta.eval_dataset,
                            model=model, tokenizer=tokenizer, processor=processor,
                            total_num_steps=meta.total_num_steps, model_ref=None, peft_config=peft_config)
    PluginManager.get_instance().post_trainer_create(cfg, trainer)
    mark("trainer build")

    class FirstStep(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            mark("trainer.train() setup")

        def on_evaluate(self, args, state, control, **kwargs):
            if state.global_step == 0:
                mark("evaluation before step 1 (eval_on_start)")

        def on_step_end(self, args, state, control, **kwargs):
            mark("first optimizer step")
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False
            control.should_log = False
            return control

    trainer.add_callback(FirstStep())
    trainer.train()
    return {"marks": marks, "dataset": dataset}


# ------------------------------------------------------------------ parent

def phases(marks: list, launched: float) -> list[dict]:
    """Seconds per phase; the first phase is interpreter start, counted from the parent's launch."""
    rows, previous = [], launched
    for name, stamp in marks:
        rows.append({"phase": name, "seconds": round(stamp - previous, 2)})
        previous = stamp
    return rows


def run_worker(config_path: Path, mode: str) -> dict:
    env = {**os.environ, **OFFLINE_ENV,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        launched = time.time()
        result = subprocess.run([sys.executable, "-m", "bench.cold_start", "--worker", str(config_path),
                                 "--mode", mode, "--result", out.name],
                                cwd=REPO, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n  ".join([line for line in (result.stdout + result.stderr).splitlines() if line.strip()][-8:])
            raise SystemExit(f"error: cold-start worker ({mode}) exited {result.returncode}:\n  {tail}")
        report = json.loads(Path(out.name).read_text())
    report["phases"] = phases(report.pop("marks"), launched)
    report["to_first_step_s"] = round(sum(p["seconds"] for p in report["phases"]), 2)
    return report


def build_setup(root: Path, config: str, tokenizer_dir: Path, data_dir: Path) -> Path:
    """The rehearsal's resolved config (tiny model, CPU settings), as `entrypoint.py rehearse` writes it."""
    import yaml

    from cli_tuner import config as config_module
    from cli_tuner import tokenizer as tokenizer_loader
    from cli_tuner.facts import models as model_facts
    from cli_tuner.training import rehearsal

    sets = [f"datasets.0.path={data_dir / 'train.jsonl'}", f"test_datasets.0.path={data_dir / 'val.jsonl'}"]
    loaded = config_module.load(REPO / config, sets=sets)
    model_dir = rehearsal.build_model(model_facts.lookup(loaded.base_model), tokenizer_loader.load(str(tokenizer_dir)),
                                      root / "rehearsal-model")
    cfg, _changes = rehearsal.rehearsal_config(dict(loaded.axolotl), model_dir, steps=2, save_steps=None, packing="config")
    cfg.update(output_dir=str(root / "run"), dataset_prepared_path=str(root / "prepared"),
               plugins=["cli_tuner.training.axolotl_plugin.CliTunerPlugin"], use_wandb=False, wandb_project=None,
               use_tensorboard=False)
    path = root / "resolved_config.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if v is not None}, sort_keys=False))
    return path


def stale_cache_check(config_path: Path, train_file: Path) -> dict:
    lines = [line for line in train_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    train_file.write_text("\n".join(lines[: len(lines) // 2]) + "\n", encoding="utf-8")
    report = run_worker(config_path, "prepare-only")
    rows = report["dataset"]["train_rows"]
    return {"lines_in_file_now": len(lines) // 2, "lines_before": len(lines), "train_rows_loaded": rows,
            "prepared_folders_created": report["dataset"]["prepared_folders_created"],
            "stale_cache_reused": report["dataset"]["prepared_folders_created"] == 0 and rows > len(lines) // 2}


def end_to_end(root: Path, args, data_dir: Path) -> dict:
    out = root / "e2e"
    command = [sys.executable, str(REPO / "entrypoint.py"), "rehearse", "--config", args.config, "--steps", "2",
               "--tokenizer", str(args.tokenizer), "--new-run", "--output-root", str(out),
               "--set", f"datasets.0.path={data_dir / 'train.jsonl'}",
               "--set", f"test_datasets.0.path={data_dir / 'val.jsonl'}",
               "--set", f"cli_tuner.test_file={data_dir / 'test.jsonl'}",
               "--set", f"dataset_prepared_path={out / 'prepared'}"]
    if args.skip_checks:
        command.append("--skip-checks")
    if args.allow_dangerous_data:
        command.append("--allow-dangerous-data")
    log = open(root / "e2e.log", "w", encoding="utf-8")
    launched = time.time()
    child = subprocess.Popen(command, cwd=REPO, env={**os.environ, **OFFLINE_ENV}, stdout=log, stderr=subprocess.STDOUT)
    first_step = None
    while child.poll() is None:
        for progress in out.glob("*/progress.json"):
            try:
                if json.loads(progress.read_text()).get("step", 0) >= 1 and first_step is None:
                    first_step = time.time()
            except (OSError, ValueError):
                pass
        time.sleep(0.2)
    log.close()
    if child.returncode != 0:
        tail = [line for line in (root / "e2e.log").read_text(errors="replace").splitlines() if line.strip()][-5:]
        raise SystemExit(f"error: rehearse exited {child.returncode} (log {root / 'e2e.log'}):\n  " + "\n  ".join(tail))
    resolved = next(out.glob("*/resolved_config.yaml"))
    return {"launch_to_axolotl_handover_s": round(resolved.stat().st_mtime - launched, 1),
            "launch_to_first_step_s": round(first_step - launched, 1) if first_step else None,
            "whole_rehearsal_s": round(time.time() - launched, 1)}


def render(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    first, second = report["first_start"], report["second_start"]
    table = Table(title="fresh process to first training step (CPU rehearsal model)", title_justify="left")
    table.add_column("phase")
    table.add_column("1st start (empty cache) s", justify="right")
    table.add_column("2nd start (cache filled) s", justify="right")
    for a, b in zip(first["phases"], second["phases"]):
        table.add_row(a["phase"], f"{a['seconds']:.2f}", f"{b['seconds']:.2f}")
    table.add_row("[bold]total[/bold]", f"[bold]{first['to_first_step_s']:.1f}[/bold]", f"[bold]{second['to_first_step_s']:.1f}[/bold]")
    console.print(table)
    console.print(f"prepared folders created: 1st start {first['dataset']['prepared_folders_created']}, "
                  f"2nd start {second['dataset']['prepared_folders_created']} "
                  f"({first['dataset']['train_rows']} train rows)")
    stale = report["stale_cache_check"]
    console.print(f"train file rewritten in place with {stale['lines_in_file_now']} of {stale['lines_before']} lines: "
                  f"Axolotl loaded {stale['train_rows_loaded']} rows, created {stale['prepared_folders_created']} new "
                  f"prepared folder(s): stale cache reused = {stale['stale_cache_reused']}")
    if report.get("end_to_end"):
        e2e = report["end_to_end"]
        console.print(f"entrypoint.py rehearse: hand-over to axolotl train after {e2e['launch_to_axolotl_handover_s']} s, "
                      f"first step at {e2e['launch_to_first_step_s']} s, whole rehearsal {e2e['whole_rehearsal_s']} s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/axolotl_config.yaml")
    parser.add_argument("--tokenizer", default=str(QWEN_REFERENCE))
    parser.add_argument("--data-dir", default=None, help="locked split folder (default: as bench_rehearsal_packing)")
    parser.add_argument("--train-examples", type=int, default=2000)
    parser.add_argument("--val-examples", type=int, default=16)
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the entrypoint.py rehearse timing")
    parser.add_argument("--skip-checks", action="store_true")
    parser.add_argument("--allow-dangerous-data", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="first-step", help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        Path(args.result).write_text(json.dumps(worker(args.worker, args.mode)))
        return 0
    from .bench_rehearsal_packing import subset_data

    root = Path(tempfile.mkdtemp(prefix="bench-cold-start-"))
    data_dir, description = subset_data(args.data_dir, root, {"train": args.train_examples, "val": args.val_examples, "test": 8})
    config_path = build_setup(root, args.config, Path(args.tokenizer), data_dir)
    report = {"config": args.config, "data": description, "tokenizer": args.tokenizer, "folder": str(root),
              "first_start": run_worker(config_path, "first-step"),
              "second_start": run_worker(config_path, "first-step")}
    if not args.no_end_to_end:
        report["end_to_end"] = end_to_end(root, args, data_dir)
    report["stale_cache_check"] = stale_cache_check(config_path, data_dir / "train.jsonl")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
