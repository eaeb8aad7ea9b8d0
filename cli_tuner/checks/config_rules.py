"""Config checks stricter than Axolotl's: its schema first, then what it lets through.

Axolotl 0.19's `validate_config` drops unknown keys silently (a typo like `lora_alpah` vanishes)
and accepts values that can only fail on the pod (micro_batch_size: 0, warmup longer than the run).
Every problem found is a `Problem` naming the key; the caller decides how to report them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import data as data_files
from ..batching.steps import total_steps
from ..config import LoadedConfig
from ..errors import DataError

# Keys Axolotl 0.19 still parses but that have a replacement; the schema's own `deprecated=`
# markers are read at run time, these add the advice.
REPLACEMENTS = {
    "flash_attention": "attn_implementation: flash_attention_2",
    "sdp_attention": "attn_implementation: sdpa",
    "xformers_attention": "attn_implementation: xformers",
    "eager_attention": "attn_implementation: eager",
    "evaluation_strategy": "eval_strategy",
    "noisy_embedding_alpha": "neftune_noise_alpha",
    "dpo_beta": "rl_beta",
}
FLASH_IMPLEMENTATIONS = {"flash_attention_2", "flash_attention_3", "flash_attention_4"}
DATASET_KEYS = ("datasets", "test_datasets")
CHAT_TYPES = {"chat_template"}
TEXT_TYPES = {"completion"}


@dataclass(frozen=True)
class Problem:
    key: str
    message: str
    kind: str = "config"  # "config" (exit 4), "data" (exit 3) or "environment" (exit 5)
    level: str = "error"  # or "warning"

    def line(self) -> str:
        return f"{self.key}: {self.message}"


# ------------------------------------------------------------------ schema

def _schema_fields() -> tuple[set[str], set[str], dict[str, str]]:
    """Top-level field names, dataset-entry field names, and deprecated fields with their advice."""
    from axolotl.utils.schemas.config import AxolotlInputConfig
    from axolotl.utils.schemas.datasets import SFTDataset

    top, deprecated = set(), {}
    for name, info in AxolotlInputConfig.model_fields.items():
        top.add(name)
        if info.alias:
            top.add(info.alias)
        if info.deprecated:
            deprecated[name] = str(info.deprecated)
    dataset = set(SFTDataset.model_fields) | {f.alias for f in SFTDataset.model_fields.values() if f.alias}
    for name, advice in REPLACEMENTS.items():
        if name in top:
            deprecated[name] = f"deprecated; use `{advice}`"
    return top, dataset, deprecated


def _did_you_mean(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    return f"; did you mean `{close[0]}`?" if close else "; remove it or check Axolotl's config reference"


def unknown_and_deprecated(cfg: dict) -> list[Problem]:
    top, dataset_fields, deprecated = _schema_fields()
    problems = []
    for key in cfg:
        if key not in top:
            problems.append(Problem(key, f"unknown key, Axolotl would drop it silently{_did_you_mean(key, top)}"))
        elif key in deprecated and cfg[key] not in (None, False):
            problems.append(Problem(key, deprecated[key]))
    for list_key in DATASET_KEYS:
        for index, entry in enumerate(cfg.get(list_key) or []):
            if isinstance(entry, dict):
                for key in entry:
                    if key not in dataset_fields:
                        problems.append(Problem(f"{list_key}[{index}].{key}",
                                                f"unknown dataset key{_did_you_mean(key, dataset_fields)}"))
    return problems


def axolotl_schema(cfg: dict) -> list[Problem]:
    """Axolotl's own pydantic validation, one Problem per error with key, value and reason."""
    import copy

    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault
    from pydantic import ValidationError

    try:
        validate_config(DictDefault(copy.deepcopy(cfg)))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error.get("loc", ())) or "(config)"
            value = error.get("input")
            shown = "" if isinstance(value, dict) else f" (got {value!r})"
            message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append(Problem(key, f"{message}{shown}"))
        return problems
    except (ValueError, TypeError, DeprecationWarning) as exc:
        return [Problem("(config)", f"Axolotl rejects the config: {exc}")]
    return []


# ------------------------------------------------------------------ semantics

def _number(cfg: dict, key: str) -> float | None:
    value = cfg.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def numbers(cfg: dict, train_examples: int | None) -> list[Problem]:
    problems = []
    for key in ("micro_batch_size", "gradient_accumulation_steps", "eval_batch_size", "sequence_len", "lora_r"):
        value = _number(cfg, key)
        if value is not None and (value < 1 or value != int(value)):
            problems.append(Problem(key, f"must be a positive integer, got {cfg[key]!r}"))
    for key in ("learning_rate", "num_epochs", "max_steps"):
        value = _number(cfg, key)
        if value is not None and value <= 0 and not (key == "max_steps" and value == -1):
            problems.append(Problem(key, f"must be greater than 0, got {cfg[key]!r}"))
    steps = total_steps(cfg, train_examples)
    if steps is None:
        return problems
    return problems + step_problems(cfg, steps)


def step_problems(cfg: dict, steps: int) -> list[Problem]:
    """warmup, save and eval intervals that the run's `steps` (total_steps) leave no room for."""
    problems = []
    # With max_steps the run length is certain; from epochs it is an estimate, so those findings are
    # warnings (packed without max_steps the count needs token lengths, which the config checks lack:
    # validate checks again with the data report's).
    certain = bool(_number(cfg, "max_steps") and cfg["max_steps"] > 0)
    level = "error" if certain else "warning"
    ends = f"before the run ends at step {steps}" if certain else f"in the ~{steps} steps this data gives (estimate)"
    warmup = _number(cfg, "warmup_steps")
    if warmup is not None and warmup >= steps:
        problems.append(Problem("warmup_steps", f"{int(warmup)} is not smaller than the {steps} total steps; "
                                                "the learning rate would never leave warmup", level=level))
    ratio = _number(cfg, "warmup_ratio")
    if ratio is not None and not 0 <= ratio < 1:
        problems.append(Problem("warmup_ratio", f"must be in [0, 1), got {ratio}"))
    for key, strategy in (("save_steps", "save_strategy"), ("eval_steps", "eval_strategy")):
        interval = _number(cfg, key)
        if interval is None or cfg.get(strategy, "steps") not in ("steps", None):
            continue
        if interval <= 0:
            problems.append(Problem(key, f"must be greater than 0, got {interval}"))
        elif interval >= 1 and interval > steps:
            problems.append(Problem(key, f"{int(interval)} never fires {ends}; use at most {steps}",
                                    level=level))
    return problems


def lora_targets(cfg: dict, facts) -> list[Problem]:
    targets = cfg.get("lora_target_modules")
    if not cfg.get("adapter") or not targets or facts is None or not facts.linear_modules:
        return []
    if isinstance(targets, str):
        targets = [targets]
    known = facts.linear_modules
    return [
        Problem("lora_target_modules", f"{name!r} is not a module of {facts.model_type} "
                                       f"({', '.join(sorted(known))}){_did_you_mean(name, set(known))}")
        for name in targets if name not in known
    ]


def trust_remote_code(cfg: dict, allowed: bool) -> list[Problem]:
    if cfg.get("trust_remote_code") and not allowed:
        return [Problem("trust_remote_code", "true runs Python from the model repository; pass "
                                             "--allow-trust-remote-code if you have read that code")]
    return []


def target_capabilities(cfg: dict, gpu) -> list[Problem]:
    """What the chosen hardware cannot do: 4-bit without bitsandbytes, flash attention, bf16."""
    if gpu is None:
        return []
    problems = []
    if (cfg.get("load_in_4bit") or cfg.get("adapter") == "qlora") and not gpu.bnb_4bit:
        problems.append(Problem("load_in_4bit", f"4-bit bitsandbytes quantization is not supported on {gpu.name}; "
                                                "use adapter: lora without load_in_4bit there", kind="environment"))
    if (cfg.get("attn_implementation") in FLASH_IMPLEMENTATIONS or cfg.get("flash_attention")) and not gpu.flash_attention:
        problems.append(Problem("attn_implementation", f"Flash Attention cannot run on {gpu.name}; use "
                                                       "attn_implementation: sdpa", kind="environment"))
    if cfg.get("bf16") is True and not gpu.bf16:
        problems.append(Problem("bf16", f"{gpu.name} has no bf16 support; use fp16: true (or bf16: auto)",
                                kind="environment"))
    return problems


def packing(cfg: dict) -> list[Problem]:
    """Packed examples must not attend to each other; Axolotl knows which kernels isolate them."""
    if not cfg.get("sample_packing"):
        return []
    implementation = cfg.get("attn_implementation") or ("flash_attention_2" if cfg.get("flash_attention") else None)
    if implementation in FLASH_IMPLEMENTATIONS | {"sdpa", "eager"}:
        return []
    return [Problem("sample_packing", f"attention {implementation or 'default'} would let packed examples see each "
                                      "other; set attn_implementation: flash_attention_2 (CUDA) or sdpa")]


def dataset_formats(loaded: LoadedConfig) -> list[Problem]:
    """Paths exist, and what each dataset entry expects matches what its file holds."""
    problems = []
    for list_key in DATASET_KEYS:
        for index, entry in enumerate(loaded.axolotl.get(list_key) or []):
            if not isinstance(entry, dict):
                continue
            key = f"{list_key}[{index}].path"
            path = Path(str(entry.get("path", "")))
            if not entry.get("path"):
                problems.append(Problem(key, "missing; give the local JSONL file"))
                continue
            if not path.is_file():
                problems.append(Problem(key, f"{path} does not exist; fix the path or create the file", kind="data"))
                continue
            try:
                found = data_files.detect_format(path)
            except DataError as exc:
                problems.append(Problem(key, exc.message, kind="data"))
                continue
            wanted = entry.get("type")
            if wanted in CHAT_TYPES and found != data_files.CHAT_FORMAT:
                problems.append(Problem(key, f"type {wanted} expects 'messages' records but {path} holds "
                                             f"'{found}' records; use type: completion or convert the file",
                                        kind="data"))
            if wanted in TEXT_TYPES and found != data_files.TEXT_FORMAT:
                problems.append(Problem(key, f"type {wanted} expects 'text' records but {path} holds "
                                             f"'{found}' records; use type: chat_template", kind="data"))
    if not loaded.axolotl.get("datasets"):
        problems.append(Problem("datasets", "no training dataset; add a `datasets:` entry with a local path"))
    return problems


def train_example_count(loaded: LoadedConfig) -> int | None:
    try:
        return sum(len(data_files.read_records(p)) for p in loaded.split_files()["train"])
    except Exception:  # counted only to check intervals; dataset_formats reports the real problem
        return None


def all_problems(loaded: LoadedConfig, facts: Any, gpu: Any) -> list[Problem]:
    cfg = loaded.axolotl
    problems = unknown_and_deprecated(cfg)
    problems += axolotl_schema(cfg)
    problems += trust_remote_code(cfg, loaded.allow_trust_remote_code)
    problems += numbers(cfg, train_example_count(loaded))
    problems += lora_targets(cfg, facts)
    problems += target_capabilities(cfg, gpu)
    problems += packing(cfg)
    problems += dataset_formats(loaded)
    return problems
