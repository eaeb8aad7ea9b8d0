"""How many evaluation batches a config's eval split makes, the way Axolotl 0.19 batches evaluation.

A run whose evaluation yields no batch has no `eval_loss`; with `metric_for_best_model`, best-model
tracking or early stopping transformers then raises KeyError at the first evaluation and the run
dies after it has paid for model loading and training (the H200 run of 2026-12-04). This module
answers before any model loads.

Axolotl's trainer (core/trainers/base.py `_get_eval_sampler`, `_create_multipack_sampler`,
`_get_dataloader`):
- packed eval (sample_packing, eval_sample_packing not false; the schema sets it true beside
  sample_packing): a MultipackBatchSampler over the eval set in order (SequentialSampler), always
  drop_last. With an attention that packs (steps.attention_packs: flash attention, or
  `multipack_real_batches: false`) a batch is one bin of micro_batch_size x sequence_len tokens;
  otherwise (sdpa, eager: real batches) micro_batch_size bins of sequence_len tokens, so an eval set
  that fills fewer bins than micro_batch_size makes no batch at all. Bins are first-fit in order
  (`pack_group`), at most sample_packing_bin_size examples each, or next-fit with
  sample_packing_sequentially (`allocate_sequentially`).
- unpacked eval: eval_batch_size (default micro_batch_size) examples per batch; the last partial
  batch is dropped only with dataloader_drop_last, which Axolotl sets when sample_packing is on and
  eval_sample_packing is off.
Before batching, Axolotl shuffles the merged eval set with `seed` (shuffle_merged_datasets, default
true; datasets' `shuffle` is numpy's default_rng(seed).permutation), then truncates or drops
examples longer than eval_sequence_len or sequence_len (excess_length_strategy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import DataError
from ..training_shape import TrainingShape
from .steps import attention_packs

AXOLOTL_BIN_SIZE = 200        # sample_packing_bin_size's default
AXOLOTL_GROUP_SIZE = 100_000  # sample_packing_group_size's default: groups are packed independently
# Settings under which the trainer evaluates and reads eval metrics; each one needs an eval_loss.
NEEDS_EVAL = ("metric_for_best_model", "load_best_model_at_end", "early_stopping_patience", "eval_steps",
              "eval_strategy")


def _int(cfg: dict, key: str, default: int) -> int:
    value = cfg.get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value else default


@dataclass(frozen=True)
class EvalBatching:
    packed: bool
    batch_size: int        # bins per batch (packed) or examples per batch (unpacked)
    bin_tokens: int        # tokens one bin holds (packed only)
    bin_examples: int      # examples one bin holds at most (packed only)
    sequential: bool       # next-fit packing (sample_packing_sequentially)
    drop_last: bool

    def describe(self) -> str:
        """What one eval batch takes."""
        if not self.packed:
            return f"{self.batch_size} examples" + ("" if self.drop_last else " (a partial batch counts)")
        if self.batch_size == 1:
            return f"one packed bin of {self.bin_tokens} tokens"
        return f"{self.batch_size} packed bins of {self.bin_tokens} tokens"


def batching(cfg: dict) -> EvalBatching:
    """The eval batching of `cfg` as the trainer builds it (reads the resolved config's keys, so a
    fallback that rewrites attn_implementation / multipack_real_batches is followed as it is)."""
    shape = TrainingShape.of(cfg)
    micro, sequence = shape.micro_batch_size, shape.sequence_len
    if shape.eval_sample_packing:
        one_bin = attention_packs(cfg)
        return EvalBatching(True, 1 if one_bin else micro, micro * sequence if one_bin else sequence,
                            _int(cfg, "sample_packing_bin_size", AXOLOTL_BIN_SIZE),
                            bool(cfg.get("sample_packing_sequentially")), True)
    drop_last = cfg.get("dataloader_drop_last")
    if drop_last is None:
        drop_last = shape.sample_packing  # Axolotl: packed training beside unpacked eval
    return EvalBatching(False, shape.eval_batch_size, 0, 0, False, bool(drop_last))


def evaluates(cfg: dict) -> list[str]:
    """The keys that make the trainer evaluate and need eval_loss; empty when nothing does or there
    is no eval set."""
    if not cfg.get("test_datasets") and not float(cfg.get("val_set_size") or 0):
        return []
    found = []
    for key in NEEDS_EVAL:
        value = cfg.get(key)
        if key == "eval_strategy":  # YAML reads a bare `no` as false
            if value not in (None, False, "no"):
                found.append(key)
        elif value not in (None, False, 0, ""):
            found.append(key)
    return found


def eval_order(cfg: dict, lengths: list[int]) -> list[int]:
    """`lengths` in the order Axolotl evaluates them: shuffled with `seed`, then long ones truncated or dropped."""
    ordered = list(lengths)
    seed = cfg.get("seed")
    if cfg.get("shuffle_merged_datasets") is not False and not cfg.get("curriculum_sampling") and seed is not None \
            and len(ordered) > 1:
        import numpy as np

        ordered = [ordered[i] for i in np.random.default_rng(int(seed)).permutation(len(ordered))]
    limit = _int(cfg, "eval_sequence_len", 0) or TrainingShape.of(cfg).sequence_len
    if str(cfg.get("excess_length_strategy") or "drop").lower() == "truncate":
        return [min(int(x), limit) for x in ordered if x > 0]
    return [int(x) for x in ordered if 0 < x <= limit]


def _first_fit(lengths: list[int], capacity: int, most: int, group: int) -> int:
    """Bins of Axolotl's `pack_parallel` / `pack_group`: first fit, in order, per group."""
    bins = 0
    for start in range(0, len(lengths), group):
        space: list[int] = []
        held: list[int] = []
        for size in lengths[start:start + group]:
            for index, free in enumerate(space):
                if free >= size and held[index] < most:
                    space[index] -= size
                    held[index] += 1
                    break
            else:
                space.append(capacity - size)
                held.append(1)
        bins += len(space)
    return bins


def _next_fit(lengths: list[int], capacity: int) -> int:
    """Bins of Axolotl's `allocate_sequentially`."""
    bins, free = 0, 0
    for size in lengths:
        if bins and size <= free:
            free -= size
        else:
            bins, free = bins + 1, capacity - size
    return bins


def bins(cfg: dict, lengths: list[int]) -> int:
    """Packed bins the eval set makes (packed eval), or its example count (unpacked)."""
    how = batching(cfg)
    ordered = eval_order(cfg, lengths)
    if not how.packed:
        return len(ordered)
    if how.sequential:
        return _next_fit(ordered, how.bin_tokens)
    return _first_fit(ordered, how.bin_tokens, how.bin_examples, _int(cfg, "sample_packing_group_size", AXOLOTL_GROUP_SIZE))


def batches(cfg: dict, lengths: list[int]) -> int:
    """Eval batches of `lengths` (tokens per eval example, in file order)."""
    how = batching(cfg)
    count = bins(cfg, lengths)
    return count // how.batch_size if how.drop_last else math.ceil(count / how.batch_size)


def eval_set(files: list[list[int]], limit: int | None = None) -> list[int]:
    """The eval examples' lengths when each file is cut to its first `limit` (smoke and rehearsal
    slices cut each file so), concatenated in file order as Axolotl merges them."""
    return [length for lengths in files for length in (lengths if limit is None else lengths[:limit])]


def examples_for_one_batch(cfg: dict, files: list[list[int]], at_least: int = 1) -> int | None:
    """The fewest leading examples per file (at least `at_least`) that make one eval batch, or None
    when the whole files do not."""
    how = batching(cfg)
    longest = max((len(f) for f in files), default=0)
    for count in range(max(at_least, 1), max(longest, at_least) + 1):
        lengths = eval_set(files, count)
        if how.packed:
            # First fit leaves at most one bin half empty (bins closed by bin_examples aside): skip the hopeless.
            most = 2 * sum(lengths) // how.bin_tokens + 1 + len(lengths) // how.bin_examples
            if min(len(lengths), most) < how.batch_size:
                continue
        if batches(cfg, lengths) >= 1:
            return count
        if count >= longest:
            break
    return None


def describe_shortfall(cfg: dict, lengths: list[int]) -> str:
    how = batching(cfg)
    usable = eval_order(cfg, lengths)
    made = bins(cfg, lengths) if how.packed else len(usable)
    unit = ("packed bin" if how.packed else "usable example") + ("" if made == 1 else "s")
    return f"{len(lengths)} examples ({sum(usable)} tokens) make {made} {unit}; one eval batch takes {how.describe()}"


def refusal(cfg: dict, lengths: list[int], where: str, config: str) -> str | None:
    """The one-line reason `cfg` cannot evaluate on `lengths`, or None when it makes an eval batch or
    nothing needs one."""
    needs = evaluates(cfg)
    if not needs or not cfg.get("test_datasets"):  # a val_set_size split is drawn at random from train
        return None
    if batches(cfg, lengths) >= 1:
        return None
    how = batching(cfg)
    fix = "more validation examples"
    if how.packed:
        fix += ", eval_sample_packing: false"
        if how.batch_size > 1:
            fix += " or multipack_real_batches: false (one bin per eval batch)"
    return (f"{where}: {describe_shortfall(cfg, lengths)} under {config}'s eval batching, so evaluation yields "
            f"no eval batch and no eval_loss, and {', '.join(needs)} would fail the run at its first evaluation; "
            f"give it {fix}")


def require_one_batch(cfg: dict, lengths: list[int], where: str, config: str) -> None:
    """DataError (exit 3) when `cfg` needs eval metrics and its eval split makes no eval batch."""
    reason = refusal(cfg, lengths, where, config)
    if reason is not None:
        raise DataError(reason)
