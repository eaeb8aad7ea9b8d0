"""What `smoke`, `full` and `rehearse` share: load, preflight, then the training pipeline."""

from __future__ import annotations

import argparse

from .. import console
from ..checks import preflight
from ..config import LoadedConfig
from ..errors import AlreadyFinished, CliTunerError
from ..training import lifecycle, pipeline, tracking
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


def run_mode(mode: str, args: argparse.Namespace, last_overlays: tuple[str, ...] = (),
             rehearsal_options: pipeline.RehearsalOptions | None = None, before=None, after=None) -> int:
    """Load and train (with `train`'s hooks), then do what the finish setting says (stop the pod, stay up, exit)."""
    configured = None
    try:
        loaded = load(args, last_overlays)
        configured = loaded.tuner.get("on_finish")
        lifecycle.resolve_finish(args.on_finish, configured, mode, args.unattended)  # a typo fails now, not at the end
        train(mode, args, loaded, rehearsal_options, before=before, after=after)
    except CliTunerError as exc:
        if lifecycle.applies(exc, args.unattended):
            finish = _finish(args, configured, mode)
            what = "already finished" if isinstance(exc, AlreadyFinished) else f"exit {exc.exit_code}"
            # After the error line is shown (cli.main), so the log's last error says why.
            exc.then = lambda code: lifecycle.carry_out(finish, code, what)
        raise
    return lifecycle.carry_out(_finish(args, configured, mode), 0, "succeeded")


def _finish(args: argparse.Namespace, configured, mode: str) -> lifecycle.Finish:
    try:
        return lifecycle.resolve_finish(args.on_finish, configured, mode, args.unattended)
    except CliTunerError as exc:
        console.problem(f"{exc.message}; using exit")
        return lifecycle.Finish("exit", "fallback")
