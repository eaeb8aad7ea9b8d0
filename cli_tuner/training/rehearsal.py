"""The CPU rehearsal: a tiny random model of the base model's architecture, and the config for it.

Same architecture class and module names as the real base model (so LoRA targets, the chat
template and Axolotl's code paths are the real ones), a few layers wide enough to train on two
CPU cores in under a minute. Built locally: nothing is downloaded.
"""

from __future__ import annotations

import copy
from pathlib import Path

from .. import atomic, tokenizer as tokenizer_loader
from ..errors import ConfigError
from ..facts.models import ModelFacts

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


def choose_tokenizer(explicit: str | None, tokenizer_source: str, texts: list[str]):
    """(tokenizer, description): the base model's real tokenizer when reachable, else a local one."""
    for candidate in (explicit, tokenizer_source):
        if not candidate:
            continue
        try:
            return tokenizer_loader.load(candidate), f"real tokenizer from {candidate}"
        except ConfigError:
            if candidate == explicit:
                raise
    return local_tokenizer(texts), (
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


# Hardware-bound settings a CPU cannot honour, replaced for the rehearsal; everything else stays.
CPU_OVERRIDES = {
    "load_in_4bit": False,
    "load_in_8bit": False,
    "bf16": False,
    "fp16": False,
    "tf32": False,
    "attn_implementation": "sdpa",
    "optimizer": "adamw_torch",
    "bnb_config_kwargs": None,
    "flash_attention": None,
    "gradient_checkpointing": False,
    "early_stopping_patience": None,
    "load_best_model_at_end": False,
}


def rehearsal_config(full: dict, model_dir: Path, steps: int, save_steps: int | None, packing: str) -> tuple[dict, list[str]]:
    """The full config with the hardware-bound keys replaced; returns it and what changed."""
    cfg = copy.deepcopy(full)
    changes = []
    overrides = dict(CPU_OVERRIDES)
    overrides.update({
        "base_model": str(model_dir),
        "tokenizer_config": str(model_dir),
        "adapter": "lora" if cfg.get("adapter") in ("lora", "qlora") else cfg.get("adapter"),
        "max_steps": steps,
        "warmup_steps": min(1, steps - 1),
        "warmup_ratio": None,
        "save_steps": save_steps or steps,
        "eval_steps": save_steps or steps,
        "logging_steps": 1,
        "sequence_len": min(int(cfg.get("sequence_len") or 512), 512),
        "micro_batch_size": min(int(cfg.get("micro_batch_size") or 1), 2),
        "gradient_accumulation_steps": min(int(cfg.get("gradient_accumulation_steps") or 1), 2),
        "dataloader_num_workers": 0,
    })
    if packing != "config":
        overrides["sample_packing"] = packing == "on"
    for key, value in overrides.items():
        if cfg.get(key) != value:
            if value is None:
                if key in cfg:
                    changes.append(f"{key}: removed (was {cfg.pop(key)!r})")
            else:
                changes.append(f"{key}: {cfg.get(key)!r} -> {value!r}")
                cfg[key] = value
    return cfg, changes
