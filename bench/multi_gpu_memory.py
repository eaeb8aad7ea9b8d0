"""Per-GPU peak memory estimates: every shipped 4-bit config x strategy overlay x process count, and
the estimate beside AnswerDotAI's published per-GPU peaks (the figures docs/multi-gpu.md shows).

    .venv/bin/python -m bench.multi_gpu_memory            # markdown tables
    .venv/bin/python -m bench.multi_gpu_memory --json     # the same numbers as JSON

Estimates, not measurements: estimates/memory.py's one-GPU model split by estimates/memory_sharding.py.
"""

from __future__ import annotations

import argparse
import json
import sys

from cli_tuner import config
from cli_tuner.checks import distributed, preflight
from cli_tuner.estimates import memory, memory_sharding
from cli_tuner.facts.gpus import GpuSpec
from cli_tuner.facts.models import ModelFacts
from cli_tuner.paths import REPO_ROOT

CONFIGS = ("configs/axolotl_config.yaml", "configs/training_config_h100.yaml")
OVERLAYS = {"ddp": "configs/overlays/ddp.yaml", "fsdp2": "configs/overlays/fsdp2-qlora.yaml",
            "zero2": "configs/overlays/deepspeed-zero2.yaml"}
PROCESSES = (1, 2, 8)

# AnswerDotAI/fsdp_qlora benchmarks_03_2024.md, "Case Study: A Dual 3090": Llama-2 7B QLoRA on 2 GPUs,
# their train.py defaults (LoRA r64 on q,k,v,gate,up,down with dropout 0.1: the benchmark command sets
# neither, AdamW, bf16, reentrant checkpointing).
LLAMA2_7B = ModelFacts(
    name="meta-llama/Llama-2-7b-hf", source="published config.json", model_type="llama",
    architectures=["LlamaForCausalLM"], hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096,
    tie_word_embeddings=False, rope_theta=10000.0, rms_norm_eps=1e-5)
RTX3090 = GpuSpec("RTX 3090", 24, bf16=True, flash_attention=True, bnb_4bit=True, peak_bf16_tflops=71.0, kind="cuda")
ANSWERDOTAI = {
    "adapter": "qlora", "load_in_4bit": True, "lora_r": 64, "lora_dropout": 0.1,
    "lora_target_modules": ["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "down_proj"],
    "gradient_checkpointing": True, "attn_implementation": "sdpa", "bf16": True, "optimizer": "adamw_torch",
    "bnb_config_kwargs": {"bnb_4bit_use_double_quant": False},
}
# Their loss path, not transformers 5's: transformers 4.38's LlamaForCausalLM upcast the logits to fp32 in
# the model's forward and cut a contiguous shifted copy for the loss, and train.py keeps `output` (with the
# fp32 logits) alive through loss.backward(). In the cross-entropy's backward: the held fp32 logits 4, the
# saved log-softmax 4, its incoming gradient 4 and the gradient it returns 4.
ANSWERDOTAI_LOOP = memory.Assumptions(logits_bytes=16.0)
PUBLISHED_PER_GPU = [("fsdp2", 1, 512, 4.98), ("fsdp2", 1, 2048, 5.21), ("fsdp2", 4, 2048, 11.22),
                     ("fsdp2", 10, 2048, 20.97), ("ddp", 8, 2048, 20.94)]
# The same page: "It's actually about 3.72GiB (see `reserved_after_model_wrap`)", per GPU at rest, before
# the first step (no gradients or optimizer states yet), batch 1 x 512.
PUBLISHED_RESERVED_AFTER_WRAP = 3.72


def answerdotai_estimate(strategy: str, batch: int, sequence: int, processes: int = 2):
    one = memory.estimate(dict(ANSWERDOTAI, micro_batch_size=batch, sequence_len=sequence), LLAMA2_7B, RTX3090,
                          ANSWERDOTAI_LOOP, with_advice=False)
    return memory_sharding.per_gpu(one, LLAMA2_7B, strategy, processes)


def training_peak(strategy: str, batch: int, sequence: int, processes: int = 2) -> float:
    """The per-GPU training peak as AnswerDotAI report it: PyTorch's peak reserved memory ("the reported
    peak reserved memory", benchmarks_03_2024.md), which the CUDA context is not part of."""
    parts = answerdotai_estimate(strategy, batch, sequence, processes).parts
    return sum(gib for name, gib in parts.items() if name != "cuda_context")


def at_rest_after_wrap(strategy: str = "fsdp2", processes: int = 2) -> float:
    """What the estimate holds per GPU once the model is wrapped, before the first step: the weights,
    the LoRA adapters and, under FSDP, the gathered root (the figure their reserved_after_model_wrap is)."""
    parts = answerdotai_estimate(strategy, 1, 512, processes).parts
    return sum(parts.get(name, 0.0) for name in ("quantized_weights", "unquantized_weights", "lora_weights",
                                                  "gathered_root"))


def shipped_rows() -> list[dict]:
    rows = []
    for path in CONFIGS:
        for strategy, overlay in OVERLAYS.items():
            loaded = config.load(REPO_ROOT / path, overlays=[str(REPO_ROOT / overlay)])
            facts = preflight.resolve_facts(loaded)
            gpu = preflight.resolve_target(loaded)
            one = memory.estimate(loaded.axolotl, facts, gpu, with_advice=False)
            for n in PROCESSES:
                est = memory_sharding.per_gpu(one, facts, strategy, n)
                batch = distributed.batch_of(loaded.axolotl, n, config.read_yaml(REPO_ROOT / path))
                rows.append({"config": path.rsplit("/", 1)[1], "target": gpu.name, "strategy": strategy, "processes": n,
                             "training_peak_gib": round(sum(est.parts.values()), 2),
                             "loading_peak_gib": round(est.load_peak_gib, 2),
                             "per_gpu_peak_gib": round(est.total_gib, 2), "effective_batch": batch.effective})
    return rows


def published_rows() -> list[dict]:
    return [{"strategy": s, "batch": b, "context": c, "published_gib": p,
             "estimated_training_peak_gib": round(training_peak(s, b, c), 2),
             "error_percent": round(100 * (training_peak(s, b, c) - p) / p, 1)} for s, b, c, p in PUBLISHED_PER_GPU]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    shipped, published = shipped_rows(), published_rows()
    if args.json:
        json.dump({"shipped": shipped, "published": published}, sys.stdout, indent=2)
        print()
        return 0
    print("| config | strategy | processes | per-GPU training peak (GiB) | loading peak (GiB) | effective batch |")
    print("|---|---|---:|---:|---:|---:|")
    for r in shipped:
        print(f"| {r['config']} ({r['target']}) | {r['strategy']} | {r['processes']} | {r['training_peak_gib']:.2f} "
              f"| {r['loading_peak_gib']:.2f} | {r['effective_batch']} |")
    print()
    print("| AnswerDotAI Llama-2 7B QLoRA, 2 GPUs | batch x context | published (GiB) | estimated (GiB) | error |")
    print("|---|---|---:|---:|---:|")
    for r in published:
        print(f"| {r['strategy']} | {r['batch']} x {r['context']} | {r['published_gib']:.2f} "
              f"| {r['estimated_training_peak_gib']:.2f} | {r['error_percent']:+.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
