"""Subcommands, their help, and the mapping from errors to exit codes.

Heavy libraries (torch, transformers, axolotl) are imported inside the command functions so
`--help`, `lock-data` and the manifest check answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import EXIT_UNEXPECTED, EXIT_USAGE, CliTunerError, UsageError

DEFAULT_CONFIG = "configs/axolotl_config.yaml"
MODES = ("validate", "smoke", "full", "rehearse")

EPILOG = """\
examples:
  python entrypoint.py rehearse                       # CPU rehearsal of the default config
  python entrypoint.py validate --config configs/training_config_h100.yaml
  python entrypoint.py smoke --set micro_batch_size=2
  python entrypoint.py lock-data --data-dir data/processed --force
  TRAIN_MODE=full python entrypoint.py                 # what the container runs on a pod

exit codes: 0 ok, 1 unexpected, 2 usage, 3 data integrity, 4 invalid config,
            5 environment/resources, 6 checkpoint gate failed, 130 interrupted
"""


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=os.environ.get("TRAIN_CONFIG", DEFAULT_CONFIG),
                        help="Axolotl YAML config (env TRAIN_CONFIG; default %(default)s)")
    parser.add_argument("--overlay", action="append", default=[], metavar="YAML",
                        help="extra YAML deep-merged over the config, in order (repeatable)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key; dotted keys reach nested tables, values are YAML-typed "
                             "(e.g. --set micro_batch_size=2 --set cli_tuner.target=h100)")
    parser.add_argument("--target", default=None,
                        help="hardware to check against: a5000, h100, m4, cpu, ... (default: the config's cli_tuner.target)")
    parser.add_argument("--gpu-memory", type=float, default=None, metavar="GB",
                        help="GPU memory of an unlisted target, in GB")
    parser.add_argument("--allow-trust-remote-code", action="store_true",
                        help="permit trust_remote_code: true (runs code from the model repo)")
    parser.add_argument("--allow-dangerous-data", action="store_true",
                        help="train even when the data holds commands the risk check flags")


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-root", default=os.environ.get("OUTPUT_ROOT", "outputs"),
                        help="folder that holds one sub-folder per run (env OUTPUT_ROOT; default %(default)s)")
    parser.add_argument("--run-id", default=os.environ.get("RUN_ID"),
                        help="name of the run folder (env RUN_ID); default: mode-confighash-datahash, "
                             "so a restarted pod resumes the same run")
    parser.add_argument("--new-run", action="store_true",
                        help="start a fresh run folder even if this config and data finished before")
    parser.add_argument("--no-resume", action="store_true",
                        help="refuse to continue from checkpoints found in the run folder")
    parser.add_argument("--skip-checks", action="store_true",
                        help="skip the environment checks before training (not recommended)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="entrypoint.py",
        description="cli-tuner: validate, rehearse and run Axolotl QLoRA fine-tuning with locked data and provenance.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("validate", help="check config, data, token budget and memory; no training")
    _add_config_args(p)
    p.add_argument("--tokenizer", default=None, help="tokenizer folder for the data report (overrides the config)")
    p.add_argument("--no-data-report", action="store_true", help="skip token statistics (no tokenizer needed)")

    for name, text in (
        ("smoke", "10-step smoke run derived from the full config (overlay configs/axolotl_smoke_test.yaml)"),
        ("full", "the full training run, then the checkpoint check and phase2-final/"),
        ("rehearse", "CPU rehearsal: tiny random model of the same architecture, real axolotl train"),
    ):
        p = sub.add_parser(name, help=text)
        _add_config_args(p)
        _add_run_args(p)
        if name == "rehearse":
            p.add_argument("--tokenizer", default=os.environ.get("REHEARSAL_TOKENIZER"),
                           help="local folder of the base model's tokenizer (env REHEARSAL_TOKENIZER)")
            p.add_argument("--steps", type=int, default=5, help="training steps (default %(default)s)")
            p.add_argument("--save-steps", type=int, default=None, help="checkpoint interval (default: at the end)")
            p.add_argument("--packing", choices=("config", "on", "off"), default="config",
                           help="sample packing as in the config, or forced on/off")

    p = sub.add_parser("lock-data", help="write the dataset manifest (SHA256 and line counts)")
    p.add_argument("--data-dir", default="data/processed")
    p.add_argument("--force", action="store_true", help="replace an existing manifest")

    p = sub.add_parser("doctor", help="detect the platform, recommend a config, check the environment")
    p.add_argument("--config", default=None, help="also estimate this config's memory on the detected GPU")

    p = sub.add_parser("data-report", help="token statistics, duplicates, leakage and Bash checks of the data")
    _add_config_args(p)
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (overrides the config)")

    p = sub.add_parser("estimate-memory", help="peak GPU memory of a config on a target")
    _add_config_args(p)

    p = sub.add_parser("check-checkpoint", help="generate on the test split and score the Bash it writes")
    p.add_argument("--checkpoint", required=True, help="adapter folder (a checkpoint-N or phase2-final)")
    p.add_argument("--test-file", default=None, help="chat JSONL to score on (default: the run's test split)")
    p.add_argument("--sample-size", type=int, default=None, help="score only the first N examples")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--min-syntax-rate", type=float, default=0.9,
                   help="fail when fewer answers than this parse as Bash (default %(default)s)")
    p.add_argument("--allow-dangerous", action="store_true", help="do not fail on dangerous answers")
    p.add_argument("--baseline", action="store_true", help="also score the base model without the adapter")
    p.add_argument("--base-model", default=None, help="base model folder or id (default: from provenance)")

    p = sub.add_parser("convert-nl2bash", help="NL2Bash parallel files to locked chat JSONL splits")
    p.add_argument("--nl", required=True, help="file with one description per line")
    p.add_argument("--cm", required=True, help="file with one command per line")
    p.add_argument("--out", default="data/processed", help="output folder (default %(default)s)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--test-fraction", type=float, default=0.05)
    p.add_argument("--force", action="store_true", help="replace existing split files and manifest")
    return parser


def _command_from_env(argv: list[str]) -> list[str]:
    """`docker run IMAGE` with no arguments runs TRAIN_MODE (validate/smoke/full/rehearse)."""
    if argv:
        return argv
    mode = os.environ.get("TRAIN_MODE", "").strip()
    if not mode:
        return argv
    if mode not in MODES:
        raise UsageError(f"TRAIN_MODE={mode!r} is not a mode; use one of {', '.join(MODES)}")
    return [mode]


def dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "lock-data":
        from . import data
        path, manifest = data.lock(Path(args.data_dir), force=args.force)
        print(f"locked {len(manifest['files'])} files in {path} (data sha256 {manifest['data_sha256'][:16]}...)")
        return 0
    if command == "validate":
        from . import validate
        return validate.command(args)
    if command in ("smoke", "full", "rehearse"):
        from . import runner
        return runner.command(args)
    if command == "doctor":
        from . import platform
        return platform.command(args)
    if command == "data-report":
        from . import data_report
        return data_report.command(args)
    if command == "estimate-memory":
        from . import memory
        return memory.command(args)
    if command == "check-checkpoint":
        from . import checkpoint
        return checkpoint.command(args)
    if command == "convert-nl2bash":
        from . import nl2bash
        return nl2bash.command(args)
    raise UsageError(f"unknown command {command!r}; run entrypoint.py --help")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    parser = build_parser()
    try:
        argv = _command_from_env(list(sys.argv[1:] if argv is None else argv))
    except CliTunerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    if not argv:
        parser.print_help()
        return EXIT_USAGE
    args = parser.parse_args(argv)  # argparse exits 2 on a usage error, matching EXIT_USAGE
    try:
        return dispatch(args)
    except CliTunerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, and where to look
        if os.environ.get("CLI_TUNER_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set CLI_TUNER_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_UNEXPECTED
