"""`validate`: everything that can be checked without a GPU, in the order a pod would hit it."""

from __future__ import annotations

import argparse

from .. import console
from ..checks import data_report, distributed, memory, preflight
from ..config import read_yaml
from . import options

NAME = "validate"
HELP = "check config, data, token budget and memory; no training"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_config_arguments(parser)
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder for the data report (overrides the config)")
    parser.add_argument("--no-data-report", action="store_true", help="skip token statistics (no tokenizer needed)")
    options.add_gpus_argument(parser)


def run(args: argparse.Namespace) -> int:
    loaded = options.load_config(args)
    topology = options.topology(args)
    plan = preflight.prepare(NAME, loaded, topology=topology)
    verified = plan.verified
    console.out(f"data: {len(verified.files)} files match their manifest (data sha256 {verified.data_sha256[:16]}...)")
    options.show_findings(plan)
    console.out(f"config: {loaded.path} passes Axolotl's schema and the stricter checks "
                f"({plan.facts.model_type}, {plan.facts.source} facts)")
    if not args.no_data_report:
        allow = loaded.allow_dangerous_data or bool(loaded.tuner.get("allow_dangerous_data"))
        report = data_report.check(loaded, tokenizer_override=args.tokenizer, allow_dangerous=allow)
        data_report.show(report)
        data_report.raise_for_errors(report)
    show_batch(loaded, topology)
    if plan.target is not None:
        estimate, check = preflight.memory_on(loaded, plan.facts, plan.target, topology)
        console.show(estimate.renderable())
        memory.raise_unless_fits(check)
        if check.failed:
            console.problem(f"warning: {check.line()}")
    console.out(f"validate: OK ({loaded.path})")
    return 0


def show_batch(loaded, topology) -> None:
    """The strategy, the processes and the effective batch; advice when they change the config's own."""
    batch = distributed.batch_of(loaded.axolotl, topology.world_size, read_yaml(loaded.path))
    console.out(f"strategy: {distributed.strategy_of(loaded.axolotl)} on {topology.world_size} "
                f"process{'es' if topology.world_size != 1 else ''}; {batch.line()}")
    advice = batch.advice()
    if advice:
        console.problem(f"note: {advice}")
