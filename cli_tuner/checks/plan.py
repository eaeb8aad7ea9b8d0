"""The plan of one command: every fact it needs, resolved once, handed down the one-way path.

Preflight builds it in the order a pod would hit the problems (data, config, machine, model);
training, evaluation and provenance read it and never look anything up again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import LoadedConfig
from .distributed import SINGLE, Topology
from ..data import VerifiedData
from ..facts.attention import AttentionSource
from ..facts.gpus import GpuSpec
from ..facts.machine import Machine
from ..facts.models import ModelFacts
from ..findings import Check
from .memory import MemoryEstimate


@dataclass
class Plan:
    mode: str                          # validate, smoke, full, rehearse, ...
    loaded: LoadedConfig               # the config with overlays and --set applied
    verified: VerifiedData | None      # the data files and their hashes, checked against the manifest
    facts: ModelFacts                  # the base model's architecture
    target: GpuSpec | None             # the GPU the config is checked against (None: no target)
    machine: Machine | None            # this machine, detected once (None when not needed)
    findings: list[Check] = field(default_factory=list)  # warnings and infos the command shows
    estimate: MemoryEstimate | None = None  # on the target or this machine's GPU (per GPU when sharded)
    topology: Topology = SINGLE        # how many training processes, on how many machines
    attention: AttentionSource | None = None  # this machine's flash-attention source (CUDA machines)
    fallbacks: list[dict] = field(default_factory=list)  # config changes made for this machine (checks/attention.py)

    def attention_record(self) -> dict | None:
        """What provenance records: the flash-attention source and any fallback made for it."""
        if self.attention is None:
            return None
        return {"source": self.attention.as_record(), "fallback": self.fallbacks}
