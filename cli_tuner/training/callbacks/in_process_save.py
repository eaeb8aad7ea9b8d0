"""Prepared datasets of one writer are saved in the trainer's own process, not a spawned one.

datasets 4.8's `Dataset.save_to_disk(num_proc=n)` opens a `spawn` pool of n processes plus a
Manager process for any n >= 1 (arrow_dataset.py, save_to_disk). A spawned interpreter imports
the trainer's `__main__` again (axolotl.cli.main: torch, transformers, Axolotl) before it writes
a byte. Axolotl saves every prepared set with num_proc = rows // 256, at least 1
(utils/data/shared.py, save_preprocessed_dataset), so each set under 512 rows, smoke's 10 train
and 5 eval examples among them, paid two fresh interpreters for nothing: 11-14 s per set
(bench/smoke_phases.py). With one writer the pool only moves the same shard writes into another
process; num_proc=None writes them here. Larger sets keep their pool.
"""

from __future__ import annotations

import functools

PATCHED = "_cli_tuner_in_process_save"


def save_single_writer_sets_in_process() -> bool:
    """Wrap Dataset.save_to_disk once in this process; True when this call installed it."""
    from datasets import Dataset

    original = Dataset.save_to_disk
    if getattr(original, PATCHED, False):
        return False

    @functools.wraps(original)
    def save_to_disk(self, dataset_path, *args, num_proc=None, **kwargs):
        return original(self, dataset_path, *args, num_proc=None if num_proc == 1 else num_proc, **kwargs)

    setattr(save_to_disk, PATCHED, True)
    Dataset.save_to_disk = save_to_disk
    return True
