"""Peak memory per GPU on several processes: the one-GPU breakdown of `estimates.memory`, split the way
each engine splits it (docs/multi-gpu.md derives every line and names the published figures
tests/test_memory_sharding.py checks it against).

- DDP replicates everything; DDP's reducer adds buckets that hold a second copy of the trainable
  gradients (torch DistributedDataParallel, `gradient_as_bucket_view=False`, accelerate's default).
- FSDP2 shards parameters, gradients and optimizer states over N; each rank gathers one decoder
  layer at a time (two with the next one prefetched), and the root module's parameters (embeddings,
  lm_head, final norm: not quantized) stay gathered for the whole step.
- ZeRO-2 shards gradients and optimizer states (plus DeepSpeed's fp32 master copy of its share of
  the trainable weights); the weights are replicated, and one reduce bucket of gradients is in flight.

Activations, logits, dequantization buffers and the CUDA context are per process and do not shrink.
Loading is not sharded by Axolotl 0.19 for 4-bit FSDP: every rank loads the whole quantized model
onto its GPU (`device_map: {"": LOCAL_RANK}`; `cpu_ram_efficient_loading` is refused with 4-bit),
so the loading peak stays the one-GPU loading peak.
"""

from __future__ import annotations

import dataclasses

from .memory import GIB, MemoryEstimate

# DeepSpeed's default reduce_bucket_size (elements), gradients reduced in 16-bit
ZERO_REDUCE_BUCKET_ELEMENTS = 5e8
FSDP_GATHERED_LAYERS = 2  # the layer running and the next one, prefetched

PART_LABELS = {
    "ddp_buckets": "DDP gradient buckets (a copy of the gradients)",
    "gathered_root": "FSDP gathered root (embeddings, lm_head, norms)",
    "gathered_layers": f"FSDP gathered decoder layers ({FSDP_GATHERED_LAYERS})",
    "zero_master_weights": "ZeRO fp32 master weights (1/N)",
    "zero_reduce_bucket": "ZeRO reduce bucket",
}
SOURCES = {
    "ddp": "torch DistributedDataParallel: each process keeps a full replica; gradient buckets as large as the gradients",
    "fsdp2": "PyTorch FSDP2 (fully_shard): parameters, gradients and optimizer states sharded over N",
    "zero2": "DeepSpeed ZeRO stage 2: gradients and optimizer states sharded over N, parameters replicated",
}


def _layer_bytes(facts, single: MemoryEstimate) -> float:
    """One decoder layer's share of the quantized weights and the LoRA weights, in bytes."""
    layers = max(facts.num_hidden_layers, 1)
    return (single.parts.get("quantized_weights", 0.0) + single.parts.get("lora_weights", 0.0)) * GIB / layers


def per_gpu_parts(single: MemoryEstimate, facts, strategy: str, processes: int,
                  phase: dict[str, float] | None = None) -> dict[str, float]:
    """The one-GPU parts (GiB) of `phase` (the training peak's by default) as one of `processes`
    ranks holds them under `strategy`."""
    n = max(int(processes), 1)
    parts = dict(single.parts if phase is None else phase)
    if strategy == "ddp":
        if n > 1:
            parts["ddp_buckets"] = parts.get("gradients", 0.0)
        return parts
    if strategy == "fsdp2":
        root = parts.get("unquantized_weights", 0.0)
        for key in ("quantized_weights", "unquantized_weights", "lora_weights", "gradients", "optimizer_states"):
            parts[key] = parts.get(key, 0.0) / n
        if n > 1:
            parts["gathered_root"] = root * (1 - 1 / n)
            parts["gathered_layers"] = FSDP_GATHERED_LAYERS * _layer_bytes(facts, single) / GIB * (1 - 1 / n)
        return parts
    if strategy == "zero2":
        gradients = parts.get("gradients", 0.0)
        parts["gradients"] = gradients / n
        parts["optimizer_states"] = parts.get("optimizer_states", 0.0) / n
        if n > 1:
            # fp32 master copy of this rank's share (the LoRA weights are fp32 already: same bytes)
            parts["zero_master_weights"] = parts.get("lora_weights", 0.0) / n
            trainable_elements = gradients * GIB / 4
            parts["zero_reduce_bucket"] = min(trainable_elements, ZERO_REDUCE_BUCKET_ELEMENTS) * 2 / GIB
        return parts
    raise ValueError(f"unknown strategy {strategy!r}; one of ddp, fsdp2, zero2")


@dataclasses.dataclass
class ShardedEstimate(MemoryEstimate):
    """A per-GPU estimate: the one-GPU estimate's model, target and settings, its parts split."""

    strategy: str = "ddp"
    processes: int = 1

    def label(self, key: str) -> str:
        return PART_LABELS.get(key) or super().label(key)

    def summary(self) -> str:
        return f"per GPU, {self.processes} x {self.strategy}: {super().summary()}"

    def as_dict(self) -> dict:
        return {**super().as_dict(), "strategy": self.strategy, "processes": self.processes}


def per_gpu(single: MemoryEstimate, facts, strategy: str, processes: int) -> ShardedEstimate:
    """The estimate one GPU of `processes` sees under `strategy`."""
    notes = list(single.notes) + [f"{processes} processes, {strategy}: {SOURCES[strategy]}"]
    if strategy == "fsdp2" and single.load_peak_gib > 0:
        notes.append("loading is not sharded: Axolotl 0.19 loads the whole 4-bit model on every GPU before "
                     "FSDP2 shards it (device_map {'': LOCAL_RANK}; cpu_ram_efficient_loading is refused with 4-bit)")
    fields = {f.name: getattr(single, f.name) for f in dataclasses.fields(MemoryEstimate)}
    # each of the backward's two peaks split on its own: sharding can change which one decides
    phases = {name: per_gpu_parts(single, facts, strategy, processes, phase)
              for name, phase in single.training_phases.items()}
    fields.update(training_phases=phases, notes=notes, advice=list(single.advice))
    return ShardedEstimate(**fields, strategy=strategy, processes=processes)
