"""One epoch of a config's training data as Axolotl 0.19 batches it: micro batches, the rows and
padded length of each, real and processed tokens (padding included), optimizer steps.

Batches are formed the way Axolotl 0.19 forms them, with Axolotl's own code where it has some:
- sample packing: `MultipackBatchSampler` (axolotl.utils.samplers.multipack) over a seeded
  `RandomSampler`, as `AxolotlTrainer._create_multipack_sampler` builds it. Attention backends
  that support varlen packing (flash_attention_2, flex, ...) get one bin of
  micro_batch_size x sequence_len tokens per micro batch; others (sdpa, eager) get
  micro_batch_size bins of sequence_len each (`multipack_real_batches`).
- no packing: the HF Trainer's shuffled batches of micro_batch_size examples.
- padding: the collator pads each batch to its longest row, rounded up to `sequence_len` when
  pad_to_sequence_len is true, to 64 when it is unset, and not at all when it is false
  (axolotl.core.builders.causal.build_collator).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field

from ..training_shape import TrainingShape

# Axolotl 0.19 schema defaults (utils/schemas/config.py).
DEFAULT_BIN_SIZE = 200            # sample_packing_bin_size: most examples one packed row may hold
DEFAULT_GROUP_SIZE = 100_000      # sample_packing_group_size
DEFAULT_MIN_SAMPLE_LEN = 2        # min_sample_len
UNSET_PAD_MULTIPLE = 64           # pad_to_multiple_of when pad_to_sequence_len is unset
# Axolotl's ATTN_IMPLS_SUPPORTING_PACKING (utils/schemas/enums.py): varlen kernels, one long row.
VARLEN_ATTENTION = frozenset({"flash_attention_2", "flash_attention_3", "flash_attention_4",
                              "flash_attention_torch", "flex_attention", "xformers", "sage"})


@dataclass(frozen=True)
class BatchingPlan:
    """The keys of an Axolotl config that decide how examples become GPU rows."""

    sequence_len: int
    micro_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    sample_packing: bool = False
    pad_to_sequence_len: bool | None = None
    attn_implementation: str | None = None
    multipack_real_batches: bool | None = None
    bin_size: int = DEFAULT_BIN_SIZE
    group_size: int = DEFAULT_GROUP_SIZE
    sequential: bool = False
    excess_length_strategy: str = "drop"
    min_sample_len: int = DEFAULT_MIN_SAMPLE_LEN

    @classmethod
    def from_axolotl(cls, cfg: dict) -> "BatchingPlan":
        attn = cfg.get("attn_implementation") or ("flash_attention_2" if cfg.get("flash_attention") else None)
        shape = TrainingShape.of(cfg)
        return cls(
            sequence_len=shape.sequence_len,
            micro_batch_size=shape.micro_batch_size,
            gradient_accumulation_steps=shape.gradient_accumulation_steps,
            sample_packing=shape.sample_packing,
            # three ways, as Axolotl's collator reads it: True pads to sequence_len, None (unset) to a
            # multiple of 64, False to the batch's longest row only
            pad_to_sequence_len=cfg.get("pad_to_sequence_len"),
            attn_implementation=attn,
            multipack_real_batches=cfg.get("multipack_real_batches"),
            bin_size=int(cfg.get("sample_packing_bin_size") or DEFAULT_BIN_SIZE),
            group_size=int(cfg.get("sample_packing_group_size") or DEFAULT_GROUP_SIZE),
            sequential=bool(cfg.get("sample_packing_sequentially")),
            excess_length_strategy=str(cfg.get("excess_length_strategy") or "drop").lower(),
            min_sample_len=int(cfg.get("min_sample_len") or DEFAULT_MIN_SAMPLE_LEN),
        )

    @property
    def real_batches(self) -> bool:
        """True: micro_batch_size rows of sequence_len. False: one varlen row of micro x sequence_len."""
        if self.multipack_real_batches is not None:
            return bool(self.multipack_real_batches)
        return self.attn_implementation not in VARLEN_ATTENTION

    @property
    def pad_multiple(self) -> int:
        if self.pad_to_sequence_len:
            return UNSET_PAD_MULTIPLE * math.ceil(self.sequence_len / UNSET_PAD_MULTIPLE)
        if self.pad_to_sequence_len is None:
            return UNSET_PAD_MULTIPLE
        return 1

    @property
    def token_slots_per_step(self) -> int:
        """Upper bound of tokens one optimizer step computes on: the effective batch in tokens."""
        return self.micro_batch_size * self.gradient_accumulation_steps * self.sequence_len

    def describe(self) -> str:
        if self.sample_packing:
            if self.real_batches:
                return f"packed, {self.micro_batch_size} row(s) x {self.sequence_len}"
            return f"packed, 1 varlen row of {self.micro_batch_size * self.sequence_len}"
        if self.pad_to_sequence_len:
            return f"padded to {self.sequence_len}"
        if self.pad_to_sequence_len is None:
            return "padded to batch max (x64)"
        return "padded to batch max"


@dataclass(frozen=True)
class EpochCount:
    examples: int                 # examples the epoch trains on (after length filtering and drop_last)
    dropped_examples: int         # removed: too long (drop), too short, or in a dropped last batch
    real_tokens: int              # tokens of the examples themselves
    processed_tokens: int         # token positions the GPU computes on, padding included
    micro_batches: int
    optimizer_steps: int
    rows: int                     # GPU rows (packed bins, or examples when not packing)
    max_row_tokens: int           # longest row before padding: never above the row capacity
    # (rows, padded length) of each micro batch shape -> how many micro batches have it
    shapes: dict = field(default_factory=dict, compare=False)

    @property
    def efficiency(self) -> float:
        return self.real_tokens / self.processed_tokens if self.processed_tokens else 0.0

    def as_dict(self) -> dict:
        data = {key: value for key, value in asdict(self).items() if key != "shapes"}
        return {**data, "token_efficiency": round(self.efficiency, 4)}


def apply_length_policy(lengths, plan: BatchingPlan):
    """What Axolotl keeps of each example: truncate or drop past sequence_len, drop the tiny ones."""
    import numpy as np

    lengths = np.asarray(lengths, dtype=np.int64)
    if plan.excess_length_strategy == "truncate":
        lengths = np.minimum(lengths, plan.sequence_len)
    elif plan.excess_length_strategy == "raise" and (lengths > plan.sequence_len).any():
        raise ValueError(f"{int((lengths > plan.sequence_len).sum())} examples exceed sequence_len "
                         f"{plan.sequence_len} and excess_length_strategy is raise")
    else:
        lengths = lengths[lengths <= plan.sequence_len]
    return lengths[lengths >= plan.min_sample_len]


def packed_batches(lengths, plan: BatchingPlan, seed: int = 42) -> list[list[list[int]]]:
    """Axolotl's multipack batches: a list of micro batches, each a list of bins of example indices."""
    import torch
    from axolotl.utils.samplers.multipack import MultipackBatchSampler
    from torch.utils.data import RandomSampler, SequentialSampler

    indices = range(len(lengths))
    if plan.sequential:
        base = SequentialSampler(indices)
    else:
        base = RandomSampler(indices, generator=torch.Generator().manual_seed(seed))
    if plan.real_batches:
        batch_size, capacity = plan.micro_batch_size, plan.sequence_len
    else:
        batch_size, capacity = 1, plan.micro_batch_size * plan.sequence_len
    sampler = MultipackBatchSampler(
        base, batch_size=batch_size, batch_max_len=capacity, lengths=lengths, bin_size=plan.bin_size,
        group_size=plan.group_size, sequential=plan.sequential, drop_last=True, num_processes=1,
    )
    return generated_batches(sampler)


def generated_batches(sampler) -> list[list[list[int]]]:
    """`sampler.generate_batches()` (a MultipackBatchSampler's) with the heap frozen for the call.
    Axolotl 0.19 calls gc.collect() inside it; in a process that has imported torch, transformers and
    Axolotl that collection walks every object they made at import. Frozen, it walks only what was made
    since; unfrozen after, so the objects are collected as usual."""
    import gc

    gc.freeze()
    try:
        return sampler.generate_batches(set_stats=False)
    finally:
        gc.unfreeze()


def unpacked_batches(lengths, plan: BatchingPlan, seed: int = 42) -> list[list[list[int]]]:
    """The HF Trainer's shuffled micro batches; every example is its own row (a bin of one)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(lengths))
    return [[[int(i)] for i in order[start:start + plan.micro_batch_size]]
            for start in range(0, len(order), plan.micro_batch_size)]


def count_batches(batches: list[list[list[int]]], lengths, plan: BatchingPlan,
                  total_examples: int) -> EpochCount:
    multiple = plan.pad_multiple
    real = processed = rows = examples = longest_row = 0
    shapes: Counter = Counter()
    for batch in batches:
        row_lengths = [int(lengths[bin_].sum()) for bin_ in batch]
        longest = max(row_lengths)
        padded = multiple * math.ceil(longest / multiple)
        real += sum(row_lengths)
        processed += padded * len(row_lengths)
        rows += len(row_lengths)
        examples += sum(len(bin_) for bin_ in batch)
        longest_row = max(longest_row, longest)
        shapes[(len(row_lengths), padded)] += 1
    steps = math.ceil(len(batches) / plan.gradient_accumulation_steps) if batches else 0
    return EpochCount(examples=examples, dropped_examples=total_examples - examples, real_tokens=real,
                      processed_tokens=processed, micro_batches=len(batches), optimizer_steps=steps,
                      rows=rows, max_row_tokens=longest_row, shapes=dict(shapes))


def count_epoch(raw_lengths, plan: BatchingPlan, seed: int = 42) -> EpochCount:
    """One epoch of `raw_lengths` (tokens per tokenized example) batched as `plan` batches it."""
    lengths = apply_length_policy(raw_lengths, plan)
    if len(lengths) == 0:
        return EpochCount(0, len(raw_lengths), 0, 0, 0, 0, 0, 0)
    if plan.sample_packing:
        batches = packed_batches(lengths, plan, seed)
    else:
        batches = unpacked_batches(lengths, plan, seed)
    return count_batches(batches, lengths, plan, total_examples=len(raw_lengths))


def row_capacity(plan: BatchingPlan) -> int:
    """Most tokens one GPU row may hold before padding."""
    if plan.sample_packing and not plan.real_batches:
        return plan.micro_batch_size * plan.sequence_len
    return plan.sequence_len
