"""What `smoke`, `full` and `rehearse` share: load, preflight, then the training pipeline.

Each of those verbs says what it does in its `SPEC` (run_spec.RunSpec); everything here and below
reads the spec's fields, never the verb's name."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .. import console
from ..checks import attention, data_report, distributed, preflight
from ..config import LoadedConfig
from ..errors import AlreadyFinished, CliTunerError, EnvironmentProblem
from ..checks.distributed import Topology
from ..facts import machine as machine_facts
from ..run_spec import RunSpec
from ..training import lifecycle, pipeline, rehearsal, slices, tracking
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_config_arguments(parser)
    options.add_run_arguments(parser)


def add_gpu_arguments(parser: argparse.ArgumentParser) -> None:
    """smoke and full: processes per machine and the machines (torchrun's options)."""
    add_arguments(parser)
    options.add_gpus_argument(parser, "all visible GPUs on a CUDA machine, else 1")
    options.add_node_arguments(parser)


def topology_for(spec: RunSpec, args: argparse.Namespace) -> Topology:
    """The processes this run asks for: the rehearsal's --processes on the CPU, or --gpus (default:
    every visible CUDA GPU) with the machines' options."""
    if spec.cpu_rehearsal:
        return Topology(nproc_per_node=args.processes, cpu=True)
    found = machine_facts.detect()
    visible = found.device_count if found.kind == "cuda" else 0
    topology = options.topology(args, default_processes=max(visible, 1))
    if found.kind == "cuda" and topology.nproc_per_node > visible and not args.skip_checks:
        raise EnvironmentProblem(f"--gpus {topology.nproc_per_node}: this machine shows {visible} CUDA GPU"
                                 f"{'s' if visible != 1 else ''}; ask at most {visible} (CUDA_VISIBLE_DEVICES limits them)")
    return topology


def train(spec: RunSpec, args: argparse.Namespace, loaded: LoadedConfig,
          rehearsal_options: pipeline.RehearsalOptions | None = None, before=None, after=None) -> int:
    """`before(plan)` runs after preflight and before any model loads; `after(plan, run_dir)` after training."""
    if not args.verbose:
        console.hold_library_logs()  # libraries' warnings go to train.log, not between the bars
    if not args.skip_checks:
        preflight.require_device(spec, machine_facts.detect())  # the device first, under its own name
    with console.phase("data check") as check:
        plan = preflight.prepare(spec, loaded, output_root=args.output_root, check_environment=not args.skip_checks,
                                 topology=topology_for(spec, args))
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
    # The pod's eval batching on the eval set the pod's run evaluates (a settings slice: grown when short).
    if spec.slices_from_settings:
        slices.size_from_settings(plan.loaded, report, plan.topology.world_size)
    else:
        slices.require_eval_batch(plan.loaded, plan.loaded.axolotl, report)
    if spec.cpu_rehearsal:
        # The rehearsal batches as its resolved config says (row length, packing batching).
        cfg, _ = rehearsal.rehearsal_config(plan.loaded.axolotl, Path("rehearsal-model"), rehearsal_options.steps,
                                            rehearsal_options.save_steps, rehearsal_options.packing)
        slices.require_one_step(plan.loaded, slices.across(cfg, plan.topology.world_size), report, "the rehearsal")
        rehearsal_options = dataclasses.replace(rehearsal_options, val_examples=slices.rehearsal_eval_examples(
            plan.loaded, cfg, report, rehearsal_options.val_examples))
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


def load(args: argparse.Namespace, last_overlays: tuple[str, ...] = ()) -> LoadedConfig:
    tracking.load_env_file()  # before the config, so nothing reads the environment without .env
    return options.load_config(args, last_overlays, on_finish=args.on_finish)


def run_mode(spec: RunSpec, args: argparse.Namespace, last_overlays: tuple[str, ...] = (), rehearsal_for=None,
             before=None, after=None) -> int:
    """Load and train (with `train`'s hooks), then do what the finish setting says (stop the pod, stay up, exit).

    `rehearsal_for(loaded)`: the rehearsal's options, which depend on the loaded config."""
    loaded = None
    try:
        loaded = load(args, last_overlays)  # every setting is checked here, on_finish included
        rehearsal_options = rehearsal_for(loaded) if rehearsal_for is not None else None
        train(spec, args, loaded, rehearsal_options, before=before, after=after)
    except CliTunerError as exc:
        if lifecycle.applies(exc, args.unattended):
            finish = _finish(args, loaded, spec)
            what = "already finished" if isinstance(exc, AlreadyFinished) else f"exit {exc.exit_code}"
            # After the error line is shown (cli.main), so the log's last error says why.
            exc.then = lambda code: lifecycle.carry_out(finish, code, what)
        raise
    return lifecycle.carry_out(_finish(args, loaded, spec), 0, "succeeded")


def _finish(args: argparse.Namespace, loaded: LoadedConfig | None, spec: RunSpec) -> lifecycle.Finish:
    """The finish action; when the config did not load, from `--on-finish` and ON_FINISH alone."""
    try:
        settings = loaded.settings if loaded is not None else options.settings_without_config(args)
    except CliTunerError as exc:
        console.problem(f"{exc.message}; using exit")
        return lifecycle.Finish("exit", "fallback")
    return lifecycle.resolve_finish(settings, spec.stops_pod_when_attended, args.unattended)
