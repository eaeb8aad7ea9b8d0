"""Several processes: which engine a config asks for, how many processes on how many machines, the
rules Axolotl and the engines set for them, and the batch arithmetic.

The engines are Axolotl's own (docs/multi-gpu.qmd): DDP when the config names no other, FSDP2
(`fsdp_version: 2` + `fsdp_config`), DeepSpeed ZeRO (`deepspeed: <json>`). Nothing here starts a
process; training.launcher turns a Topology into the torchrun command Axolotl documents.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .config_rules import Problem

STRATEGIES = ("ddp", "fsdp2", "zero2")  # the ones with an overlay and a per-GPU estimate
DEFAULT_MASTER_PORT = 29500             # torchrun's default
SOURCE_AXOLOTL = "Axolotl 0.19 axolotl/utils/schemas/validation.py"


@dataclass(frozen=True)
class Topology:
    """How many training processes, where: torchrun's --nproc-per-node, --nnodes, --node-rank,
    --master-addr and --master-port."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None
    cpu: bool = False               # the CPU rehearsal: gloo instead of NCCL

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def record(self) -> dict:
        return {**asdict(self), "world_size": self.world_size}


SINGLE = Topology()


def topology_problems(topology: Topology) -> list[Problem]:
    """Node and port settings torchrun would reject, or that would hang a rendezvous."""
    problems = []
    if topology.nproc_per_node < 1:
        problems.append(Problem("--gpus", f"{topology.nproc_per_node}: needs at least 1 process per machine"))
    if topology.nnodes < 1:
        problems.append(Problem("--nnodes", f"{topology.nnodes}: needs at least 1 machine"))
    elif not 0 <= topology.node_rank < topology.nnodes:
        problems.append(Problem("--node-rank", f"{topology.node_rank} is not in 0..{topology.nnodes - 1} "
                                               f"(--nnodes {topology.nnodes}); give each machine its own rank, the "
                                               "master machine 0"))
    if topology.nnodes > 1 and not topology.master_addr:
        problems.append(Problem("--master-addr", "several machines need the address of node 0 (--master-addr or "
                                                 "MASTER_ADDR), reachable from every machine"))
    if topology.master_port is not None and not 1024 <= topology.master_port <= 65535:
        problems.append(Problem("--master-port", f"{topology.master_port}: use a free TCP port in 1024..65535 "
                                                 f"(torchrun's default is {DEFAULT_MASTER_PORT})"))
    return problems


# ------------------------------------------------------------------ the strategy a config asks for

def deepspeed_stage(cfg: dict) -> tuple[int | None, str | None]:
    """(ZeRO stage, problem): the stage of the config's DeepSpeed JSON (a path or an inline table)."""
    value = cfg.get("deepspeed")
    if isinstance(value, dict):
        ds = value
    else:
        path = Path(str(value))
        try:
            ds = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            return None, f"{path}: cannot read the DeepSpeed config ({exc.strerror}); paths are relative to this folder"
        except ValueError as exc:
            return None, f"{path}: not JSON ({exc})"
    stage = (ds.get("zero_optimization") or {}).get("stage") if isinstance(ds, dict) else None
    if stage not in (0, 1, 2, 3):
        return None, f"{value}: zero_optimization.stage must be 0-3 (got {stage!r})"
    return int(stage), None


def strategy_of(cfg: dict) -> str:
    """ddp, fsdp2, fsdp1 or zero0..zero3: the engine `axolotl train` uses on several processes."""
    if cfg.get("deepspeed"):
        stage, _ = deepspeed_stage(cfg)
        return f"zero{stage}" if stage is not None else "zero?"
    if cfg.get("fsdp_config") or cfg.get("fsdp"):
        version = cfg.get("fsdp_version") or (cfg.get("fsdp_config") or {}).get("fsdp_version") or 1
        return "fsdp2" if str(version) == "2" else "fsdp1"
    return "ddp"


def rules(cfg: dict, topology: Topology, target_kind: str | None, deepspeed_installed: bool | None = None) -> list[Problem]:
    """What Axolotl or the engines do not support, each with its source; warnings where they only warn."""
    problems = list(topology_problems(topology))
    strategy = strategy_of(cfg)
    if cfg.get("deepspeed"):
        _, problem = deepspeed_stage(cfg)
        if problem:
            problems.append(Problem("deepspeed", problem))
    if cfg.get("deepspeed") and (cfg.get("fsdp") or cfg.get("fsdp_config")):
        problems.append(Problem("deepspeed", f"deepspeed and fsdp cannot be used together ({SOURCE_AXOLOTL}, "
                                             "check_fsdp_deepspeed); keep one strategy overlay"))
    if strategy == "fsdp1":
        problems.append(Problem("fsdp_version", "FSDP1 is deprecated and will be removed (Axolotl docs/multi-gpu.qmd); "
                                                "use configs/overlays/fsdp2-qlora.yaml (fsdp_version: 2)", level="warning"))
    reentrant = (cfg.get("gradient_checkpointing_kwargs") or {}).get("use_reentrant")
    if strategy == "zero3" and cfg.get("adapter") == "qlora" and reentrant is False:
        problems.append(Problem("gradient_checkpointing_kwargs.use_reentrant",
                                f"qlora + zero3 with use_reentrant: false may fail with a CheckpointError about recomputed "
                                f"values ({SOURCE_AXOLOTL}, warn_qlora_zero3_w_use_reentrant); set use_reentrant: true"))
    sharded = strategy != "ddp"
    if target_kind in ("mps", "cpu") and (sharded or topology.distributed) and not topology.cpu:
        engine = {"mps": "Apple MPS has no distributed backend in torch (NCCL and DeepSpeed are CUDA-only)",
                  "cpu": "a pod without CUDA GPUs"}[target_kind]
        problems.append(Problem("cli_tuner.target", f"{strategy} on {topology.world_size} processes needs CUDA GPUs: "
                                                    f"{engine}; train this config on one device"))
    if topology.cpu and sharded:
        problems.append(Problem(strategy, "the CPU rehearsal runs DDP over gloo only: FSDP needs a GPU (accelerate's "
                                          "FSDP tests require one; fully_shard on gloo is reported to crash) and "
                                          "DeepSpeed is CUDA-only; drop the strategy overlay to rehearse"))
    if strategy.startswith("zero") and deepspeed_installed is False:
        problems.append(Problem("deepspeed", "the deepspeed package is not installed here: `axolotl train` imports it "
                                             "on the pod; the CUDA image must have it (pip install deepspeed)",
                                level="warning", kind="environment"))
    if sharded and topology.world_size == 1:
        problems.append(Problem(strategy, f"{strategy} on one process shards nothing; pass --gpus N (N > 1) or drop "
                                          "the strategy overlay", level="warning"))
    return problems


# ------------------------------------------------------------------ batch arithmetic

@dataclass(frozen=True)
class Batch:
    """The effective batch on `processes`, and the one the config file itself was written for (its
    micro batch and accumulation on one GPU, before overlays, --set and --gpus)."""

    micro_batch_size: int
    gradient_accumulation_steps: int
    processes: int
    config_effective: int

    @property
    def effective(self) -> int:
        return self.micro_batch_size * self.gradient_accumulation_steps * self.processes

    def keeping_accumulation(self) -> int | None:
        """The accumulation that gives the config's own effective batch, when a whole one does."""
        per_step = self.micro_batch_size * self.processes
        return self.config_effective // per_step if self.config_effective % per_step == 0 else None

    def line(self) -> str:
        return (f"effective batch {self.effective} = micro batch {self.micro_batch_size} x accumulation "
                f"{self.gradient_accumulation_steps} x {self.processes} process{'es' if self.processes != 1 else ''}")

    def advice(self) -> str | None:
        """Said when overlays, --set or the process count change the config's effective batch."""
        if self.effective == self.config_effective:
            return None
        what = (f"the config file's own is {self.config_effective} on one GPU; a different effective batch "
                f"changes the steps per epoch and the learning-rate schedule's meaning")
        keep = self.keeping_accumulation()
        if keep is not None:
            return f"{what}; --set gradient_accumulation_steps={keep} keeps it"
        nearest = max(1, round(self.config_effective / (self.micro_batch_size * self.processes)))
        return (f"{what}; no whole accumulation keeps it exactly at micro batch {self.micro_batch_size} "
                f"(nearest: --set gradient_accumulation_steps={nearest}, effective "
                f"{self.micro_batch_size * nearest * self.processes})")


def _positive(cfg: dict, key: str) -> int:
    value = cfg.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def batch_of(cfg: dict, processes: int, config_file_cfg: dict | None = None) -> Batch:
    own = config_file_cfg if config_file_cfg is not None else cfg
    return Batch(_positive(cfg, "micro_batch_size"), _positive(cfg, "gradient_accumulation_steps"), processes,
                 _positive(own, "micro_batch_size") * _positive(own, "gradient_accumulation_steps"))
