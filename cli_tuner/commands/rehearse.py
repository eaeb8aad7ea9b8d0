"""`rehearse`: the config through real `axolotl train` on CPU, with a tiny model of the same architecture."""

from __future__ import annotations

import argparse
import os

from ..training.pipeline import RehearsalOptions
from . import training_mode

NAME = "rehearse"
HELP = "CPU rehearsal: tiny random model of the same architecture, real axolotl train"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    training_mode.add_arguments(parser)
    parser.add_argument("--tokenizer", default=os.environ.get("REHEARSAL_TOKENIZER"),
                        help="local folder of the base model's tokenizer (env REHEARSAL_TOKENIZER)")
    parser.add_argument("--steps", type=int, default=5, help="training steps (default %(default)s)")
    parser.add_argument("--save-steps", type=int, default=None, help="checkpoint interval (default: at the end)")
    parser.add_argument("--packing", choices=("config", "on", "off"), default="config",
                        help="sample packing as in the config, or forced on/off")


def run(args: argparse.Namespace) -> int:
    rehearsal = RehearsalOptions(tokenizer=args.tokenizer, steps=args.steps, save_steps=args.save_steps,
                                 packing=args.packing)
    return training_mode.run_mode(NAME, args, rehearsal_options=rehearsal)
