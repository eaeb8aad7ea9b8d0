"""The plugin saves single-writer prepared sets in the trainer's process (no spawned interpreters)."""

from __future__ import annotations

import os

from cli_tuner.training.callbacks import in_process_save


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def test_a_one_writer_save_spawns_no_process_and_keeps_every_row(tmp_path, monkeypatch):
    from datasets import Dataset, load_from_disk

    monkeypatch.setattr(Dataset, "save_to_disk", Dataset.save_to_disk)  # restored after the test
    rows = Dataset.from_dict({"input_ids": [[1, 2, 3]] * 5, "labels": [[-100, 2, 3]] * 5})

    # As Axolotl calls it for a 5-example eval set: datasets 4.8 spawns a pool and a manager (their
    # CPU time lands in os.times().children_* once they are reaped)
    before = _children_cpu()
    rows.save_to_disk(str(tmp_path / "spawned"), num_proc=1, max_shard_size=None, num_shards=None)
    assert _children_cpu() > before

    assert in_process_save.save_single_writer_sets_in_process() is True
    assert in_process_save.save_single_writer_sets_in_process() is False  # once per process
    before = _children_cpu()
    rows.save_to_disk(str(tmp_path / "here"), num_proc=1, max_shard_size=None, num_shards=None)
    assert _children_cpu() == before
    assert load_from_disk(str(tmp_path / "here"))["labels"] == rows["labels"]
