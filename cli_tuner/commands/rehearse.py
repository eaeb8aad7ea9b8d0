"""`rehearse`: the config through real `axolotl train` on CPU, with a tiny model of the same architecture."""

from __future__ import annotations

import argparse
import os

from .. import console
from ..config import LoadedConfig
from ..errors import UsageError
from ..run_spec import RunSpec
from ..training.pipeline import RehearsalOptions
from ..training.rehearsal import DEFAULT_STEPS
from . import options, training_mode

NAME = "rehearse"
HELP = ("CPU rehearsal: tiny random model of the same architecture, real axolotl train; writes a run "
        "folder under --output-root")
# A tiny random model on the CPU: no GPU checks, no target, no FLOPs of the real model; the adapter
# is published and checked on a sample of the test split, and the gate is recorded, not enforced.
SPEC = RunSpec(NAME, on_gpu=False, checks_target=False, cpu_rehearsal=True, publishes=True,
               check_sample=8, counts_flops=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    training_mode.add_arguments(parser)
    parser.add_argument("--tokenizer", default=os.environ.get("REHEARSAL_TOKENIZER"),
                        help="local folder of the base model's tokenizer (env REHEARSAL_TOKENIZER)")
    parser.add_argument("--steps", type=options.positive_int, default=None,
                        help=f"training steps (default: --set max_steps=N if given, else {DEFAULT_STEPS})")
    parser.add_argument("--save-steps", type=options.positive_int, default=None, help="checkpoint interval (default: at the end)")
    parser.add_argument("--packing", choices=("config", "on", "off"), default="config",
                        help="sample packing as in the config, or forced on/off")
    parser.add_argument("--processes", type=options.positive_int, default=1, metavar="N",
                        help="training processes: N > 1 runs DDP over gloo on the CPU through torchrun, the launcher "
                             "path `smoke`/`full --gpus N` take on the pod (default %(default)s)")


def set_keys(sets: list[str]) -> set[str]:
    return {assignment.split("=", 1)[0].strip() for assignment in sets}


def choose_steps(steps: int | None, loaded: LoadedConfig) -> tuple[int, str]:
    """(steps, why): --steps, else the user's --set max_steps, else the default. Never silently
    replaces a value the user gave: --set max_steps=200 trains 200 steps."""
    from_set = "max_steps" in set_keys(loaded.sets)
    if steps is not None:
        if from_set and loaded.axolotl.get("max_steps") != steps:
            raise UsageError(f"--steps {steps} and --set max_steps={loaded.axolotl.get('max_steps')} disagree; "
                             "give the rehearsal's length once")
        return steps, "--steps"
    if from_set:
        value = loaded.axolotl.get("max_steps")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"--set max_steps={value!r}: a rehearsal needs a positive step count; use --steps N")
        return value, "--set max_steps"
    return DEFAULT_STEPS, "the default; --steps N to change"


def rehearsal_options(args: argparse.Namespace, loaded) -> RehearsalOptions:
    steps, why = choose_steps(args.steps, loaded)
    console.say(f"rehearsal steps: {steps} ({why})")
    return RehearsalOptions(tokenizer=args.tokenizer, steps=steps, save_steps=args.save_steps, packing=args.packing)


def run(args: argparse.Namespace) -> int:
    return training_mode.run_mode(SPEC, args, rehearsal_for=lambda loaded: rehearsal_options(args, loaded))
