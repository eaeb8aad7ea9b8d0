"""The base model with the adapter attached, and greedy generation on chat prompts.

The base model is loaded the way it was trained where the hardware allows it. Errors: a base
model that cannot be loaded (offline and not cached) or an adapter that does not fit it is a
ConfigError (exit 4); a missing 4-bit library is an EnvironmentProblem (exit 5).
"""

from __future__ import annotations

from pathlib import Path

from ..data import CHAT_FORMAT, chat_pairs, read_records, record_format
from ..errors import ConfigError, DataError, EnvironmentProblem
from .adapter_files import TOKENIZER_CONFIG

BATCH_SIZE = {"cuda": 16, "mps": 8, "cpu": 4}


def load_conversations(test_file: Path, sample_size: int | None) -> list[dict]:
    """(messages before the last assistant turn, reference command, where) for each chat example."""
    records = read_records(test_file)
    if sample_size is not None:
        records = records[:sample_size]
    conversations = []
    for record, prompt, reference in chat_pairs(records):
        if record_format(record) != CHAT_FORMAT:
            raise DataError(f"{record.where}: check-checkpoint needs chat examples ('messages'); this one is plain text")
        messages = record.data["messages"]
        last_answer = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        conversations.append({"messages": messages[:last_answer], "prompt": prompt, "reference": reference.strip(),
                              "where": record.where})
    return conversations


def _wants_half(value) -> bool:
    return value is True or value == "auto"


def model_load_kwargs(device: str, resolved_config: dict) -> dict:
    """Load the base model the way it was trained where the hardware allows it.

    CUDA: 4-bit NF4 (or 8-bit) with the run's bitsandbytes settings and Axolotl's defaults under
    them; CPU: float32 (half precision matmuls are slow or missing there); MPS: float16 when the
    run trained in half precision.
    """
    import torch

    cfg = resolved_config or {}
    if device == "cuda":
        bf16 = cfg.get("bf16") is True or (cfg.get("bf16") == "auto" and torch.cuda.is_bf16_supported())
        dtype = torch.bfloat16 if bf16 else torch.float16
        kwargs = {"dtype": dtype, "device_map": {"": 0}}
        if cfg.get("load_in_4bit"):
            from transformers import BitsAndBytesConfig

            bnb = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                   "bnb_4bit_compute_dtype": dtype}
            bnb.update(cfg.get("bnb_config_kwargs") or {})
            kwargs["quantization_config"] = BitsAndBytesConfig(**bnb)
        elif cfg.get("load_in_8bit"):
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        return kwargs
    if device == "mps":
        half = _wants_half(cfg.get("bf16")) or _wants_half(cfg.get("fp16"))
        return {"dtype": torch.float16 if half else torch.float32}
    return {"dtype": torch.float32}


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def load_model(base_model: str, checkpoint_dir: Path, resolved_config: dict, device: str):
    """The base model with the LoRA adapter attached, in eval mode; ConfigError when it cannot load."""
    from transformers import AutoModelForCausalLM

    kwargs = model_load_kwargs(device, resolved_config)
    try:
        base = AutoModelForCausalLM.from_pretrained(base_model, **kwargs)
    except ImportError as exc:  # bitsandbytes or accelerate missing for the 4-bit path
        raise EnvironmentProblem(f"cannot load {base_model} in 4-bit: {_one_line(exc)}; install the pinned "
                                 "requirements (bitsandbytes, accelerate)") from exc
    except Exception as exc:  # hub, file and config errors come in many classes; all mean "not loadable here"
        where = "folder" if Path(base_model).exists() else "hub id"
        raise ConfigError(f"cannot load base model from {where} {base_model!r} ({_one_line(exc)}); offline, pass "
                          "--base-model with a local copy of the model the adapter was trained on") from exc
    if device == "mps":
        base = base.to("mps")
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(base, str(checkpoint_dir), is_trainable=False)
    except Exception as exc:  # shape mismatches and missing modules: the adapter belongs to another model
        raise ConfigError(f"{checkpoint_dir}: adapter does not fit base model {base_model!r} ({_one_line(exc)}); "
                          "pass the --base-model it was trained on") from exc
    model.eval()
    return model


def load_checkpoint_tokenizer(checkpoint_dir: Path):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_dir))
    except Exception as exc:  # tokenizers raise many classes for a damaged file
        raise DataError(f"{checkpoint_dir}: tokenizer files do not load ({_one_line(exc)}); "
                        "the checkpoint is damaged, use another one") from exc
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"{checkpoint_dir / TOKENIZER_CONFIG}: the tokenizer has no chat template, so prompts cannot "
                        "be built as in training; use a checkpoint saved with the chat tokenizer")
    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _eos_ids(model, tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(i for i in ids if i is not None)


def generate(model, tokenizer, conversations: list[dict], max_new_tokens: int, batch_size: int,
             on_progress=None) -> list[str]:
    """Greedy replies, in the order of `conversations`; prompts of similar length share a batch.
    `on_progress(done, total)` after each batch."""
    import torch
    from transformers import GenerationConfig

    prompts = [tokenizer.apply_chat_template(c["messages"], tokenize=False, add_generation_prompt=True)
               for c in conversations]
    config = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=_eos_ids(model, tokenizer),
                              pad_token_id=tokenizer.pad_token_id)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    replies: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        inputs = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                           add_special_tokens=False).to(device)
        with torch.inference_mode():
            output = model.generate(**inputs, generation_config=config)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        for i, text in zip(batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
            replies[i] = text
        if on_progress is not None:
            on_progress(min(start + batch_size, len(order)), len(order))
    return replies
