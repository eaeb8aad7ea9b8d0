"""The plan of one command: every fact it needs, resolved once, handed down the one-way path.

Preflight builds it in the order a pod would hit the problems (data, config, machine, model);
training, evaluation and provenance read it and never look anything up again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .config import LoadedConfig
from .data import VerifiedData
from .findings import Check
from .run_spec import RunSpec

if TYPE_CHECKING:  # the types of the homes that fill a Plan in; the base imports none of them
    from .checks.distributed import Topology
    from .estimates.memory import MemoryEstimate
    from .facts.attention import AttentionSource
    from .facts.gpus import GpuSpec
    from .facts.machine import Machine
    from .facts.models import ModelFacts


@dataclass
class Plan:
    spec: RunSpec                      # what the command does (its name is only a label)
    loaded: LoadedConfig               # the config with overlays and --set applied
    verified: VerifiedData | None      # the data files and their hashes, checked against the manifest
    facts: ModelFacts                  # the base model's architecture
    target: GpuSpec | None             # the GPU the config is checked against (None: no target)
    machine: Machine | None            # this machine, detected once (None when not needed)
    topology: Topology                 # how many training processes, on how many machines
    findings: list[Check] = field(default_factory=list)  # warnings and infos the command shows
    estimate: MemoryEstimate | None = None  # the memory estimate on this machine's GPU (training verbs)
    attention: AttentionSource | None = None  # this machine's flash-attention source (CUDA machines)
    fallbacks: list[dict] = field(default_factory=list)  # config changes made for this machine (checks/attention.py)

    @property
    def mode(self) -> str:
        """The command's name: a label for messages, the run folder and provenance."""
        return self.spec.name

    def train_examples(self) -> int | None:
        """Examples in the train files, as the manifest counted them (None: none counted)."""
        train_files = {str(p) for p in self.loaded.split_files()["train"]}
        return sum(int(v.get("lines") or 0) for k, v in self.verified.files.items() if k in train_files) or None

    def attention_record(self) -> dict | None:
        """What provenance records: the flash-attention source and any fallback made for it."""
        if self.attention is None:
            return None
        return {"source": self.attention.as_record(), "fallback": self.fallbacks}
