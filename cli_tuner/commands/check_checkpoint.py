"""`check-checkpoint`: generate on the test split with an adapter and score the Bash it writes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .. import console, settings as job_settings
from ..config import DATA_DIR_ENV
from ..errors import UsageError
from ..evaluation.adapter_files import adapter_folder, new_record_path
from ..evaluation.evaluate import evaluate
from ..evaluation.report import MARGIN_METRICS, STATIC_DEFAULT, GateSettings, enforce_gate
from ..evaluation.sandbox import Limits
from ..facts import machine as machine_facts

NAME = "check-checkpoint"
HELP = ("generate on the test split with an adapter and score the Bash it writes (and what it does, in a "
        "sandbox); writes eval.json in the adapter folder, eval-N.json beside an existing one")
DEFAULTS = GateSettings()  # the options' defaults are the config keys' (settings.Settings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="adapter folder (a checkpoint-N or phase2-final), or a run folder (its phase2-final)")
    parser.add_argument("--test-file", default=None, help="chat JSONL to score on (default: the run's test split)")
    parser.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV) or None, metavar="DIR",
                        help="the locked folder the test split is read from: the run's test file (or --test-file) "
                             "by name in it, verified against its manifest (env TRAIN_DATA_DIR; default: the "
                             "run's recorded, hashed test file)")
    parser.add_argument("--sample-size", type=int, default=None, help="score only the first N examples")
    parser.add_argument("--max-new-tokens", type=int, default=job_settings.MAX_NEW_TOKENS,
                        help="tokens generated per answer at most")
    parser.add_argument("--baseline", action="store_true",
                        help="also score the base model without the adapter; the adapter must beat it by --min-margin")
    add_gate_arguments(parser)
    parser.add_argument("--base-model", default=None, help="base model folder or id (default: from provenance)")
    parser.add_argument("--sandbox-seconds", type=float, default=DEFAULTS.sandbox_seconds,
                        help="wall-time limit of one command in the sandbox (default %(default)s)")
    parser.add_argument("--no-execution", action="store_true",
                        help="do not run the answers in the sandbox (score them later with score-execution)")


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """The gate's options, shared with score-execution."""
    parser.add_argument("--min-command-rate", type=float, default=DEFAULTS.min_command_rate,
                        help="fail when fewer answers than this are commands: first word a builtin, a function it "
                             "defines or a known program, and no prose (default %(default)s)")
    parser.add_argument("--min-syntax-rate", type=float, default=DEFAULTS.min_syntax_rate,
                        help="fail when fewer answers than this parse as Bash (default %(default)s)")
    parser.add_argument("--allow-dangerous-answers", action="store_true",
                        help="do not fail the gate on dangerous answers (the data's own are --allow-dangerous-data)")
    parser.add_argument("--min-margin", type=float, default=DEFAULTS.min_margin,
                        help="how much higher the adapter's --margin-metric rate must be than the base model's, where the "
                             "evaluation scored the base model too (check-checkpoint --baseline, a full run's check) "
                             "(default %(default)s)")
    parser.add_argument("--margin-metric", choices=MARGIN_METRICS, default=DEFAULTS.margin_metric,
                        help="the rate --min-margin compares (default: execution_accuracy where the sandbox runs, "
                             "judged on the lower bound of the paired difference's 95%% interval; else "
                             f"{STATIC_DEFAULT})")


def settings_from(args: argparse.Namespace) -> GateSettings:
    # The same bounds as the config keys they stand in for (settings.Settings), read from there.
    for option, key, value, what in (
            ("--min-command-rate", "min_command_rate", args.min_command_rate, "a fraction {}"),
            ("--min-syntax-rate", "min_syntax_rate", args.min_syntax_rate, "a fraction {}"),
            ("--sandbox-seconds", "sandbox_seconds", args.sandbox_seconds, "seconds per command, {}"),
            ("--min-margin", "min_margin_over_base", args.min_margin, "a rate difference {}, e.g. 0.05")):
        if not job_settings.within(key, value):
            raise UsageError(f"{option} {value}: give {what.format(job_settings.between(key))}")
    return GateSettings(min_command_rate=args.min_command_rate, min_syntax_rate=args.min_syntax_rate,
                        allow_dangerous=args.allow_dangerous_answers, min_margin=args.min_margin,
                        margin_metric=args.margin_metric, sandbox_seconds=args.sandbox_seconds)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    device = machine_facts.detect().torch_device
    folder = adapter_folder(Path(args.checkpoint))
    record = new_record_path(folder)  # beside the run's eval.json, never over it
    report = evaluate(folder, test_file=Path(args.test_file) if args.test_file else None,
                      sample_size=args.sample_size, max_new_tokens=args.max_new_tokens,
                      base_model=args.base_model, baseline=args.baseline, device=device,
                      execution=not args.no_execution, sandbox_limits=Limits(seconds=settings.sandbox_seconds),
                      record=record, data_dir=Path(args.data_dir) if args.data_dir else None)
    console.show(report.renderable(console.is_terminal()))
    console.out(f"wrote {record}")
    enforce_gate(report, settings)
    return 0
