"""`validate`: everything that can be checked without a GPU, in the order a pod would hit it."""

from __future__ import annotations

import argparse

from .. import console, tokenizer
from ..checks import config_rules, data_report, distributed, preflight
from ..estimates import calibration, memory
from ..config import read_yaml
from ..run_spec import RunSpec
from ..training import slices, tracking
from . import options

NAME = "validate"
HELP = "check config, data, token budget and memory; no training, writes nothing"
SPEC = RunSpec(NAME, detects_machine=False, on_gpu=False)  # this machine is not the pod: its checks are doctor's


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_config_arguments(parser)
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder for the data report (overrides the config)")
    parser.add_argument("--no-data-report", action="store_true", help="skip token statistics (no tokenizer needed)")
    options.add_gpus_argument(parser)


def run(args: argparse.Namespace) -> int:
    tracking.load_env_file()  # as the training modes do: the environment stand-ins of the settings are checked too
    loaded = options.load_config(args)
    topology = options.topology(args)
    verified = preflight.verify_data(loaded)  # the data first, as in every verb
    if not args.no_data_report:
        tokenizer.locate(args.tokenizer or loaded.tokenizer_source)  # found or refused in ms, before the slow imports
    plan = preflight.prepare(SPEC, loaded, topology=topology, verified=verified)
    console.out(f"data: {len(verified.files)} files match their manifest (data sha256 {verified.data_sha256[:16]}...)")
    options.show_findings(plan)
    console.out(f"config: {loaded.path} passes Axolotl's schema and the stricter checks "
                f"({plan.facts.model_type}, {plan.facts.source} facts)")
    report = None
    if not args.no_data_report:
        # the training verbs' data checks (not cached here: validate is where a fix is checked again)
        report, _ = preflight.check_training_data(plan, None, tokenizer_override=args.tokenizer)
        data_report.show(report)
        data_report.raise_for_errors(report)
        slices.require_eval_batch(loaded, loaded.axolotl, report)
    show_batch(loaded, topology)
    if plan.target is not None:
        estimate, check = preflight.memory_on(loaded, plan.facts, plan.target, topology)
        console.show(estimate.renderable())
        memory.raise_unless_fits(check)
        if check.failed:
            console.problem(f"warning: {check.line()}")
        show_projection(plan, report)
    console.out(f"validate: OK ({loaded.path})")
    return 0


def show_projection(plan, report: data_report.DataReport | None) -> None:
    """The full run's training time (and cost, given a price) as a range, with what it rests on."""
    lengths = report.train_lengths if report is not None else []
    _, price = calibration.settings(plan.loaded)
    projection = calibration.project(plan.loaded.axolotl, plan.facts, plan.target, plan.train_examples(), price,
                                     lengths, plan.topology.world_size)
    if projection is None:
        console.out(f"projected training time: unknown on {plan.target.name} (no peak TFLOP/s known, or packing "
                    f"without max_steps and no data report to count packed rows); `smoke` measures it")
    else:
        console.out(projection.line())
        if plan.loaded.axolotl.get("sample_packing") and not (plan.loaded.axolotl.get("max_steps") or 0) > 0:
            # the config checks could not count packed steps; the same count as the projection can
            for problem in config_rules.step_problems(plan.loaded.axolotl, projection.time.steps):
                console.problem(f"  warning: {problem.line()}")


def show_batch(loaded, topology) -> None:
    """The strategy, the processes and the effective batch; advice when they change the config's own."""
    batch = distributed.batch_of(loaded.axolotl, topology.world_size, read_yaml(loaded.path))
    console.out(f"strategy: {distributed.strategy_of(loaded.axolotl)} on {topology.world_size} "
                f"process{'es' if topology.world_size != 1 else ''}; {batch.line()}")
    advice = batch.advice()
    if advice:
        console.problem(f"note: {advice}")
