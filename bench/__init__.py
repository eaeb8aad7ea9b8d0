"""Benchmarks that print numbers; what they share."""

from pathlib import Path

# The environment every benchmark's child process runs in: no hub, no W&B, no telemetry, unbuffered output.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled",
               "AXOLOTL_DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
# The reference copy of the Qwen tokenizer beside a checkout (docs/testing.md).
QWEN_REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tokenizers" / "qwen2.5-coder-7b-instruct"
