"""Throughput of a config on a GPU before renting it: model FLOPs per token, the step time by part,
processed tokens per second, the range the projection rests on, and `project_time`: the one time
per step, per epoch and per run that validate prints and docs/performance.md's table shows."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..batching import epoch as epoch_batching
from ..batching.steps import total_steps
from ..facts.gpus import GpuSpec
from ..training_shape import TrainingShape
from .memory import parameter_counts

# Step time of 4-bit QLoRA per micro-batch: the matmul FLOPs at COMPUTE_MFU of the dense bf16
# peak, bitsandbytes' dequantization (memory-bound), and fixed costs that no GPU speeds up: per
# decoder layer (its forward, recompute and backward are a few hundred small kernels, bitsandbytes'
# dequantize calls, LoRA's dropout and rank-r matmuls: launch-bound at micro-batches of a few
# hundred tokens) and per micro-batch (the lm_head and fp32 cross-entropy over the vocabulary, the
# step's Python work). Fitted (least squares on log step time, the three constants together) to:
#   published: QwenLM/Qwen README "Profiling of Memory and Speed", Qwen-7B Q-LoRA, 1x A100-SXM4-80G,
#     8 micro-batches per step: 3.0 / 3.5 / 7.0 / 11.6 / 22.3 s at 512 / 1,024 / 2,048 / 4,096 / 8,192 tokens;
#   measured: this project's first GPU run (H200, the A5000 config at the base model's widths, 4
#     micro-batches of 512): 1.028 s per step at 28 layers, 0.266 s at 4 layers.
# The model reproduces all seven within measured/predicted TIME_BAND (docs/memory.md has the table).
COMPUTE_MFU = 0.74
LAYER_OVERHEAD_S = 0.00525
MICRO_BATCH_OVERHEAD_S = 0.035
DEQUANT_BYTES_PER_WEIGHT = 4.5   # read 0.5 packed, write 2 bf16, matmul reads 2 back
# measured/predicted step time over the seven points: the projection's range where the GPU class
# is one the model was fitted on; elsewhere the fixed costs and the MFU were never timed, and the
# range widens to TIME_BAND_UNMEASURED.
TIME_BAND = (0.86, 1.12)
TIME_BAND_UNMEASURED = (0.75, 1.5)
TIMED_CHIPS = {"8.0": "A100, sm_80 (published, QwenLM/Qwen README)", "9.0": "H200, sm_90 (measured, 2026-12-04)"}


def flops_per_token(facts, axolotl_cfg: dict) -> float:
    """Model FLOPs per trained token: 6N (Kaplan et al. 2020), 8N when gradient checkpointing
    recomputes the forward, plus attention's 12·L·s·d (PaLM, Chowdhery et al. 2022, appendix B;
    x4/3 with recompute). N counts the matmul weights (decoder linears + lm_head)."""
    counts = parameter_counts(facts)
    n = counts["linear"] + facts.vocab_size * facts.hidden_size
    checkpointing = bool(axolotl_cfg.get("gradient_checkpointing"))
    sequence = TrainingShape.of(axolotl_cfg).sequence_len
    width = facts.num_attention_heads * facts.head_dim
    attention = 12 * facts.num_hidden_layers * sequence * width * (4 / 3 if checkpointing else 1)
    return (8 if checkpointing else 6) * n + attention


def step_parts(facts, gpu: GpuSpec, axolotl_cfg: dict, mfu: float | None = None) -> dict[str, float]:
    """Seconds of one micro-batch by part: compute, dequantization, per-layer and per-micro-batch costs."""
    if gpu.peak_bf16_tflops <= 0:
        raise ValueError(f"no peak TFLOP/s known for {gpu.name}; cannot estimate throughput")
    tokens = TrainingShape.of(axolotl_cfg).micro_batch_tokens
    utilization = COMPUTE_MFU if mfu is None else mfu
    dequant = 0.0
    if axolotl_cfg.get("load_in_4bit") or axolotl_cfg.get("adapter") == "qlora" or axolotl_cfg.get("load_in_8bit"):
        passes = 3 if axolotl_cfg.get("gradient_checkpointing") else 2
        bandwidth = (gpu.memory_bandwidth_gbs or 1000) * 1e9
        dequant = parameter_counts(facts)["linear"] * DEQUANT_BYTES_PER_WEIGHT * passes / bandwidth
    return {"compute": flops_per_token(facts, axolotl_cfg) * tokens / (gpu.peak_bf16_tflops * 1e12 * utilization),
            "dequantization": dequant,
            "per_layer": facts.num_hidden_layers * LAYER_OVERHEAD_S,
            "per_micro_batch": MICRO_BATCH_OVERHEAD_S}


def estimate_tokens_per_second(facts, gpu: GpuSpec, axolotl_cfg: dict, mfu: float | None = None) -> float:
    """Processed tokens per second (padding included): one micro-batch's tokens over its step_parts.
    mfu None: COMPUTE_MFU, calibrated as described above."""
    tokens = TrainingShape.of(axolotl_cfg).micro_batch_tokens
    return tokens / sum(step_parts(facts, gpu, axolotl_cfg, mfu).values())


def model_mfu(facts, gpu: GpuSpec, axolotl_cfg: dict) -> float:
    """The whole step's model FLOPs utilization the model predicts (what measurements.json measures)."""
    return estimate_tokens_per_second(facts, gpu, axolotl_cfg) * flops_per_token(facts, axolotl_cfg) / (
        gpu.peak_bf16_tflops * 1e12)


def time_band(gpu: GpuSpec) -> tuple[tuple[float, float], str]:
    """(low, high) factors on the predicted time, and what they rest on."""
    fitted = " and ".join(TIMED_CHIPS.values())
    if gpu.kind == "cuda" and gpu.compute_capability in TIMED_CHIPS:
        return TIME_BAND, f"the model fitted on step times of {fitted}"
    chip = f" (sm_{gpu.sm})" if gpu.sm else ""
    return TIME_BAND_UNMEASURED, (f"no step time measured on {gpu.name}{chip}: the model fitted on {fitted}, "
                                  "range widened")


def format_duration(seconds: float) -> str:
    """A duration as every projection prints it (validate's line and docs/performance.md's table)."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class TimeProjection:
    """The model's training time of a config on a GPU, from one epoch of its data as Axolotl batches it."""

    gpu: str
    steps: int                     # the run's optimizer steps (batching.steps.total_steps)
    steps_per_epoch: int
    epoch_seconds: float           # the model's time for one epoch's micro batches, on each process at once
    processed_tokens_per_epoch: int
    band: tuple[float, float]      # measured/predicted factors the model's fit points span
    rests_on: str

    @property
    def step_seconds(self) -> float:
        return self.epoch_seconds / self.steps_per_epoch

    @property
    def seconds(self) -> float:
        """The run's training steps (no loading, evaluation or saving)."""
        return self.steps * self.step_seconds

    @property
    def tokens_per_second(self) -> float:
        """Processed tokens (padding included) per second, over the epoch."""
        return self.processed_tokens_per_epoch / self.epoch_seconds

    @property
    def range_seconds(self) -> tuple[float, float]:
        return self.seconds * self.band[0], self.seconds * self.band[1]


def micro_batch_seconds(facts, gpu: GpuSpec, cfg: dict, rows: int, length: int, varlen_row: int | None = None,
                        mfu: float | None = None) -> float:
    """The model's time for one micro batch of `rows` rows padded to `length` tokens. A varlen packed
    row (flash attention; `varlen_row` = sequence_len) is charged as ceil(length / sequence_len) rows
    of sequence_len: its attention never spans two examples, so this is an upper bound."""
    if varlen_row:
        rows, length = rows * math.ceil(length / varlen_row), varlen_row
    shaped = {**cfg, "sequence_len": length, "micro_batch_size": rows}
    return rows * length / estimate_tokens_per_second(facts, gpu, shaped, mfu)


def project_time(cfg: dict, facts, gpu: GpuSpec, epoch: epoch_batching.EpochCount,
                 processes: int = 1, mfu: float | None = None) -> TimeProjection | None:
    """The run's time from one epoch of its training data (`epoch`: batching.epoch.count_epoch): each
    micro batch charged at its own rows and padded length, the processes working at once (each takes
    its own micro batches); the run's steps are batching.steps.total_steps. None when the GPU's peak
    is unknown or the epoch trains nothing. `mfu`: a utilization other than the model's (COMPUTE_MFU)."""
    if gpu.peak_bf16_tflops <= 0 or not epoch.micro_batches:
        return None
    plan = epoch_batching.BatchingPlan.from_axolotl(cfg)
    varlen_row = plan.sequence_len if plan.sample_packing and not plan.real_batches else None
    processes = max(1, int(processes))
    # the ranks run at once, each on its share of the micro batches (the largest share decides)
    share = math.ceil(epoch.micro_batches / processes) / epoch.micro_batches
    seconds = share * sum(count * micro_batch_seconds(facts, gpu, cfg, rows, length, varlen_row, mfu)
                          for (rows, length), count in epoch.shapes.items())
    per_epoch = max(1, math.ceil(epoch.micro_batches / (plan.gradient_accumulation_steps * processes)))
    band, rests_on = time_band(gpu)
    return TimeProjection(gpu=gpu.name, steps=total_steps(cfg, None, epoch_steps=per_epoch),
                          steps_per_epoch=per_epoch, epoch_seconds=seconds,
                          processed_tokens_per_epoch=epoch.processed_tokens, band=band, rests_on=rests_on)


def epoch_of(cfg: dict, train_lengths: list[int] | None, train_examples: int | None) -> epoch_batching.EpochCount | None:
    """One epoch of the run's training data: from the examples' token lengths (the data report's), or,
    without them, an upper bound for unpacked rows: every example counted at sequence_len. None
    when neither is known, or packing needs the lengths."""
    shape = TrainingShape.of(cfg)
    if not train_lengths:
        if not train_examples or shape.sample_packing:
            return None
        train_lengths = [shape.sequence_len] * int(train_examples)
    lengths = list(train_lengths)[:shape.trained_examples(len(train_lengths))]  # Axolotl sets val_set_size aside
    plan = epoch_batching.BatchingPlan.from_axolotl(cfg)
    return epoch_batching.count_epoch(lengths, plan, seed=int(cfg.get("seed") or 42))
