"""`full`: the full training run, then the evaluation gate and phase2-final/."""

from __future__ import annotations

import argparse

from . import training_mode

NAME = "full"
HELP = "the full training run, then the checkpoint check and phase2-final/"
add_arguments = training_mode.add_arguments


def run(args: argparse.Namespace) -> int:
    return training_mode.run_mode(NAME, args)
