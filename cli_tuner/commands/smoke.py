"""`smoke`: a 10-step run derived from the full config by the smoke overlay."""

from __future__ import annotations

import argparse

from ..paths import SMOKE_OVERLAY
from . import training_mode

NAME = "smoke"
HELP = "10-step smoke run derived from the full config (overlay configs/axolotl_smoke_test.yaml)"
add_arguments = training_mode.add_arguments


def run(args: argparse.Namespace) -> int:
    # Last among the overlays, so a user overlay cannot stretch a smoke run; --set still wins.
    return training_mode.run_mode(NAME, args, last_overlays=(str(SMOKE_OVERLAY),))
