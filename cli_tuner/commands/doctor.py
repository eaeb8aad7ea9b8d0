"""`doctor`: what machine this is, which config suits it, and whether its software can run the job."""

from __future__ import annotations

import argparse

from .. import config, console
from ..checks import environment, preflight
from ..estimates import memory
from ..errors import EnvironmentProblem
from ..facts import machine as machine_facts
from ..findings import Check, markup_lines, summary_line
from . import options

NAME = "doctor"
HELP = "detect the platform, recommend a config, check the environment; writes nothing"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="also estimate this config's memory on the detected GPU")


def memory_check(loaded, facts, found: machine_facts.Machine) -> Check:
    """The config's memory estimate on this machine's GPU, or on its target when there is none."""
    if found.kind == "cpu":
        if not loaded.target:
            return Check("memory", True, "info", "no GPU here and no cli_tuner.target: nothing to estimate against")
        console.out(f"no GPU here: estimating {loaded.path} for its target {loaded.target}")
        gpu = preflight.resolve_target(loaded)
    else:
        gpu = machine_facts.gpu_spec(found)
    estimate, check = preflight.memory_on(loaded, facts, gpu)
    console.show(estimate.renderable())
    return check


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape

    found = machine_facts.detect()
    console.show(f"platform: {escape(found.describe())}", f"recommended config: {escape(machine_facts.recommendation(found))}")
    loaded = facts = None
    disk_need = None
    if args.config:
        loaded = config.load(args.config, **options.target_check())
        facts = preflight.resolve_facts(loaded)
        disk_need = memory.estimate_checkpoint_disk(loaded.axolotl, facts)
    results = environment.checks(found, gpu=True, probes=True, output_root=options.output_root(), disk_need_bytes=disk_need)
    if loaded is not None:
        results.append(memory_check(loaded, facts, found))
    console.show("checks:", *markup_lines(results))
    errors = [c for c in results if c.failed_error]
    warnings = [c for c in results if not c.ok and c.level == "warning"]
    console.out(f"doctor: {len(errors)} error(s), {len(warnings)} warning(s)")
    failed = summary_line(NAME, results)
    if failed:
        raise EnvironmentProblem(failed)
    return 0
