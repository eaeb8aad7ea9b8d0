"""How `axolotl train` is started: one process, or torchrun with N processes per machine.

Axolotl's CLI launches through accelerate by default, or torchrun (`axolotl train CFG --launcher
torchrun -- --nproc-per-node N ...`, axolotl/cli/utils/train.py); its multi-node docs use torchrun's
static rendezvous (--nnodes, --node-rank, --master-addr, --master-port). One process keeps today's
`--launcher python` (no process group at all). The strategy (DDP, FSDP2, ZeRO) is the config's:
torchrun only starts the ranks.

On the CPU (the rehearsal's `--processes N`) the ranks run DDP over gloo. What that takes, since
Axolotl never names gloo: `TrainingArguments.use_cpu` (the rehearsal plugin) and
`ACCELERATE_USE_CPU=true` here. Axolotl resets accelerate's state before it builds the Accelerator
(AxolotlTrainer.create_accelerator_and_postprocess), and accelerate's AcceleratorState takes `cpu`
only from that variable; with it the state is MULTI_CPU and accelerate picks gloo
(accelerate/state.py, _prepare_backend). Without it every rank trains alone, unsynchronised.
The rehearsal plugin also puts each rank's model on the CPU (Axolotl maps rank i to device i).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from ..checks.distributed import Topology


def command(resolved_path: Path, topology: Topology, strategy: str = "ddp") -> list[str]:
    """FSDP and DeepSpeed need a process group even on one GPU: they go through torchrun always."""
    base = [sys.executable, "-m", "axolotl.cli.main", "train", str(resolved_path)]
    if not topology.distributed and strategy == "ddp":
        return base + ["--launcher", "python"]
    torchrun = [f"--nproc-per-node={topology.nproc_per_node}", f"--nnodes={topology.nnodes}",
                f"--node-rank={topology.node_rank}"]
    if topology.master_addr:
        torchrun.append(f"--master-addr={topology.master_addr}")
    if topology.master_port:
        torchrun.append(f"--master-port={topology.master_port}")
    return base + ["--launcher", "torchrun", "--", *torchrun]


def environment(env: dict, topology: Topology) -> dict:
    """The trainer's environment for `topology`."""
    env = dict(env)
    # Axolotl runs `torchrun` by name: the one installed beside this Python, not whatever PATH finds.
    env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")]))
    if topology.distributed and topology.cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    return env


def ranks_of(launcher_pid: int) -> list[int]:
    """The training processes torchrun started (its children), or [] before it has."""
    import psutil

    try:
        return [child.pid for child in psutil.Process(launcher_pid).children(recursive=False)]
    except psutil.Error:
        return []


def uses_torchrun(command_line: list[str]) -> bool:
    return "torchrun" in command_line


def deliver(signum: int, launcher_pid: int, through_torchrun: bool) -> list[int]:
    """Send `signum` to every rank on this machine; the pids it reached.

    The ranks, not torchrun: torchrun answers SIGTERM by terminating its workers and killing them
    30 s later, which would cut a checkpoint short. Each rank's graceful-stop callback checkpoints
    and stops at the step all ranks agree on (callbacks.rank_agreement), then torchrun exits.
    """
    # One process: the trainer itself (its own children are DataLoader workers, not ranks).
    targets = (ranks_of(launcher_pid) if through_torchrun else []) or [launcher_pid]
    reached = []
    for pid in targets:
        try:
            os.kill(pid, signum)
            reached.append(pid)
        except ProcessLookupError:
            continue
    return reached


def kill_all(launcher_pid: int) -> None:
    """The second signal: stop at once, ranks and launcher."""
    for pid in ranks_of(launcher_pid) + [launcher_pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
