"""The plugin's measurements: counted inside a real HF Trainer on CPU, and the arithmetic on recorded numbers."""

from __future__ import annotations

import json

import pytest

from cli_tuner.paths import MEASUREMENT_INPUTS_FILE, MEASUREMENTS_FILE
from cli_tuner.training import measurements as parent_side
from cli_tuner.training.callbacks import measurements as callback_module

SEQ = 16
# (real tokens) of 12 examples, each padded to SEQ: every one is seen once in 3 steps of 2 x 2
REAL = [3, 5, 7, 9, 11, 13, 16, 4, 6, 8, 10, 12]


def tiny_trainer(run_dir, max_steps=3):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0))
    rows = []
    for index, real in enumerate(REAL):
        ids = [1 + (index + j) % 60 for j in range(real)] + [0] * (SEQ - real)
        mask = [1] * real + [0] * (SEQ - real)
        labels = [-100] * (real - 2) + ids[real - 2:real] + [-100] * (SEQ - real)  # the last 2 real tokens train
        rows.append({"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)})
    args = TrainingArguments(output_dir=str(run_dir), max_steps=max_steps, per_device_train_batch_size=2,
                             gradient_accumulation_steps=2, logging_steps=1, save_strategy="no", report_to=[],
                             use_cpu=True, dataloader_num_workers=0, learning_rate=1e-3)
    return Trainer(model=model, args=args, train_dataset=rows)


def test_the_callback_measures_real_tokens_and_step_time_and_no_gpu_memory_on_cpu(tmp_path):
    (tmp_path / MEASUREMENT_INPUTS_FILE).write_text(json.dumps({"flops_per_token": 1000.0, "peak_tflops": None}))
    trainer = tiny_trainer(tmp_path)
    callback = callback_module.MeasurementsCallback(str(tmp_path), trainer)
    trainer.add_callback(callback)
    trainer.train()
    record = json.loads((tmp_path / MEASUREMENTS_FILE).read_text())
    assert record["device"] == "cpu"
    assert record["gpu_memory"] is None and record["gpu_memory_note"] == callback_module.NO_CUDA_NOTE
    assert record["steps_measured"] == 3 and record["steps_in_rates"] == 2
    assert record["micro_batches_per_step"] == 2
    assert record["tokens"]["real"] == sum(REAL)           # padding is not counted
    assert record["tokens"]["processed"] == len(REAL) * SEQ
    assert record["tokens"]["trainable"] == 2 * len(REAL)
    assert record["tokens"]["counted_by"] == ["attention_mask"]
    assert record["longest_row_tokens"] == SEQ and record["max_rows_per_micro_batch"] == 2
    assert record["real_tokens_per_second"] > 0 and record["step_seconds"]["median"] > 0
    # the timed steps exclude the first; their real tokens over their seconds is the rate
    assert record["real_tokens_per_second"] < record["processed_tokens_per_second"]
    assert record["mfu"] is None and "no GPU peak" in record["mfu_note"]


def test_without_inputs_or_mask_the_callback_still_counts_and_says_how():
    import torch

    counted = callback_module.count_tokens({"input_ids": torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0]])}, pad_token_id=0)
    assert counted["real"] == 3 and counted["processed"] == 8 and counted["counted_by"] == "input_ids != pad_token_id"
    counted = callback_module.count_tokens({"input_ids": torch.tensor([[5, 6, 0, 0]])})
    assert counted["real"] == 4 and counted["counted_by"].startswith("all token slots")
    # Axolotl's packed rows number their examples in attention_mask; 0 is padding
    counted = callback_module.count_tokens({"input_ids": torch.zeros(1, 6, dtype=torch.long),
                                            "attention_mask": torch.tensor([[1, 1, 2, 2, 2, 0]])})
    assert counted["real"] == 5


def step(seconds, real, processed, row_len=512, rows=1, micro=4):
    return {"seconds": seconds, "real": real, "processed": processed, "trainable": real // 4, "rows": rows,
            "row_len": row_len, "max_micro_tokens": processed // micro, "micro_batches": micro,
            "counted_by": "attention_mask"}


def test_mfu_and_rates_from_recorded_steps_skip_the_first_step():
    # recorded shape of an A5000 smoke step: 4 x 512 padded tokens, ~264 real, ~2.6 s (numbers made up, arithmetic not)
    steps = [step(9.0, 270, 2048)] + [step(2.0, 264, 2048)] * 4
    memory = {"peak_device_gib": 9.1}
    record = callback_module.summarize(steps, {"flops_per_token": 6.0e10, "peak_tflops": 111.1}, memory, "cuda", "NVIDIA RTX A5000")
    assert record["steps_in_rates"] == 4
    assert record["processed_tokens_per_second"] == pytest.approx(2048 / 2.0)
    assert record["real_tokens_per_second"] == pytest.approx(264 / 2.0)
    assert record["mfu"] == pytest.approx(round(1024 * 6.0e10 / 111.1e12, 4))
    assert record["mfu_real_tokens"] == pytest.approx(round(132 * 6.0e10 / 111.1e12, 4))
    assert record["step_seconds"]["first"] == 9.0 and record["step_seconds"]["median_after_first"] == 2.0
    assert record["gpu_memory"] == memory and record["gpu_memory_note"] is None


def test_provenance_keeps_a_summary_of_the_measurements(tmp_path):
    assert parent_side.summary(tmp_path) is None
    record = callback_module.summarize([step(2.0, 264, 2048)] * 3, {}, {"peak_device_gib": 9.1, "peak_allocated_gib": 7.0,
                                                                        "peak_reserved_gib": 8.4}, "cuda", "X")
    (tmp_path / MEASUREMENTS_FILE).write_text(json.dumps(record))
    kept = parent_side.summary(tmp_path)
    assert kept["peak_device_gib"] == 9.1 and kept["real_tokens_per_second"] == 132.0
    assert kept["median_step_seconds"] == 2.0 and kept["file"] == MEASUREMENTS_FILE
