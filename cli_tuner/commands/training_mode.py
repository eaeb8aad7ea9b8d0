"""What `smoke`, `full` and `rehearse` share: load, preflight, then the training pipeline."""

from __future__ import annotations

import argparse

from .. import console
from ..checks import preflight
from ..config import LoadedConfig
from ..training import pipeline, tracking
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_config_arguments(parser)
    options.add_run_arguments(parser)


def train(mode: str, args: argparse.Namespace, loaded: LoadedConfig,
          rehearsal_options: pipeline.RehearsalOptions | None = None, before=None, after=None) -> int:
    """`before(plan)` runs after preflight and before any model loads; `after(plan, run_dir)` after training."""
    if not args.verbose:
        console.hold_library_logs()  # libraries' warnings go to train.log, not between the bars
    with console.phase("data check") as check:
        plan = preflight.prepare(mode, loaded, output_root=args.output_root, check_environment=not args.skip_checks)
        check.done("passed")
    console.say(f"data verified: {len(plan.verified.files)} files, data sha256 {plan.verified.data_sha256[:16]}...")
    options.show_findings(plan)
    if before is not None:
        before(plan)
    run_dir = pipeline.run(plan, options.run_options(args), rehearsal_options)
    if after is not None:
        after(plan, run_dir)
    return 0


def load(args: argparse.Namespace, last_overlays: tuple[str, ...] = ()) -> LoadedConfig:
    tracking.load_env_file()  # before the config, so nothing reads the environment without .env
    return options.load_config(args, last_overlays)
