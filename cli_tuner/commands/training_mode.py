"""What `smoke`, `full` and `rehearse` share: load, preflight, then the training pipeline."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .. import console
from ..checks import attention, data_report, distributed, eval_batches, preflight, steps
from ..errors import DataError
from ..paths import SMOKE_OVERLAY
from ..config import LoadedConfig
from ..errors import AlreadyFinished, CliTunerError, EnvironmentProblem
from ..checks.distributed import Topology
from ..facts import machine as machine_facts
from ..training import lifecycle, pipeline, rehearsal, tracking
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_config_arguments(parser)
    options.add_run_arguments(parser)


def add_gpu_arguments(parser: argparse.ArgumentParser) -> None:
    """smoke and full: processes per machine and the machines (torchrun's options)."""
    add_arguments(parser)
    options.add_gpus_argument(parser, "all visible GPUs on a CUDA machine, else 1")
    options.add_node_arguments(parser)


def topology_for(mode: str, args: argparse.Namespace) -> Topology:
    """The processes this run asks for: the rehearsal's --processes on the CPU, or --gpus (default:
    every visible CUDA GPU) with the machines' options."""
    if mode == "rehearse":
        return Topology(nproc_per_node=args.processes, cpu=True)
    found = machine_facts.detect()
    visible = found.device_count if found.kind == "cuda" else 0
    topology = options.topology(args, default_processes=max(visible, 1))
    if found.kind == "cuda" and topology.nproc_per_node > visible and not args.skip_checks:
        raise EnvironmentProblem(f"--gpus {topology.nproc_per_node}: this machine shows {visible} CUDA GPU"
                                 f"{'s' if visible != 1 else ''}; ask at most {visible} (CUDA_VISIBLE_DEVICES limits them)")
    return topology


def train(mode: str, args: argparse.Namespace, loaded: LoadedConfig,
          rehearsal_options: pipeline.RehearsalOptions | None = None, before=None, after=None) -> int:
    """`before(plan)` runs after preflight and before any model loads; `after(plan, run_dir)` after training."""
    if not args.verbose:
        console.hold_library_logs()  # libraries' warnings go to train.log, not between the bars
    if not args.skip_checks:
        preflight.require_device(mode, machine_facts.detect())  # the device first, under its own name
    with console.phase("data check") as check:
        plan = preflight.prepare(mode, loaded, output_root=args.output_root, check_environment=not args.skip_checks,
                                 topology=topology_for(mode, args))
        check.done("passed")
    console.say(f"data verified: {len(plan.verified.files)} files, data sha256 {plan.verified.data_sha256[:16]}...")
    if plan.topology.distributed:
        batch = distributed.batch_of(plan.loaded.axolotl, plan.topology.world_size)
        console.say(f"{plan.topology.world_size} processes ({plan.topology.nnodes} machine"
                    f"{'s' if plan.topology.nnodes != 1 else ''}, {distributed.strategy_of(plan.loaded.axolotl)}"
                    f"{', gloo on CPU' if plan.topology.cpu else ''}): {batch.line()}")
    options.show_findings(plan)
    if plan.fallbacks:
        console.say(attention.describe(plan.fallbacks))
    report = check_data(plan, args.output_root, rehearsal_options)
    # The pod's eval batching on the eval set the pod's run evaluates (smoke: its slice, grown when short).
    if mode == "smoke":
        size_smoke_slice(plan.loaded, report, plan.topology.world_size)
    else:
        require_eval_batch(plan.loaded, plan.loaded.axolotl, report)
    if mode == "rehearse":
        # The rehearsal batches as its resolved config says (row length, packing batching).
        cfg, _ = rehearsal.rehearsal_config(plan.loaded.axolotl, Path("rehearsal-model"), rehearsal_options.steps,
                                            rehearsal_options.save_steps, rehearsal_options.packing)
        require_one_step(plan.loaded, across(cfg, plan.topology.world_size), report, "the rehearsal")
        rehearsal_options = size_rehearsal_eval(plan.loaded, cfg, report, rehearsal_options)
    if before is not None:
        before(plan)
    run_dir = pipeline.run(plan, options.run_options(args), rehearsal_options)
    if after is not None:
        after(plan, run_dir)
    return 0


def check_data(plan, output_root: str, rehearsal_options: pipeline.RehearsalOptions | None) -> data_report.DataReport:
    """validate's data checks, before any model loads (cached by data hash in the output root)."""
    tokenizer = name = None
    if rehearsal_options is not None:
        # The rehearsal's tokenizer: --tokenizer, the config's, or the local BPE it will train with.
        tokenizer, name = rehearsal.choose_tokenizer(rehearsal_options.tokenizer, plan.loaded)
    report, cached = preflight.check_training_data(plan, output_root, tokenizer=tokenizer, tokenizer_name=name)
    if cached:
        console.say(f"data checks: passed before for data sha256 {plan.verified.data_sha256[:16]}... "
                    f"and these settings ({len(report.warnings)} warnings); not repeated")
    elif report.errors:
        data_report.show(report)  # the table too: it is what the user fixes from
    else:
        data_report.show_findings(report, shown=data_report.SHOWN_BEFORE_TRAINING)  # `validate` shows the table
    data_report.raise_for_errors(report)
    return report


def require_one_step(loaded: LoadedConfig, cfg: dict, report: data_report.DataReport, who: str,
                     at_least: int = 1) -> int:
    """The examples one full optimizer step of `cfg` takes; DataError (exit 3) when the data has fewer."""
    needed = steps.examples_for_one_step(cfg, report.train_lengths, at_least=at_least)
    if needed is None:
        train = ", ".join(str(p) for p in loaded.split_files()["train"])
        raise DataError(f"{train}: {len(report.train_lengths)} examples ({sum(report.train_lengths)} tokens) are "
                        f"fewer than one optimizer step of {loaded.path} takes "
                        f"({steps.need_for_one_step(cfg).describe()}); {who} needs more training data, or "
                        "--set gradient_accumulation_steps / micro_batch_size lower")
    return needed


def across(cfg: dict, processes: int) -> dict:
    """`cfg` as one optimizer step of `processes` ranks consumes data: each rank takes its own micro
    batches, so a step takes the accumulation times the processes."""
    if processes <= 1:
        return cfg
    return {**cfg, "gradient_accumulation_steps": int(cfg.get("gradient_accumulation_steps") or 1) * processes}


def val_files(loaded: LoadedConfig) -> str:
    return ", ".join(str(p) for p in loaded.split_files()["val"])


def require_eval_batch(loaded: LoadedConfig, cfg: dict, report: data_report.DataReport) -> None:
    """DataError (exit 3) when `cfg` needs eval metrics and the whole eval split makes no eval batch."""
    eval_batches.require_one_batch(cfg, eval_batches.eval_set(report.val_lengths), val_files(loaded), str(loaded.path))


def size_smoke_slice(loaded: LoadedConfig, report: data_report.DataReport, processes: int = 1) -> None:
    """The smoke slice must hold one full optimizer step of this config's packing, micro batch and
    accumulation on every process, and one eval batch of its eval batching; grow it past
    cli_tuner.train_examples / val_examples when it does not."""
    asked = loaded.settings.train_examples
    if asked:
        cfg = across(loaded.axolotl, processes)
        needed = require_one_step(loaded, cfg, report, "smoke", at_least=asked)
        need = steps.need_for_one_step(cfg)
        if needed != asked:
            console.say(f"smoke slice: {needed} train examples, not {asked}: one optimizer step of this config "
                        f"takes {need.describe()}")
            loaded.settings = loaded.settings.with_values(train_examples=needed)
    asked = loaded.settings.val_examples or 0
    needed = eval_examples(loaded, loaded.axolotl, report, asked)
    if needed is not None and needed != asked:
        console.say(f"smoke slice: {needed} val examples, not {asked}: one eval batch of this config takes "
                    f"{eval_batches.batching(loaded.axolotl).describe()}")
        loaded.settings = loaded.settings.with_values(val_examples=needed)


def eval_examples(loaded: LoadedConfig, cfg: dict, report: data_report.DataReport, asked: int) -> int | None:
    """The val examples per file (at least `asked`) that make one eval batch of `cfg`; None when the
    slice is not cut (`asked` 0) or nothing evaluates. DataError (exit 3) when the whole files do not."""
    require_eval_batch(loaded, cfg, report)
    if not asked or not eval_batches.evaluates(cfg) or not report.val_lengths:
        return None
    return eval_batches.examples_for_one_batch(cfg, report.val_lengths, at_least=asked)


def size_rehearsal_eval(loaded: LoadedConfig, cfg: dict, report: data_report.DataReport,
                        options: pipeline.RehearsalOptions) -> pipeline.RehearsalOptions:
    """The rehearsal evaluates the first few val examples with the pod's eval batching at its own row
    length (`cfg`); more when one eval batch needs more."""
    needed = eval_examples(loaded, cfg, report, options.val_examples)
    if needed is None or needed == options.val_examples:
        return options
    console.say(f"rehearsal eval slice: {needed} val examples, not {options.val_examples}: one eval batch of "
                f"the rehearsal takes {eval_batches.batching(cfg).describe()}")
    return dataclasses.replace(options, val_examples=needed)


def mode_overlays(mode: str) -> tuple[str, ...]:
    """A mode's own overlays, applied after the user's (so a user overlay cannot stretch a smoke
    run); --set still wins over them."""
    return (str(SMOKE_OVERLAY),) if mode == "smoke" else ()


def load(args: argparse.Namespace, last_overlays: tuple[str, ...] = ()) -> LoadedConfig:
    tracking.load_env_file()  # before the config, so nothing reads the environment without .env
    return options.load_config(args, last_overlays, on_finish=args.on_finish)


def run_mode(mode: str, args: argparse.Namespace, last_overlays: tuple[str, ...] = (), rehearsal_for=None,
             before=None, after=None) -> int:
    """Load and train (with `train`'s hooks), then do what the finish setting says (stop the pod, stay up, exit).

    `rehearsal_for(loaded)`: the rehearsal's options, which depend on the loaded config."""
    loaded = None
    try:
        loaded = load(args, last_overlays)  # every setting is checked here, on_finish included
        rehearsal_options = rehearsal_for(loaded) if rehearsal_for is not None else None
        train(mode, args, loaded, rehearsal_options, before=before, after=after)
    except CliTunerError as exc:
        if lifecycle.applies(exc, args.unattended):
            finish = _finish(args, loaded, mode)
            what = "already finished" if isinstance(exc, AlreadyFinished) else f"exit {exc.exit_code}"
            # After the error line is shown (cli.main), so the log's last error says why.
            exc.then = lambda code: lifecycle.carry_out(finish, code, what)
        raise
    return lifecycle.carry_out(_finish(args, loaded, mode), 0, "succeeded")


def _finish(args: argparse.Namespace, loaded: LoadedConfig | None, mode: str) -> lifecycle.Finish:
    """The finish action; when the config did not load, from `--on-finish` and ON_FINISH alone."""
    try:
        settings = loaded.settings if loaded is not None else options.settings_without_config(args)
    except CliTunerError as exc:
        console.problem(f"{exc.message}; using exit")
        return lifecycle.Finish("exit", "fallback")
    return lifecycle.resolve_finish(settings, mode, args.unattended)
