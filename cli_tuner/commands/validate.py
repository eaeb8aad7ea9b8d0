"""`validate`: everything that can be checked without a GPU, in the order a pod would hit it."""

from __future__ import annotations

import argparse

from .. import console
from ..checks import data_report, memory, preflight
from ..training import tracking
from . import options

NAME = "validate"
HELP = "check config, data, token budget and memory; no training"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_config_arguments(parser)
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder for the data report (overrides the config)")
    parser.add_argument("--no-data-report", action="store_true", help="skip token statistics (no tokenizer needed)")


def run(args: argparse.Namespace) -> int:
    tracking.load_env_file()  # as the training modes do: the environment stand-ins of the settings are checked too
    loaded = options.load_config(args)
    plan = preflight.prepare(NAME, loaded)
    verified = plan.verified
    console.out(f"data: {len(verified.files)} files match their manifest (data sha256 {verified.data_sha256[:16]}...)")
    options.show_findings(plan)
    console.out(f"config: {loaded.path} passes Axolotl's schema and the stricter checks "
                f"({plan.facts.model_type}, {plan.facts.source} facts)")
    if not args.no_data_report:
        allow = loaded.allow_dangerous_data or loaded.settings.allow_dangerous_data
        report = data_report.check(loaded, tokenizer_override=args.tokenizer, allow_dangerous=allow)
        data_report.show(report)
        data_report.raise_for_errors(report)
    if plan.target is not None:
        estimate, check = preflight.memory_on(loaded, plan.facts, plan.target)
        console.show(estimate.renderable())
        memory.raise_unless_fits(check)
        if check.failed:
            console.problem(f"warning: {check.line()}")
    console.out(f"validate: OK ({loaded.path})")
    return 0
