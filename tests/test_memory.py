"""The GPU memory estimate: the shipped configs, published measurements, advice, disk, throughput.

Published numbers checked here (docs/memory.md explains each comparison):
  - QLoRA paper (Dettmers et al. 2023, arXiv:2305.14314, section 3 "Double Quantization"):
    NF4 constants cost 32/64 = 0.5 bit per weight, 8/64 + 32/(64*256) = 0.127 with double quant.
  - dev.to/sumanpro "QLoRA: Fine-Tuning a 7B Model on a 16GB GPU (It Shrank to 5.4GB in Front of Me)":
    Qwen2.5-7B loaded in 4-bit NF4 + double quant, model.get_memory_footprint() = "5.44 GB".
  - unslothai/unsloth README.md (commit 000252c9), "Context length benchmarks", also
    https://unsloth.ai/blog/llama3-3: maximum context of Hugging Face + FA2 QLoRA, Llama 3.1 8B
    Instruct, rank 32 on all linear layers, batch size 1, padded sequences:
    12 GB 932, 16 GB 2,551, 24 GB 5,789, 40 GB 12,264, 48 GB 15,502, 80 GB 28,454 tokens.
  - QwenLM/Qwen README.md, "Profiling of Memory and Speed": Qwen-7B Q-LoRA on one A100-SXM4-80G,
    batch 1, gradient accumulation 8, flash attention 2: 3.0 s/it at 512 tokens ... 22.3 s/it at 8192
    (the throughput model's calibration data).
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from cli_tuner import console
from cli_tuner.checks import environment, preflight
from cli_tuner.estimates import memory, throughput
from cli_tuner.facts import cuda_context, gpus, models as model_facts
from cli_tuner.errors import EnvironmentProblem, UsageError
from cli_tuner.facts.gpus import GpuSpec, resolve_target
from cli_tuner.facts.models import ModelFacts

QWEN = "Qwen/Qwen2.5-Coder-7B-Instruct"
MISTRAL = "mistralai/Mistral-7B-Instruct-v0.2"

# What configs/axolotl_config.yaml sets that the estimate reads (the CLI tests read the file itself).
A5000_CONFIG = {
    "base_model": QWEN, "adapter": "qlora", "load_in_4bit": True,
    "bnb_config_kwargs": {"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True},
    "lora_r": 8, "lora_dropout": 0.05, "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "sequence_len": 512, "micro_batch_size": 1, "gradient_accumulation_steps": 4, "optimizer": "adamw_bnb_8bit",
    "gradient_checkpointing": True, "bf16": True, "attn_implementation": "sdpa",
    "save_total_limit": 3, "save_steps": 100, "max_steps": 500,
}

# Llama 3.1 8B's config.json (meta-llama/Llama-3.1-8B-Instruct on the Hugging Face hub).
LLAMA31_8B = ModelFacts(
    name="meta-llama/Llama-3.1-8B-Instruct", source="published config.json", model_type="llama",
    architectures=["LlamaForCausalLM"], hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
    tie_word_embeddings=False, rope_theta=500000.0, rms_norm_eps=1e-5)
# Qwen-7B (first generation) config.json: intermediate_size 22016 there is gate + up, 11008 each.
QWEN1_7B = ModelFacts(
    name="Qwen/Qwen-7B", source="published config.json", model_type="qwen", architectures=["QWenLMHeadModel"],
    hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, vocab_size=151936, max_position_embeddings=8192, tie_word_embeddings=False,
    rope_theta=10000.0, rms_norm_eps=1e-6)


@pytest.fixture(scope="module")
def qwen():
    return model_facts.lookup(QWEN)


@pytest.fixture(scope="module")
def a5000():
    return resolve_target("a5000", None)


def gib(est) -> float:
    return est.total_gib


# ----------------------------------------------------------------------------- acceptance (issue 6)

def test_shipped_a5000_config_fits_a5000(qwen, a5000):
    est = memory.estimate(A5000_CONFIG, qwen, a5000)
    assert est.verdict == "fits"
    # the config comment states the exact figure (tests/test_config_matrix.py holds it equal)
    assert 6.0 < est.total_gib < 10.0
    assert est.capacity_gib == pytest.approx(24 * 0.98)
    assert est.advice == []


def test_sequence_32768_does_not_fit_and_advice_fits(qwen, a5000):
    long = dict(A5000_CONFIG, sequence_len=32768)
    est = memory.estimate(long, qwen, a5000)
    assert est.verdict == "does-not-fit"
    assert est.total_gib > 2 * est.capacity_gib
    # logits (152k vocabulary x 32k tokens in fp32) are the largest part
    assert max(est.parts, key=est.parts.get) == "logits"
    sequence_advice = [a for a in est.advice if a.startswith("--set sequence_len=")]
    assert sequence_advice, est.advice
    suggested = int(sequence_advice[0].split("=")[1].split()[0])
    assert 512 < suggested < 32768
    assert memory.estimate(dict(long, sequence_len=suggested), qwen, a5000).verdict == "fits"
    assert memory.estimate(dict(long, sequence_len=suggested + 1024), qwen, a5000).verdict != "fits"


def test_cli_estimate_memory_default_config_fits(entrypoint):
    result = entrypoint("estimate-memory", "--config", "configs/axolotl_config.yaml")
    assert result.returncode == 0, result.stderr
    assert "RTX A5000: fits" in result.stdout
    assert "LoRA r8 on q,k,v,o" in result.stdout and "adamw_bnb_8bit" in result.stdout


def test_cli_estimate_memory_refuses_32768(entrypoint):
    result = entrypoint("estimate-memory", "--config", "configs/axolotl_config.yaml", "--set", "sequence_len=32768")
    assert result.returncode == 5
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: configs/axolotl_config.yaml: upper bound ")
    assert "(expected " in line and ", training peak) > 23.5 GiB on RTX A5000; try: --set sequence_len=" in line
    assert "Traceback" not in result.stderr


def test_cli_unknown_target_is_a_usage_error(entrypoint):
    result = entrypoint("estimate-memory", "--target", "tpu-v9")
    assert result.returncode == 2
    assert "unknown target 'tpu-v9'; use one of a5000," in result.stderr
    assert "--gpu-memory" in result.stderr


def test_cli_gpu_memory_for_an_unlisted_gpu(entrypoint):
    result = entrypoint("estimate-memory", "--target", "rtx-a2000", "--gpu-memory", "6")
    assert result.returncode == 5
    assert "on rtx-a2000" in result.stderr


def test_shipped_h100_and_m4_configs_fit_their_targets():
    from cli_tuner.config import load

    for path, target in (("configs/training_config_h100.yaml", "h100"), ("configs/training_config_m4.yaml", "m4")):
        loaded = load(path)
        facts = model_facts.lookup(loaded.base_model)
        assert loaded.target == target
        est = memory.estimate(loaded.axolotl, facts, resolve_target(target, None))
        assert est.verdict == "fits", (path, est.total_gib, est.capacity_gib)


# ----------------------------------------------------------------------------- the GPU runs

H200_CUDA13 = dataclasses.replace(resolve_target("h200", None), cuda_major=13)

# The first H200 run of 2026-12-04 (GPU check at commit f9dcf78): the A5000 config with the base model's exact widths on
# one H200 (driver 580, CUDA 13.0, torch 2.11, PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True),
# at 28 and 4 of its 28 layers. Its device figures (9.618, 6.932) are not this model's to match: the
# stand-in model was built on the GPU inside the parent gpu_check process, whose own CUDA context and
# cached blocks were on the device while smoke measured "device used minus its reserved" (1.352 of
# "context"). So these points are checked in the allocator's view: the loading peak reserved against
# the estimate without its context.
H200_FIRST_RUN = {  # layers: (loading reserved, training reserved at the end)
    28: (8.266, 5.342),
    4: (5.580, 2.615),
}


@pytest.mark.parametrize("layers", sorted(H200_FIRST_RUN))
def test_the_first_gpu_runs_allocator_points_land_within_the_band(qwen, layers):
    loading_reserved, training_floor = H200_FIRST_RUN[layers]
    est = memory.estimate(A5000_CONFIG, dataclasses.replace(qwen, num_hidden_layers=layers), H200_CUDA13)
    assert est.deciding_phase == "loading"
    assert est.context.measured
    assert 0.95 <= loading_reserved / (est.load_peak_gib - est.context.gib) <= 1.10
    # The run's training figure was read after Axolotl's last log had reset the peak counters and its
    # checkpoint save had emptied the cache (the callback reads the peaks before it): a floor.
    assert est.training_gib - est.context.gib > training_floor


# docs/measurements/gpu_check-2026-12-04-h200*.json, the second run (same H200 and stack, the model
# built in a child process that had exited): smoke's own context alone, so the device figures are
# the model's to match. Each case as gpu_check estimated it: the config + overlay + the smoke
# overlay, sdpa instead of flash attention (no flash-attn source there), the micro batch at the
# longest one measured, 4 of the base model's layers.
H200_SECOND_RUN = {  # case: (config, overlay, tokens per micro batch, peak on the device, the phase that peaked)
    "a5000": ("configs/axolotl_config.yaml", None, 512, 6.329, "loading"),
    "a5000-packing": ("configs/axolotl_config.yaml", "configs/overlays/packing.yaml", 2048, 7.962, "training"),
    # 16-bit LoRA: the loading phase's cast of embeddings and lm_head to fp32 peaks here too
    "m4": ("configs/training_config_m4.yaml", None, 39, 3.880, "loading"),
    # sdpa over one packed row of 16,384 tokens (multipack_real_batches off)
    "h100": ("configs/training_config_h100.yaml", None, 16384, 10.528, "training"),
}
# The same runs' training peak, read at every optimizer step's end before Axolotl's log resets the
# counters: (allocated, reserved, on the device), GiB.
H200_SECOND_RUN_TRAINING = {
    "a5000": (3.439, 3.635, 4.384),
    "a5000-packing": (6.111, 7.229, 7.962),
    "m4": (2.274, 2.309, 3.061),
    "h100": (7.896, 9.654, 10.528),
}
AT_REST = ("quantized_weights", "unquantized_weights", "lora_weights", "gradients", "optimizer_states")


def second_run_estimate(case: str):
    from cli_tuner.checks import attention
    from cli_tuner.estimates import calibration
    from cli_tuner.config import load

    config_path, overlay, tokens, _, _ = H200_SECOND_RUN[case]
    loaded = load(config_path, overlays=[*([overlay] if overlay else []), "configs/axolotl_smoke_test.yaml"])
    cfg = dict(loaded.axolotl)
    attention.sdpa_instead(cfg, "no flash-attention source on the measuring machine")
    facts = dataclasses.replace(model_facts.lookup(loaded.base_model), num_hidden_layers=4)
    return memory.estimate(calibration.at_tokens(cfg, tokens), facts, H200_CUDA13, with_advice=False)


@pytest.mark.parametrize("case", sorted(H200_SECOND_RUN))
def test_the_second_gpu_runs_device_points_land_within_the_band(case):
    _, _, _, device, phase = H200_SECOND_RUN[case]
    est = second_run_estimate(case)
    assert est.context.measured and est.context.gib == cuda_context.MEASURED_CONTEXT_GIB[("hopper", 13)][0]
    assert est.deciding_phase == phase
    # The H100 config's one long packed row under sdpa: the layer's backward is overestimated there
    # (safe: 0.93); everywhere else the band.
    assert (0.90 if case == "h100" else 0.95) <= device / est.total_gib <= 1.10
    assert est.bound_gib >= device


@pytest.mark.parametrize("case", sorted(H200_SECOND_RUN_TRAINING))
def test_the_second_gpu_runs_training_peaks_land_within_the_band(case):
    _, _, device = H200_SECOND_RUN_TRAINING[case]
    est = second_run_estimate(case)
    assert (0.90 if case == "h100" else 0.95) <= device / est.training_gib <= 1.10


@pytest.mark.parametrize("case", ["a5000", "a5000-packing"])
def test_at_short_rows_the_loss_backward_is_the_training_peak_and_explains_it(case):
    # What training adds over the weights and states at rest, allocated: the loss's backward (12 bytes
    # per token per vocabulary entry) and the layer inputs kept for it, not the recomputed layer on top.
    allocated, _, _ = H200_SECOND_RUN_TRAINING[case]
    est = second_run_estimate(case)
    assert est.training_peak == "loss"
    at_rest = sum(est.parts[k] for k in AT_REST)
    moving = est.parts["activations"] + est.parts["logits"]
    assert 0.95 <= (allocated - at_rest) / moving <= 1.10
    layer = est.training_phases["layer"]
    assert sum(layer.values()) < est.training_gib  # the layer's backward comes after, and does not add


def test_the_training_allocator_overhead_is_the_largest_measured():
    names = {"a5000": "a5000 (512 tokens)", "a5000-packing": "a5000 + packing (2,048 tokens)",
             "h100": "h100 config under sdpa (16,384 tokens)"}
    for case, name in names.items():
        allocated, reserved, _ = H200_SECOND_RUN_TRAINING[case]
        est = second_run_estimate(case)
        at_rest = sum(est.parts[k] for k in AT_REST)
        assert (reserved - allocated) / (allocated - at_rest) == pytest.approx(memory.TRAINING_OVERHEAD_MEASURED[name],
                                                                             abs=0.005)
    assert memory.Assumptions().allocator_overhead == pytest.approx(max(memory.TRAINING_OVERHEAD_MEASURED.values()),
                                                                    abs=0.005)


def test_estimate_memory_for_the_measured_h200_case(entrypoint):
    # The first run's 28-layer loading peak reserved (8.266) plus the clean context the second run
    # measured for this config (0.749): 9.02 GiB on the device, the honest figure (the 9.618 it
    # reported held another process's context). The expected peak must be within 0.95-1.10 of it.
    for extra in ((), ("--cuda-major", "13")):
        result = entrypoint("estimate-memory", "--config", "configs/axolotl_config.yaml", "--target", "h200", *extra)
        assert result.returncode == 0, result.stderr
        expected = float(re.search(r"expected (\d+\.\d) GiB \(loading peak\)", result.stdout)[1])
        assert 0.95 <= (8.266 + 0.749) / expected <= 1.10
        assert "load peak decides" in result.stdout and "training GiB" in result.stdout
    assert "CUDA context: 0.87 GiB for CUDA 13, hopper: measured" in result.stdout


def test_the_issues_figures_for_the_measured_case(entrypoint):
    # Issue 22's terms, on the first run's device figures as the note gives them (9.618 loading, 6.694
    # training): the printed expected peak in 9.1-10.6, each phase's peak within 10 %. Both figures hold
    # the parent process's context, and the training one is a floor (see docs/memory.md).
    result = entrypoint("estimate-memory", "--config", "configs/axolotl_config.yaml", "--target", "h200")
    assert result.returncode == 0, result.stderr
    assert 9.1 <= float(re.search(r"expected (\d+\.\d) GiB", result.stdout)[1]) <= 10.6
    assert 9.1 <= float(re.search(r"upper bound (\d+\.\d) GiB", result.stdout)[1]) <= 10.6
    loading, training = map(float, re.search(r"load peak decides\)\s*│\s*(\d+\.\d+)\s*│\s*(\d+\.\d+)",
                                             result.stdout).groups())
    assert abs(loading / 9.618 - 1) <= 0.10 and abs(training / 6.694 - 1) <= 0.10


def test_an_unmeasured_gpu_class_or_cuda_major_widens_the_bound_and_says_so(qwen):
    measured = memory.estimate(A5000_CONFIG, qwen, H200_CUDA13)
    for gpu in (resolve_target("a5000", None), dataclasses.replace(resolve_target("h200", None), cuda_major=12),
                resolve_target("my-gpu", 24)):
        est = memory.estimate(A5000_CONFIG, qwen, gpu)
        assert not est.context.measured and "not measured" in est.context.source
        assert any("no measurement for" in note and "widened" in note for note in est.notes)
        assert est.bound_gib == pytest.approx(est.total_gib * (1 + memory.BOUND_FRACTION)
                                              + memory.UNMEASURED_CONTEXT_FRACTION * est.context.gib)
    assert measured.bound_gib == pytest.approx(measured.total_gib * (1 + memory.BOUND_FRACTION))
    assert not any("no measurement" in note for note in measured.notes)


def test_the_verdict_reads_the_bound_not_the_expected_peak(qwen):
    # a board between the expected peak and its bound: the expected value would fit, the verdict does not
    est = memory.estimate(A5000_CONFIG, qwen, resolve_target("tight", 10.5))
    assert est.total_gib < est.capacity_gib < est.bound_gib
    assert est.verdict == "does-not-fit"


def test_the_image_cuda_major_is_dockerfile_cudas_default_flavour():
    from pathlib import Path

    from cli_tuner.facts import gpus

    dockerfile = (Path(__file__).resolve().parent.parent / "Dockerfile.cuda").read_text()
    assert re.search(r"ARG TORCH_CUDA=cu(\d+)", dockerfile)[1].startswith(str(gpus.IMAGE_CUDA_MAJOR))


# ----------------------------------------------------------------------------- published measurements

def test_double_quantization_bits_per_weight_match_the_qlora_paper(qwen):
    # QLoRA paper, section 3: 0.5 bit/weight of constants without, 0.127 with double quantization
    linear = memory.parameter_counts(qwen)["linear"]
    plain = memory.base_weight_bytes(qwen, 4, double_quant=False)
    double = memory.base_weight_bytes(qwen, 4, double_quant=True)
    assert plain["constants"] * 8 / linear == pytest.approx(0.5)
    assert double["constants"] * 8 / linear == pytest.approx(8 / 64 + 32 / (64 * 256))
    assert double["packed"] * 8 / linear == 4


def test_qwen25_7b_4bit_footprint_matches_get_memory_footprint():
    # dev.to/sumanpro (QLoRA on Qwen2.5-7B): "loaded in 4-bit. footprint: 5.44 GB".
    # get_memory_footprint() sums parameter storage: packed NF4 bytes plus the 16-bit embeddings,
    # lm_head and norms; bitsandbytes keeps the quantization constants outside the parameters.
    # A byte count rounded to 0.01 GB: 1% tolerance.
    facts = model_facts.lookup("Qwen/Qwen2.5-7B-Instruct")
    weights = memory.base_weight_bytes(facts, 4, double_quant=True)
    assert (weights["packed"] + weights["kept_16bit"]) / 1e9 == pytest.approx(5.44, rel=0.01)


LLAMA31_HF_FA2 = {
    "adapter": "qlora", "load_in_4bit": True, "lora_r": 32, "lora_dropout": 0.0,
    "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gradient_checkpointing": True, "attn_implementation": "flash_attention_2", "micro_batch_size": 1,
    "bf16": True, "optimizer": "adamw_8bit",
}
# unslothai/unsloth README.md "Llama 3.1 (8B) max. context length", column "Hugging Face + FA2"
UNSLOTH_HF_FA2_MAX_CONTEXT = {12: 932, 16: 2551, 24: 5789, 40: 12264, 48: 15502, 80: 28454}


def _max_context(cfg: dict, facts, gpu: GpuSpec, assumptions) -> int:
    low, high = 0, 200_000
    while low < high:
        middle = (low + high + 1) // 2
        est = memory.estimate(dict(cfg, sequence_len=middle), facts, gpu, assumptions, with_advice=False)
        if est.total_gib <= gpu.capacity_gib:
            low = middle
        else:
            high = middle - 1
    return low


@pytest.mark.parametrize("gigabytes,measured", sorted(UNSLOTH_HF_FA2_MAX_CONTEXT.items()))
def test_max_context_matches_unsloths_hf_fa2_measurements(gigabytes, measured):
    # That baseline is plain HF + PEFT: prepare_model_for_kbit_training leaves embeddings, lm_head and
    # norms in fp32 (and with them an fp32 residual stream), which Axolotl would cast back to bf16.
    # Tolerance: 15% from 24 GB up. At 12-16 GB the answer is the small difference of two large
    # numbers (~9.5 GB of weights and states), so 30% there; the table also leaves GB vs GiB and the
    # 2024 transformers loss path (one more fp32 logits copy) unstated.
    gpu = GpuSpec(f"{gigabytes} GB", gigabytes, bf16=True, flash_attention=True, bnb_4bit=True,
                  peak_bf16_tflops=312, kind="cuda")
    hf_peft = memory.Assumptions(embeddings_fp32=True)
    predicted = _max_context(LLAMA31_HF_FA2, LLAMA31_8B, gpu, hf_peft)
    tolerance = 0.15 if gigabytes >= 24 else 0.30
    assert predicted == pytest.approx(measured, rel=tolerance)


def test_axolotl_dtypes_fit_longer_contexts_than_plain_hf_peft():
    gpu = GpuSpec("24 GB", 24, True, True, True, 312, "cuda")
    plain = _max_context(LLAMA31_HF_FA2, LLAMA31_8B, gpu, memory.Assumptions(embeddings_fp32=True))
    axolotl = _max_context(LLAMA31_HF_FA2, LLAMA31_8B, gpu, memory.Assumptions())
    assert axolotl > plain * 1.2


# QwenLM/Qwen README "Profiling of Memory and Speed", Qwen-7B Q-LoRA, A100-SXM4-80G:
# seconds per iteration of 8 micro-batches of one sequence.
QWEN_QLORA_SECONDS_PER_IT = {512: 3.0, 1024: 3.5, 2048: 7.0, 4096: 11.6, 8192: 22.3}
QWEN1_QLORA = {"adapter": "qlora", "load_in_4bit": True, "lora_r": 64, "lora_target_linear": True,
               "lora_dropout": 0.05, "gradient_checkpointing": True, "attn_implementation": "flash_attention_2",
               "micro_batch_size": 1, "fp16": True, "optimizer": "adamw_torch"}


# The first GPU run (H200): the A5000 config at the base model's widths, 4 micro-batches of 512 tokens.
H200_SECONDS_PER_STEP = {28: 1.028, 4: 0.266}


def _time_points(qwen):
    for sequence, seconds in sorted(QWEN_QLORA_SECONDS_PER_IT.items()):
        yield (QWEN1_7B, resolve_target("a100-80", None), dict(QWEN1_QLORA, sequence_len=sequence), 8, seconds)
    for layers, seconds in sorted(H200_SECONDS_PER_STEP.items()):
        yield (dataclasses.replace(qwen, num_hidden_layers=layers), resolve_target("h200", None), A5000_CONFIG, 4, seconds)


def test_throughput_model_reproduces_the_seven_step_times_it_was_fitted_on(qwen):
    # COMPUTE_MFU and the two fixed costs were fitted together to these seven points; each lands in
    # TIME_BAND (measured / predicted), and the band's ends are the worst points, not a loose margin.
    ratios = []
    for facts, gpu, cfg, micro_batches, seconds in _time_points(qwen):
        tokens = int(cfg["sequence_len"]) * int(cfg["micro_batch_size"])
        predicted = micro_batches * tokens / throughput.estimate_tokens_per_second(facts, gpu, cfg)
        ratios.append(seconds / predicted)
    low, high = throughput.TIME_BAND
    assert all(low <= r <= high for r in ratios), ratios
    assert min(ratios) == pytest.approx(low, abs=0.02) and max(ratios) == pytest.approx(high, abs=0.02)


def test_small_micro_batches_are_dominated_by_fixed_costs_on_a_fast_gpu(qwen):
    # 512-token micro-batches on the H200: the fixed costs outweigh the matmuls, hence 10.7% MFU measured
    parts = throughput.step_parts(qwen, resolve_target("h200", None), A5000_CONFIG)
    assert parts["per_layer"] + parts["per_micro_batch"] > 2 * parts["compute"]
    assert throughput.model_mfu(qwen, resolve_target("h200", None), A5000_CONFIG) == pytest.approx(0.107, rel=0.2)


def test_throughput_of_the_shipped_configs_is_plausible(qwen, a5000):
    tokens_per_s = throughput.estimate_tokens_per_second(qwen, a5000, A5000_CONFIG)
    # 500 steps x 4 x 512 tokens: the config comment states the exact minutes (tests/test_config_matrix.py)
    minutes = 500 * 4 * 512 / tokens_per_s / 60
    assert 20 < minutes < 45
    h100 = throughput.estimate_tokens_per_second(qwen, resolve_target("h100", None), A5000_CONFIG)
    assert h100 > tokens_per_s
    fixed = throughput.estimate_tokens_per_second(qwen, a5000, A5000_CONFIG, mfu=0.5)
    assert fixed < tokens_per_s  # 0.5 is below the fitted COMPUTE_MFU
    with pytest.raises(ValueError, match="no peak TFLOP/s"):
        throughput.estimate_tokens_per_second(qwen, resolve_target("x", 16), A5000_CONFIG)


def test_flops_per_token_uses_8n_with_checkpointing(qwen):
    counts = memory.parameter_counts(qwen)
    n = counts["linear"] + qwen.vocab_size * qwen.hidden_size
    with_gc = throughput.flops_per_token(qwen, dict(A5000_CONFIG, sequence_len=1))
    without = throughput.flops_per_token(qwen, dict(A5000_CONFIG, sequence_len=1, gradient_checkpointing=False))
    assert with_gc == pytest.approx(8 * n, rel=1e-3)
    assert without == pytest.approx(6 * n, rel=1e-3)


# ----------------------------------------------------------------------------- the terms behave

def test_lora_parameters_follow_gqa_shapes(qwen):
    setup = memory.read_setup(A5000_CONFIG, qwen, resolve_target("a5000", None))
    matrices = memory.trainable_matrices(qwen, setup)
    params = sum(r * c * n for r, c, n, _ in matrices)
    # per layer: q and o 8*(3584+3584), k and v 8*(3584+512) (4 KV heads of 128); 28 layers
    assert params == 28 * (2 * 8 * (3584 + 3584) + 2 * 8 * (3584 + 512))
    assert all(b == 4 for *_, b in matrices)  # PEFT keeps adapters in fp32


def test_all_linear_targets(qwen):
    setup = memory.read_setup(dict(A5000_CONFIG, lora_target_modules=None, lora_target_linear=True), qwen,
                              resolve_target("a5000", None))
    assert setup.lora_targets == memory.LLAMA_LINEAR
    setup = memory.read_setup(dict(A5000_CONFIG, lora_target_modules="all-linear"), qwen, resolve_target("a5000", None))
    assert setup.lora_targets == memory.LLAMA_LINEAR


@pytest.mark.parametrize("change,part,smaller", [
    ({"gradient_checkpointing": False}, "activations", False),
    ({"optimizer": "adamw_torch_fused"}, "optimizer_states", False),
    ({"optimizer": "sgd"}, "optimizer_states", True),
    ({"load_in_4bit": False, "adapter": "lora"}, "unquantized_weights", False),
    ({"load_in_4bit": False, "adapter": "lora", "load_in_8bit": True}, "quantized_weights", False),
    ({"attn_implementation": "eager"}, "activations", False),
    ({"attn_implementation": "flash_attention_2"}, "activations", True),
    ({"micro_batch_size": 4}, "logits", False),
    ({"cut_cross_entropy": True, "plugins": ["axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin"]},
     "logits", True),
    ({"lora_dropout": 0.0}, "layer_backward", True),
    ({"attn_implementation": "eager"}, "layer_backward", False),
])
def test_each_setting_moves_its_part(qwen, a5000, change, part, smaller):
    def value(est):  # from whichever of the backward's two peaks has that part
        return max(phase.get(part, 0.0) for phase in est.training_phases.values())

    base = memory.estimate(dict(A5000_CONFIG, sequence_len=2048), qwen, a5000)
    changed = memory.estimate(dict(A5000_CONFIG, sequence_len=2048, **change), qwen, a5000)
    if smaller:
        assert value(changed) < value(base)
    else:
        assert value(changed) > value(base)


def test_eager_attention_grows_with_the_square_of_the_sequence(qwen, a5000):
    def attention_growth(implementation):
        short = memory.estimate(dict(A5000_CONFIG, sequence_len=2048, attn_implementation=implementation), qwen, a5000)
        long = memory.estimate(dict(A5000_CONFIG, sequence_len=4096, attn_implementation=implementation), qwen, a5000)
        return long.training_phases["layer"]["layer_backward"] / short.training_phases["layer"]["layer_backward"]

    assert attention_growth("flash_attention_2") == pytest.approx(2.0, rel=0.05)
    assert attention_growth("eager") > 2.8


def test_8bit_optimizer_is_a_quarter_of_adamw(qwen, a5000):
    eight = memory.estimate(A5000_CONFIG, qwen, a5000).parts["optimizer_states"]
    adamw = memory.estimate(dict(A5000_CONFIG, optimizer="adamw_torch"), qwen, a5000).parts["optimizer_states"]
    assert eight / adamw == pytest.approx(0.25, rel=0.02)


def test_cut_cross_entropy_needs_its_plugin(qwen, a5000):
    without_plugin = memory.estimate(dict(A5000_CONFIG, cut_cross_entropy=True), qwen, a5000)
    assert without_plugin.parts["logits"] > 0


def test_unknown_optimizer_is_assumed_adamw_and_said(qwen, a5000):
    est = memory.estimate(dict(A5000_CONFIG, optimizer="my_optimizer"), qwen, a5000)
    assert any("my_optimizer" in note for note in est.notes)


def test_full_fine_tune_of_7b_does_not_fit_a5000_and_advice_says_so(qwen, a5000):
    full = dict(A5000_CONFIG, adapter=None, load_in_4bit=False, optimizer="adamw_torch")
    est = memory.estimate(full, qwen, a5000)
    assert est.verdict == "does-not-fit"
    assert est.parts["optimizer_states"] > 50
    assert any("larger GPU" in line for line in est.advice)


def test_close_verdict_and_its_warning(qwen, capsys):
    # expected ~9.1 GiB, upper bound ~10.4 on an 11 GB board (10.8 GiB usable): above 90%, below 100%
    est = memory.estimate(A5000_CONFIG, qwen, resolve_target("small", 11))
    assert est.verdict == "close" and est.total_gib < est.bound_gib < est.capacity_gib

    from cli_tuner.config import load

    loaded = load("configs/axolotl_config.yaml", target_override="small", gpu_memory_gb=11)
    _, check = preflight.memory_on(loaded, qwen, preflight.resolve_target(loaded))
    memory.raise_unless_fits(check)  # close is a warning, not a stop
    assert not check.ok and check.level == "warning" and "above 90%" in check.detail


def test_check_raises_environment_problem_with_one_line(qwen):
    from cli_tuner.config import load

    loaded = load("configs/axolotl_config.yaml", sets=["sequence_len=32768"])
    _, check = preflight.memory_on(loaded, qwen, preflight.resolve_target(loaded))
    with pytest.raises(EnvironmentProblem) as caught:
        memory.raise_unless_fits(check)
    assert caught.value.exit_code == 5
    assert "\n" not in caught.value.message
    assert "on RTX A5000; try: --set sequence_len=" in caught.value.message


def test_as_dict_and_render_are_plain_without_a_terminal(qwen, a5000):
    est = memory.estimate(A5000_CONFIG, qwen, a5000)
    data = est.as_dict()
    assert data["verdict"] == "fits" and data["target"] == "RTX A5000"
    assert sum(data["parts"].values()) == pytest.approx(sum(est.parts.values()), abs=0.01)
    assert data["load_peak_gib"] > data["training_gib"] and data["deciding_phase"] == "loading"
    text = console.to_text(est.renderable())
    assert "expected peak" in text and "upper bound" in text and "load peak decides" in text and "\x1b[" not in text


def test_mps_and_cpu_targets(qwen):
    m4 = resolve_target("m4", None)
    assert m4.kind == "mps" and not m4.flash_attention and not m4.bnb_4bit
    assert m4.capacity_gib < 32
    cpu = resolve_target("cpu", None)
    assert cpu.kind == "cpu" and cpu.memory_gb > 1


# ----------------------------------------------------------------------------- targets

def test_resolve_target_names_aliases_and_memory_override():
    assert resolve_target("A5000", None).name == "RTX A5000"
    assert resolve_target("rtx_4090", None).peak_bf16_tflops == 165.2
    assert resolve_target("a100", None).memory_gb == 80
    bigger = resolve_target("a5000", 48)
    assert bigger.memory_gb == 48 and bigger.compute_capability == "8.6"
    custom = resolve_target(None, 16)
    assert custom.memory_gb == 16 and custom.kind == "cuda"
    with pytest.raises(UsageError, match="unknown target 'b300'; use one of a5000, rtx4090"):
        resolve_target("b300", None)
    with pytest.raises(UsageError, match="no target"):
        resolve_target(None, None)
    with pytest.raises(UsageError, match="positive"):
        resolve_target("a5000", 0)


def test_every_target_of_the_issue_list_is_known_and_cites_its_source():
    for name in ("a5000", "rtx4090", "rtx3090", "l4", "a100-40", "a100-80", "h100", "h200", "m4", "cpu"):
        assert name in gpus.KNOWN_GPUS
    assert all(spec.source for spec in gpus.KNOWN_GPUS.values())


def test_spec_for_detected_devices():
    assert gpus.spec_for_device("NVIDIA RTX A5000", 23.68, "8.6").name == "RTX A5000"
    known = gpus.KNOWN_GPUS  # each detected name finds its row of the table
    for device, memory_gib, capability, key in (("NVIDIA A100-SXM4-80GB", 79.2, "8.0", "a100-80"),
                                                ("NVIDIA A100-PCIE-40GB", 39.4, "8.0", "a100-40"),
                                                ("NVIDIA H100 80GB HBM3", 79.1, "9.0", "h100")):
        spec = gpus.spec_for_device(device, memory_gib, capability)
        assert (spec.name, spec.peak_bf16_tflops, spec.memory_bandwidth_gbs) == (
            known[key].name, known[key].peak_bf16_tflops, known[key].memory_bandwidth_gbs), device
    unknown = gpus.spec_for_device("NVIDIA Tesla T4", 14.6, "7.5")
    assert not unknown.bf16 and unknown.memory_gb == 14.6


# ----------------------------------------------------------------------------- disk

def test_checkpoint_disk_estimate(qwen):
    need = memory.estimate_checkpoint_disk(A5000_CONFIG, qwen)
    # 3 kept checkpoints of ~20 MB fp32 adapter + ~10 MB 8-bit Adam + ~12 MB tokenizer, + the final adapter
    assert 100 * 2**20 < need < 250 * 2**20
    unlimited = memory.estimate_checkpoint_disk(dict(A5000_CONFIG, save_total_limit=None), qwen)
    assert unlimited > need  # 500 / 100 = 5 checkpoints
    adamw = memory.estimate_checkpoint_disk(dict(A5000_CONFIG, optimizer="adamw_torch"), qwen)
    assert adamw > need


def test_check_disk(tmp_path):
    assert environment.check_disk(tmp_path / "not" / "yet", 1).ok
    too_little = environment.check_disk(tmp_path, 2**60)
    assert too_little.failed_error and "point --output-root" in too_little.fix
