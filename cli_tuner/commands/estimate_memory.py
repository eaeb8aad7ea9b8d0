"""`estimate-memory`: peak GPU memory of a config on its target, or on this machine's GPU."""

from __future__ import annotations

import argparse
import dataclasses

from .. import console
from ..checks import distributed, preflight
from ..estimates import memory
from ..facts import cuda_context, gpus, machine as machine_facts
from . import options

NAME = "estimate-memory"
HELP = "peak GPU memory of a config on a target; writes nothing"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_config_arguments(parser, data=False, trust_remote_code=False, dangerous_data=False)  # reads no data file
    parser.add_argument("--cuda-major", type=int, choices=sorted(cuda_context.BARE_CONTEXT_GIB), default=None,
                        help="CUDA runtime major of the torch that will train (default: this machine's torch on "
                             f"its GPU, else the image's, CUDA {gpus.IMAGE_CUDA_MAJOR}); sets the CUDA context's size")
    options.add_gpus_argument(parser)
    parser.add_argument("--strategy", choices=distributed.STRATEGIES, default=None,
                        help="how the processes split the memory: ddp replicates, fsdp2 shards parameters, gradients "
                             "and optimizer states, zero2 shards gradients and optimizer states (default: the "
                             "config's, ddp when it names none)")


def run(args: argparse.Namespace) -> int:
    loaded = options.load_config(args)
    facts = preflight.resolve_facts(loaded)
    gpu = preflight.resolve_target(loaded)
    if gpu is None:
        gpu = machine_facts.gpu_spec(machine_facts.detect())
        console.out(f"no --target or cli_tuner.target: estimating for this machine's {gpu.name}")
    if args.cuda_major is not None and gpu.kind == "cuda":
        gpu = dataclasses.replace(gpu, cuda_major=args.cuda_major)
    topology = options.topology(args)
    preflight.raise_for(distributed.topology_problems(topology), "--gpus")
    estimate, check = preflight.memory_on(loaded, facts, gpu, topology, args.strategy)
    console.show(estimate.renderable())
    memory.raise_unless_fits(check)
    if check.failed:
        console.problem(f"warning: {check.detail}" + (f"; {check.fix}" if check.fix else ""))
    return 0
