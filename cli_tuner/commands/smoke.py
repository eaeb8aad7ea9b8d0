"""`smoke`: a 10-step run derived from the full config by the smoke overlay."""

from __future__ import annotations

import argparse

from . import training_mode

NAME = "smoke"
HELP = "10-step smoke run derived from the full config (overlay configs/axolotl_smoke_test.yaml)"
add_arguments = training_mode.add_arguments


def run(args: argparse.Namespace) -> int:
    return training_mode.train(NAME, args, training_mode.load(args, last_overlays=training_mode.mode_overlays(NAME)))
