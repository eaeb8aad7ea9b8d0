"""`full`: the full training run, then the evaluation gate and phase2-final/.

Before any model loads it reads smoke's calibration for this config, data and GPU: a measured
peak that leaves too little headroom stops it (exit 5); otherwise it prints the projected wall
time and, given a price per hour, the cost.
"""

from __future__ import annotations

import argparse

from .. import console
from ..checks import distributed
from ..estimates import calibration
from ..facts import machine as machine_facts
from ..plan import Plan
from ..run_spec import RunSpec
from . import training_mode

NAME = "full"
HELP = ("the full training run, then the checkpoint check; writes a run folder under --output-root "
        "(checkpoints, phase2-final/, provenance.json)")
add_arguments = training_mode.add_gpu_arguments
# The whole data on this machine's GPU; the adapter is published, checked against the base model
# and gated; a finished run stops its pod even when started by hand.
SPEC = RunSpec(NAME, publishes=True, gated=True, baseline=True, stops_pod_when_attended=True)


def check_calibration(args: argparse.Namespace, plan: Plan) -> calibration.Decision | None:
    if args.skip_checks or plan.machine is None or plan.machine.kind != "cuda":
        return None  # preflight has refused a machine without a GPU already, unless told to skip checks
    headroom, price = calibration.settings(plan.loaded)
    gpu = machine_facts.gpu_spec(plan.machine)
    key = calibration.entry_key(calibration.config_key(plan.loaded), plan.verified.data_sha256, gpu.name,
                                plan.topology.world_size, distributed.strategy_of(plan.loaded.axolotl))
    entry = calibration.find(args.output_root, key)
    if entry is None or entry.get("measured", {}).get("peak_device_gib") is None:
        console.say(f"no smoke calibration for this config, data, {gpu.name} and {plan.topology.world_size} process(es) in "
                    f"{calibration.path_in(args.output_root)}: run `smoke` first to measure; going on the estimate alone")
        return None
    decision = calibration.decide(entry, plan.loaded, plan.facts, gpu, plan.train_examples(), headroom, price,
                                  plan.topology.world_size)
    calibration.raise_unless_fits(decision)
    console.say(decision.memory_line())
    console.say(decision.time_line())
    return decision


def run(args: argparse.Namespace) -> int:
    return training_mode.run_mode(SPEC, args, before=lambda plan: check_calibration(args, plan))
