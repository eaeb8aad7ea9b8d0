"""How much training data one optimizer step of a config takes, the way Axolotl batches it.

Unpacked: micro_batch_size examples per micro batch. Packed (Axolotl's multipack sampler): with
an attention that supports packing (flash attention) one bin of micro_batch_size x sequence_len
tokens per micro batch; otherwise (sdpa, eager: `multipack_real_batches`) micro_batch_size bins of
sequence_len tokens. An optimizer step is gradient_accumulation_steps micro batches, and the
sampler drops an incomplete last batch, so a slice that is too small trains no step at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..training_shape import TrainingShape


@dataclass(frozen=True)
class StepNeed:
    packed: bool
    units: int            # examples (unpacked) or packed bins (packed) one optimizer step takes
    bin_tokens: int       # tokens per bin (packed only)

    def describe(self) -> str:
        if not self.packed:
            return f"{self.units} examples"
        return f"{self.units} packed bins of {self.bin_tokens} tokens"


def attention_packs(cfg: dict) -> bool:
    """Axolotl's `attn_supports_packing`: one long bin per micro batch instead of real batches."""
    from axolotl.utils.schemas.enums import ATTN_IMPLS_SUPPORTING_PACKING

    if cfg.get("multipack_real_batches") is not None:
        return not cfg["multipack_real_batches"]
    implementation = cfg.get("attn_implementation") or ("flash_attention_2" if cfg.get("flash_attention") else None)
    return implementation in ATTN_IMPLS_SUPPORTING_PACKING


def need_for_one_step(cfg: dict) -> StepNeed:
    shape = TrainingShape.of(cfg)
    micro, accumulation, sequence = shape.micro_batch_size, shape.gradient_accumulation_steps, shape.sequence_len
    if not shape.sample_packing:
        return StepNeed(False, micro * accumulation, 0)
    if attention_packs(cfg):
        return StepNeed(True, accumulation, micro * sequence)
    return StepNeed(True, micro * accumulation, sequence)


def examples_for_one_step(cfg: dict, lengths: list[int], at_least: int = 1) -> int | None:
    """The fewest leading examples (at least `at_least`) that give one full optimizer step, or None
    when all of `lengths` do not. Packed: first-fit bins number at least ceil(tokens / bin size),
    so more than (bins - 1) x bin size tokens guarantees the bins."""
    need = need_for_one_step(cfg)
    shape = TrainingShape.of(cfg)
    sequence, usable = shape.sequence_len, 1.0 - shape.held_out
    total = 0
    for count, length in enumerate(lengths, start=1):
        total += min(int(length), sequence)  # excess_length_strategy truncates (or drops) longer ones
        if count < at_least:
            continue
        if need.packed:
            enough = shape.trained_examples(count) >= need.units and total * usable > (need.units - 1) * need.bin_tokens
        else:
            enough = shape.trained_examples(count) >= need.units
        if enough:
            return count
    return None


# Packed rows are ~99% real tokens on this project's data (bench/bench_tokens.py: 0.993 on
# NL2Bash with the packing overlay), so a packed step carries about this share of its slots.
PACKED_FILL = 0.99


def total_steps(cfg: dict, train_examples: int | None, mean_example_tokens: float | None = None,
                processes: int = 1, epoch_steps: int | None = None) -> int | None:
    """Optimizer steps the run will take, the one count every message and projection prints:
    max_steps, else epochs x the steps of one epoch. `epoch_steps`: one epoch's steps counted from
    the data's own lengths (batching.epoch, Axolotl's sampler); without them, examples / effective
    batch. The effective batch spans `processes` (each takes its own micro-batches). Packed, a
    micro-batch holds sequence_len x micro_batch_size tokens of many examples, so the estimate needs
    the data's mean example length; None without it (and without the example count)."""
    shape = TrainingShape.of(cfg)
    if shape.max_steps:
        return shape.max_steps
    if epoch_steps:
        return max(1, epoch_steps * int(shape.num_epochs))
    if not train_examples:
        return None
    train_examples = shape.trained_examples(train_examples)
    processes = max(1, int(processes))
    epochs = int(shape.num_epochs)
    if shape.sample_packing:
        if not mean_example_tokens:
            return None
        slots = shape.micro_batch_tokens * shape.gradient_accumulation_steps * processes
        return max(1, math.ceil(train_examples * mean_example_tokens / (slots * PACKED_FILL)) * epochs)
    return max(1, math.ceil(train_examples / (shape.examples_per_step * processes)) * epochs)
