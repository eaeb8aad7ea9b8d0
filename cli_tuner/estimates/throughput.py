"""Throughput of a config on a GPU before renting it: model FLOPs per token, the step time by part,
processed tokens per second, and the range the projection rests on."""

from __future__ import annotations

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
