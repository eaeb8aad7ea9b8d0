"""`data-report`: the training data as the model will see it: lengths, duplicates, leakage, Bash."""

from __future__ import annotations

import argparse

from .. import tokenizer
from ..checks import data_report
from . import options

NAME = "data-report"
HELP = "token statistics, duplicates, leakage and Bash checks of the data; prints the report, writes nothing"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_config_arguments(parser, trust_remote_code=False)
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (overrides the config)")


def run(args: argparse.Namespace) -> int:
    loaded = options.load_config(args)
    tokenizer.locate(args.tokenizer or loaded.tokenizer_source)  # found or refused in ms, before the slow imports
    allow = loaded.allows_dangerous_data
    report = data_report.check(loaded, tokenizer_override=args.tokenizer, allow_dangerous=allow)
    data_report.show(report)
    data_report.raise_for_errors(report)
    return 0
