"""Where smoke's wall time goes, phase by phase: everything a smoke run does besides its 10 steps.

    .venv/bin/python -m bench.smoke_phases             # ~4 min on 2 cores
    .venv/bin/python -m bench.smoke_phases --json

Smoke is paid GPU time, and on the first GPU run (docs/performance.md, "Smoke's own cost") 84-144 s
of a 136-184 s smoke were outside its 10 training steps. This script runs smoke's exact shape on
this machine's CPU with the rehearsal's tiny model of the config's architecture and the real
tokenizer (so the data work is the pod's; model load and step times are not):

1. The job's side, in this process: the config with smoke's overlay, preflight without the
   environment checks (data verification, model facts, config checks), the data checks
   (validate's, uncached then cached), the smoke slice's sizing and writing.
2. Axolotl's side, in a fresh process each, as `axolotl train` runs it: imports, `load_cfg`,
   `load_datasets` (tokenization, filters, saving the prepared sets), model load, trainer build,
   then `trainer.train()` with a callback that stamps every step, evaluation and checkpoint save,
   then the final adapter save. Twice:
   - "before": `dataset_num_proc` left to Axolotl, which takes the machine's CPU count
     (`--pod-cpus`, 16 on the measured H200 pod; AXOLOTL_DATASET_NUM_PROC sets it here), and
     datasets' own `save_to_disk` (a spawned pool and manager for every prepared set);
   - "after": the resolved config as the job now writes it (`pipeline.preprocessing_processes`),
     with the job's plugin saving one-writer sets in process (`callbacks/in_process_save.py`).
   Each run starts with an empty prepared-dataset folder, as a fresh smoke run folder does.
   `--runs after` (or `before`) runs one of them.
"""

from __future__ import annotations

if __package__ in (None, ""):  # `python bench/smoke_phases.py`
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

POD_CPUS = 16  # the measured H200 pod (docs/performance.md): Axolotl's default dataset_num_proc there


# ------------------------------------------------------------------ worker (a fresh process)

def worker(config_path: str, before: bool) -> dict:
    marks: list[tuple[str, float]] = [("python start", WORKER_STARTED)]

    def mark(name: str) -> None:
        marks.append((name, time.time()))

    import torch  # noqa: F401
    import transformers  # noqa: F401
    from axolotl.cli.args import TrainerCliArgs
    from axolotl.cli.config import load_cfg
    from axolotl.common.datasets import load_datasets
    from axolotl.integrations.base import PluginManager
    from axolotl.train import save_trained_model, setup_model_and_tokenizer
    from axolotl.utils.trainer import setup_trainer
    from transformers import TrainerCallback
    mark("imports (torch, transformers, axolotl)")

    cfg = load_cfg(config_path)
    if before:  # the job's plugin registered its in-process save in load_cfg: undo it, as before that commit
        from datasets import Dataset

        Dataset.save_to_disk = getattr(Dataset.save_to_disk, "__wrapped__", Dataset.save_to_disk)
    mark("load_cfg (schema, defaults, plugins)")
    meta = load_datasets(cfg=cfg, cli_args=TrainerCliArgs())
    mark("load_datasets (tokenize, filter, save prepared sets)")
    model, tokenizer, peft_config, processor = setup_model_and_tokenizer(cfg)
    mark("model load (+ LoRA)")
    trainer = setup_trainer(cfg=cfg, train_dataset=meta.train_dataset, eval_dataset=meta.eval_dataset,
                            model=model, tokenizer=tokenizer, processor=processor,
                            total_num_steps=meta.total_num_steps, model_ref=None, peft_config=peft_config)
    PluginManager.get_instance().post_trainer_create(cfg, trainer)
    mark("trainer build")

    events: list[tuple[str, float]] = []

    class Stamps(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            events.append(("train begin", time.time()))

        def on_step_begin(self, args, state, control, **kwargs):
            events.append(("step begin", time.time()))

        def on_step_end(self, args, state, control, **kwargs):
            events.append(("step end", time.time()))

        def on_evaluate(self, args, state, control, **kwargs):
            events.append(("evaluate", time.time()))

        def on_save(self, args, state, control, **kwargs):
            events.append(("save", time.time()))

        def on_log(self, args, state, control, logs=None, **kwargs):
            # an evaluation logs its metrics before on_evaluate fires: the interval is the evaluation's
            events.append(("evaluate" if "eval_loss" in (logs or {}) else "log", time.time()))

    trainer.add_callback(Stamps())
    trainer.train()
    mark("trainer.train()")
    save_trained_model(cfg, trainer, model)
    mark("final adapter save")
    return {"marks": marks, "events": events, "num_proc": cfg.dataset_num_proc,
            "train_rows": len(meta.train_dataset), "eval_rows": len(meta.eval_dataset) if meta.eval_dataset else 0}


# ------------------------------------------------------------------ parent

# What each interval inside trainer.train() is, named by the event that ends it.
INSIDE_TRAIN = {"step end": "10 training steps", "evaluate": "evaluations (at start, step 5, step 10)",
                "save": "checkpoint saves (steps 5, 10)", "log": "logging", "step begin": "between steps",
                "train begin": "train() setup"}


def phases(report: dict, launched: float) -> list[dict]:
    """Seconds per phase: the worker's marks, with trainer.train() split by what its intervals were."""
    rows, previous = [], launched
    train_start = train_end = None
    for name, stamp in report["marks"]:
        if name == "trainer.train()":
            train_start, train_end = previous, stamp
            inside: dict[str, float] = {}
            last = previous
            for event, when in report["events"]:
                label = INSIDE_TRAIN[event]
                inside[label] = inside.get(label, 0.0) + (when - last)
                last = when
            inside["train() end"] = train_end - last
            rows += [{"phase": f"  {label}", "seconds": round(seconds, 2), "inside_train": True}
                     for label, seconds in inside.items()]
        else:
            rows.append({"phase": name, "seconds": round(stamp - previous, 2)})
        previous = stamp
    return rows


def run_worker(config_path: Path, env_extra: dict, before: bool) -> dict:
    env = {**os.environ, **OFFLINE_ENV, **env_extra,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        launched = time.time()
        command = [sys.executable, "-m", "bench.smoke_phases", "--worker", str(config_path), "--result", out.name]
        result = subprocess.run(command + (["--before"] if before else []), cwd=REPO, env=env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n  ".join([line for line in (result.stdout + result.stderr).splitlines() if line.strip()][-8:])
            raise SystemExit(f"error: smoke-phases worker exited {result.returncode}:\n  {tail}")
        report = json.loads(Path(out.name).read_text())
    report["phases"] = phases(report, launched)
    report["total_s"] = round(sum(p["seconds"] for p in report["phases"]), 2)
    steps = next((p["seconds"] for p in report["phases"] if p["phase"].strip() == INSIDE_TRAIN["step end"]), 0.0)
    report["outside_steps_s"] = round(report["total_s"] - steps, 2)
    return report


def job_side(root: Path, args, data_dir: Path):
    """The job's own work before Axolotl starts, timed here; (phases, the loaded smoke config, plan)."""
    from cli_tuner import config as config_module
    from cli_tuner.checks import preflight
    from cli_tuner.commands import smoke
    from cli_tuner.paths import SMOKE_OVERLAY
    from cli_tuner.training import slices

    rows: list[dict] = []

    def timed(name, call):
        started = time.perf_counter()
        value = call()
        rows.append({"phase": name, "seconds": round(time.perf_counter() - started, 2)})
        return value

    sets = [f"datasets.0.path={data_dir / 'train.jsonl'}", f"test_datasets.0.path={data_dir / 'val.jsonl'}",
            f"cli_tuner.test_file={data_dir / 'test.jsonl'}", f"tokenizer_config={args.tokenizer}"]
    loaded = timed("config + smoke overlay", lambda: config_module.load(REPO / args.config, overlays=[SMOKE_OVERLAY],
                                                                         sets=sets))
    plan = timed("preflight (data hash, facts, config checks)",
                 lambda: preflight.prepare(smoke.SPEC, loaded, output_root=root, check_environment=False))
    report = timed("data checks (first time)", lambda: preflight.check_training_data(plan, root))[0]
    timed("data checks (cached)", lambda: preflight.check_training_data(plan, root))
    timed("smoke slice sizing", lambda: slices.size_from_settings(plan.loaded, report))
    run_dir = root / "job-run"
    cfg = timed("smoke slices written", lambda: slices.write(plan.loaded, run_dir))
    return rows, cfg, plan


def resolved_config(root: Path, name: str, cfg: dict, plan, tokenizer_dir: Path, processes: int | None) -> Path:
    """Smoke's resolved config on the rehearsal's tiny model (10 steps, saves and evals every 5)."""
    import yaml

    from cli_tuner import tokenizer as tokenizer_loader
    from cli_tuner.training import pipeline, rehearsal

    model_dir = root / "rehearsal-model"
    if not (model_dir / "config.json").is_file():
        rehearsal.build_model(plan.facts, tokenizer_loader.load(str(tokenizer_dir)), model_dir)
    smoke = plan.loaded.axolotl
    resolved, _changes = rehearsal.rehearsal_config(cfg, model_dir, steps=int(smoke["max_steps"]),
                                                    save_steps=int(smoke["save_steps"]), packing="config")
    resolved.update(output_dir=str(root / name / "run"), dataset_prepared_path=str(root / name / "prepared"),
                    use_wandb=False, wandb_project=None, use_tensorboard=False,
                    plugins=sorted(set(resolved.get("plugins") or []) | {pipeline.PLUGIN}))
    if processes is not None:
        resolved["dataset_num_proc"] = processes
    path = root / name / "resolved_config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({k: v for k, v in resolved.items() if v is not None}, sort_keys=False))
    return path


def render(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    job = Table(title="smoke, the job's side before Axolotl (this process)", title_justify="left")
    job.add_column("phase")
    job.add_column("s", justify="right")
    for row in report["job_side"]:
        job.add_row(row["phase"], f"{row['seconds']:.2f}")
    console.print(job)
    runs = [name for name in ("before", "after") if name in report]
    table = Table(title="smoke, Axolotl's side (fresh process, CPU, rehearsal-size model)", title_justify="left")
    table.add_column("phase")
    for name in runs:
        saving = "spawned save" if name == "before" else "in-process save"
        table.add_column(f"{name}: dataset_num_proc {report[name]['num_proc']}, {saving} (s)", justify="right")
    for rows in zip(*(report[name]["phases"] for name in runs)):
        table.add_row(rows[0]["phase"], *(f"{r['seconds']:.2f}" for r in rows))
    table.add_row("[bold]total[/bold]", *(f"[bold]{report[n]['total_s']:.1f}[/bold]" for n in runs))
    table.add_row("[bold]outside the 10 steps[/bold]", *(f"[bold]{report[n]['outside_steps_s']:.1f}[/bold]" for n in runs))
    console.print(table)
    last = report[runs[-1]]
    console.print(f"train rows {last['train_rows']}, eval rows {last['eval_rows']} (the smoke slices); "
                  f"config {report['config']}; data {report['data']}; load average {report['load_average']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.smoke_phases", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/axolotl_config.yaml")
    parser.add_argument("--tokenizer", default=str(QWEN_REFERENCE))
    parser.add_argument("--data-dir", default=None, help="locked split folder (default: as bench_rehearsal_packing)")
    parser.add_argument("--pod-cpus", type=int, default=POD_CPUS,
                        help="the CPU count Axolotl's default dataset_num_proc takes in the 'before' run")
    parser.add_argument("--runs", default="before,after", help="which of before,after to run (default both)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--before", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        Path(args.result).write_text(json.dumps(worker(args.worker, args.before)))
        return 0
    from cli_tuner.training import pipeline

    from .bench_rehearsal_packing import subset_data

    root = Path(tempfile.mkdtemp(prefix="bench-smoke-phases-"))
    data_dir, description = subset_data(args.data_dir, root, {"train": 220, "val": 40, "test": 8})
    job_rows, cfg, plan = job_side(root, args, data_dir)
    before_path = resolved_config(root, "before", cfg, plan, Path(args.tokenizer), None)
    after_path = resolved_config(root, "after", cfg, plan, Path(args.tokenizer),
                                 pipeline.preprocessing_processes(cfg, os.environ, cpus=args.pod_cpus))
    report = {"config": args.config, "data": description, "folder": str(root), "job_side": job_rows}
    runs = [name.strip() for name in args.runs.split(",") if name.strip()]
    if "before" in runs:
        report["before"] = run_worker(before_path, {"AXOLOTL_DATASET_NUM_PROC": str(args.pod_cpus)}, before=True)
    if "after" in runs:
        report["after"] = run_worker(after_path, {}, before=False)
    report["load_average"] = [round(x, 1) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
