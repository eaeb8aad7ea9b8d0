"""The CPU rehearsal: a tiny random model of the base model's architecture, and the config for it.

Same architecture class and module names as the real base model (so LoRA targets, the chat
template and Axolotl's code paths are the real ones), a few layers wide enough to train on two
CPU cores in under a minute. Built locally: nothing is downloaded.
"""

from __future__ import annotations

import copy
from pathlib import Path

from .. import atomic, data, tokenizer as tokenizer_loader
from ..checks import attention
from ..config import LoadedConfig
from ..errors import TokenizerNotFound
from ..facts.models import ModelFacts
from ..training_shape import TrainingShape

TINY_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LOCAL_VOCAB_SIZE = 2048


def local_tokenizer(texts: list[str]):
    """A small byte-level BPE trained on the dataset itself, with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=LOCAL_VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.padding_side = "right"
    return tokenizer


def training_texts(loaded: LoadedConfig) -> list[str]:
    """Every train and validation example as plain text: what the local tokenizer is trained on."""
    return [r.data.get("text") or " ".join(m["content"] for m in r.data.get("messages", []))
            for path in loaded.training_files() for r in data.read_records(path)]


def choose_tokenizer(explicit: str | None, loaded: LoadedConfig):
    """(tokenizer, description): the base model's real tokenizer when reachable, else a local one
    trained on the config's data."""
    tokenizer_source = loaded.tokenizer_source
    for candidate in (explicit, tokenizer_source):
        if not candidate:
            continue
        try:
            return tokenizer_loader.load(candidate), f"real tokenizer from {candidate}"
        except TokenizerNotFound:
            if candidate == explicit:
                raise
    return local_tokenizer(training_texts(loaded)), (
        f"small local BPE tokenizer ({LOCAL_VOCAB_SIZE} tokens, ChatML): the real one for "
        f"{tokenizer_source} was not reachable; pass --tokenizer DIR to use it"
    )


def build_model(facts: ModelFacts, tokenizer, out_dir: Path, seed: int = 0) -> Path:
    """Save a randomly initialised model of `facts`' architecture, plus the tokenizer, to out_dir."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        facts.model_type,
        **TINY_SHAPE,
        vocab_size=len(tokenizer),
        max_position_embeddings=min(facts.max_position_embeddings or 4096, 4096),
        tie_word_embeddings=facts.tie_word_embeddings,
        rope_theta=facts.rope_theta,
        rms_norm_eps=facts.rms_norm_eps,
        architectures=facts.architectures,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with atomic.folder(out_dir) as staging:  # a half-saved model must not pass for a finished one
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return out_dir


LORA_KERNELS = ("lora_qkv_kernel", "lora_o_kernel", "lora_mlp_kernel")
# Rows of packed or padded tokens longer than this cost the CPU a vocabulary-wide logit row per token
# slot (Qwen2.5: 151,665 entries); 512 keeps a rehearsal near a minute and still packs several
# examples per row, so the packing and padding code paths are the same.
CPU_ROW_TOKENS = 512
# Training steps unless --steps or --set max_steps says otherwise: proves the path, not convergence
# (the second step reuses the optimizer state the first made).
DEFAULT_STEPS = 2
STEP_KEYS = ("max_steps", "warmup_steps", "save_steps", "eval_steps", "logging_steps")

# Why the rehearsal differs from the pod where it must. Everything not listed runs as configured:
# 4-bit NF4 through bitsandbytes, precision, optimizer, gradient checkpointing and accumulation,
# LoRA, packing, micro batch, chat template and the data pipeline.
REASONS = {
    "base_model": "a tiny random model of the same architecture class and module names; a 7B model "
                  "does not train on two CPU cores in a minute",
    "tokenizer_config": "saved with the tiny model (the base model's tokenizer, or a local BPE when unreachable)",
    "tf32": "TF32 is a CUDA matmul mode (Ampere and newer); transformers refuses tf32 without it",
    "lora_kernel": "Axolotl's LoRA kernels (auto-enabled on the pod) are Triton/CUDA-only; on CPU they fail "
                   "in axolotl/kernels (_cuda_getCurrentRawStream, or 'Torch not compiled with CUDA')",
    "sequence_len": f"packed/padded rows of more than {CPU_ROW_TOKENS} tokens cost the CPU a vocabulary-wide "
                    "logit row per slot; the packing and padding path is the same at the shorter row",
    "steps": "the rehearsal's length: --steps / --save-steps, or --set",
    "packing": "--packing on/off asked for it",
    "device": "the rehearsal runs on this machine's CPU",
    "use_cpu": "transformers refuses bf16 without a CUDA device unless TrainingArguments.use_cpu is set "
               "(set by the rehearsal-only plugin cli_tuner.training.rehearsal_plugin)",
    "support_avx512bf16_for_cpu": "bitsandbytes repacks 4-bit weights in place in eval mode on AVX512-BF16 CPUs "
                                  "and does not undo it for training; the rehearsal plugin turns that CPU "
                                  "inference shortcut off (the NF4 weights and 4-bit matmul are unchanged)",
}
AUTO = attention.AUTO  # shown for a key the pod leaves to Axolotl
# Evaluation on CPU costs a vocabulary-wide logit row per token of every validation example; the
# rehearsal proves the eval path on the first few (same files, format, pipeline and eval batching;
# more when one eval batch needs more: training/slices.rehearsal_eval_examples).
VAL_EXAMPLES = 4


def _divergence(key: str, pod, rehearsal, reason: str) -> dict:
    return {"key": key, "pod": pod, "rehearsal": rehearsal, "reason": reason}


def describe(divergence: dict) -> str:
    pod = "(unset)" if divergence["pod"] is None else repr(divergence["pod"])
    rehearsal = "(removed)" if divergence["rehearsal"] is None else repr(divergence["rehearsal"])
    return f"{divergence['key']}: {pod} -> {rehearsal} ({divergence['reason']})"


def rehearsal_config(full: dict, model_dir: Path, steps: int, save_steps: int | None, packing: str,
                     kept: frozenset[str] = frozenset(), pod_device: str = "cuda",
                     val_examples: int = VAL_EXAMPLES) -> tuple[dict, list[dict]]:
    """The full config as the CPU rehearsal runs it, and every difference from the pod with its reason.

    `kept`: keys the user set with --set; the rehearsal's step-derived values do not replace them.
    `val_examples`: the first examples of each eval file it evaluates (more than VAL_EXAMPLES when one
    eval batch of the pod's eval batching at the rehearsal's row length needs more)."""
    cfg = copy.deepcopy(full)
    divergences: list[dict] = []

    def change(key: str, value, reason: str) -> None:
        if key in cfg and cfg[key] == value:
            return
        divergences.append(_divergence(key, cfg.get(key), value, reason))
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value

    change("base_model", str(model_dir), REASONS["base_model"])
    change("tokenizer_config", str(model_dir), REASONS["tokenizer_config"])
    for made in attention.sdpa_instead(cfg, "flash-attn is CUDA-only"):  # the rule a GPU without flash attention gets too
        divergences.append(_divergence(made["key"], made["from"], made["to"], made["reason"]))
    if cfg.get("tf32"):
        change("tf32", False, REASONS["tf32"])
    if cfg.get("adapter") in ("lora", "qlora"):
        for key in LORA_KERNELS:
            if cfg.get(key) is not False:
                divergences.append(_divergence(key, cfg.get(key, AUTO) if cfg.get(key) is not None else AUTO,
                                               False, REASONS["lora_kernel"]))
                cfg[key] = False
    if packing != "config":
        change("sample_packing", packing == "on", REASONS["packing"])
    shape = TrainingShape.of(cfg)
    if (shape.sample_packing or shape.pad_to_sequence_len) and shape.sequence_len > CPU_ROW_TOKENS:
        change("sequence_len", CPU_ROW_TOKENS, REASONS["sequence_len"])

    every = save_steps or steps
    step_values = {"max_steps": steps, "save_steps": every, "eval_steps": every, "logging_steps": 1}
    if cfg.get("warmup_steps"):
        step_values["warmup_steps"] = min(int(cfg["warmup_steps"]), max(steps - 1, 0))
    for key, value in step_values.items():
        if key not in kept:
            change(key, value, REASONS["steps"])

    if cfg.get("test_datasets"):
        divergences.append(_divergence("test_datasets", "every example", f"the first {val_examples} of each file",
                                       "evaluation on CPU costs a vocabulary-wide logit row per token; "
                                       "the eval path is the same on a few examples"))
    divergences.append(_divergence("device", pod_device, "cpu", REASONS["device"]))
    divergences.append(_divergence("TrainingArguments.use_cpu", False, True, REASONS["use_cpu"]))
    if cfg.get("load_in_4bit") or cfg.get("adapter") == "qlora":
        divergences.append(_divergence("bitsandbytes Linear4bit.support_avx512bf16_for_cpu", AUTO, False,
                                       REASONS["support_avx512bf16_for_cpu"]))
    cfg["plugins"] = sorted(set(cfg.get("plugins") or []) | {PLUGIN})
    return cfg, divergences


PLUGIN = "cli_tuner.training.rehearsal_plugin.CpuRehearsalPlugin"
