"""The parser, built from the command modules; the environment as argv; errors as exit codes.

Heavy libraries (torch, transformers, axolotl) are imported inside the library functions that
need them, so `--help`, `lock-data` and the manifest check answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__, commands, console
from .errors import EXIT_INTERRUPTED, EXIT_UNEXPECTED, EXIT_USAGE, CliTunerError, UsageError

MODES = ("validate", "smoke", "full", "rehearse")

EXAMPLES = """\
examples:
  {run} rehearse                       # CPU rehearsal of the default config
  {run} validate --config configs/training_config_h100.yaml
  {run} smoke --set micro_batch_size=2
  {run} lock-data --data-dir data/processed --force
  TRAIN_MODE=full {run}                 # what the container runs on a pod
"""
EXIT_CODES = """
exit codes: 0 ok, 1 unexpected, 2 usage, 3 data integrity, 4 invalid config,
            5 environment/resources, 6 checkpoint gate failed,
            7 refused: the run failed the same way too often, 130 interrupted
"""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default, where it has one to show (not None, an off switch or an empty list)."""

    def _get_help_string(self, action):
        if action.default in (None, False, []) or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    prog = program_name()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="cli-tuner: validate, rehearse and run Axolotl QLoRA fine-tuning with locked data and provenance.",
        epilog=EXAMPLES.format(run=invocation(prog)) + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands.ALL:
        command.add_arguments(sub.add_parser(command.NAME, help=command.HELP, description=command.HELP,
                                             formatter_class=HelpFormatter))
    return parser


def invocation(prog: str) -> str:
    """How the user starts the tool again: the installed command, or the script through Python."""
    return prog if prog == "cli-tuner" else f"python {prog}"


def program_name() -> str:
    """What the user typed: `cli-tuner` (the installed command) or `entrypoint.py` (the images, a checkout)."""
    typed = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return typed if typed in ("cli-tuner", "entrypoint.py") else "entrypoint.py"


def _command_from_env(argv: list[str]) -> list[str]:
    """`docker run IMAGE` with no arguments runs TRAIN_MODE (validate/smoke/full/rehearse)."""
    if argv:
        return argv
    mode = os.environ.get("TRAIN_MODE", "").strip()
    if not mode:
        return argv
    if mode not in MODES:
        raise UsageError(f"TRAIN_MODE={mode!r} is not a mode; use one of {', '.join(MODES)}")
    # Nobody is at a terminal and the container may be started again: errors follow --on-finish.
    return [mode] if mode == "validate" else [mode, "--unattended"]


def dispatch(args: argparse.Namespace) -> int:
    for command in commands.ALL:
        if command.NAME == args.command:
            return command.run(args)
    raise UsageError(f"unknown command {args.command!r}; run {program_name()} --help")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    console.quiet_known_library_noise()
    parser = build_parser()
    try:
        argv = _command_from_env(list(sys.argv[1:] if argv is None else argv))
    except CliTunerError as exc:
        console.error(exc.message)
        return exc.exit_code
    if not argv:
        parser.print_help()
        return EXIT_USAGE
    args = parser.parse_args(argv)  # argparse exits 2 on a usage error, matching EXIT_USAGE
    try:
        return dispatch(args)
    except CliTunerError as exc:
        for line in exc.details:
            console.problem(line)
        console.error(exc.message)
        return exc.then(exc.exit_code) if exc.then else exc.exit_code
    except KeyboardInterrupt:
        console.error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, and where to look
        if os.environ.get("CLI_TUNER_DEBUG"):
            raise
        console.error(f"unexpected {type(exc).__name__}: {exc} (set CLI_TUNER_DEBUG=1 for the traceback)")
        return EXIT_UNEXPECTED
