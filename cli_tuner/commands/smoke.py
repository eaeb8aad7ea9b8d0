"""`smoke`: a 10-step run derived from the full config by the smoke overlay; on a GPU it measures
peak memory and speed and saves them as the full run's calibration."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import console
from ..checks import distributed
from ..estimates import calibration
from ..facts import machine as machine_facts
from ..paths import PROVENANCE_FILE, SMOKE_OVERLAY
from ..plan import Plan
from ..run_spec import RunSpec
from ..training import measurements
from . import training_mode

NAME = "smoke"
HELP = ("10-step smoke run derived from the full config (overlay configs/axolotl_smoke_test.yaml); writes "
        "a run folder under --output-root")
add_arguments = training_mode.add_gpu_arguments
# The first cli_tuner.train_examples / val_examples on this machine's GPU; nothing published or gated.
SPEC = RunSpec(NAME, slices_from_settings=True)
# Applied after the user's overlays (so a user overlay cannot stretch a smoke run); --set still wins.
OVERLAYS = (str(SMOKE_OVERLAY),)


def record_calibration(args: argparse.Namespace, plan: Plan, run_dir: Path) -> Path | None:
    """Compare the measured peak and speed with the estimate; save them where `full` looks."""
    measured = measurements.read(run_dir)
    if plan.machine is None or plan.machine.kind != "cuda" or not measured or not measured.get("gpu_memory"):
        console.say("calibration not recorded: no GPU memory was measured (smoke did not run on a CUDA device)")
        return None
    full = training_mode.load(args)  # the full run's config: smoke's overlay is not part of its identity
    try:
        wall = json.loads((run_dir / PROVENANCE_FILE).read_text()).get("wall_seconds")
    except (OSError, ValueError):
        wall = None
    entry = calibration.record(full, plan.facts, machine_facts.gpu_spec(plan.machine), measured,
                               plan.verified.data_sha256, run_dir.name, wall, plan.topology.world_size,
                               distributed.strategy_of(full.axolotl))
    saved = calibration.save(args.output_root, entry)
    console.show(calibration.comparison(entry))
    console.say(f"calibration saved in {saved} ({entry['key']}): `full` with this config, data and GPU reads it")
    return saved


def run(args: argparse.Namespace) -> int:
    return training_mode.run_mode(SPEC, args, last_overlays=OVERLAYS,
                                  after=lambda plan, run_dir: record_calibration(args, plan, run_dir))
