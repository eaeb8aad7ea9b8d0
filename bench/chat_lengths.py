"""Token lengths of chat examples, tokenized exactly as training tokenizes them.

Training runs Axolotl's `chat_template` prompt strategy (the tokenizer's own chat template over
the whole conversation, labels masked outside the assistant turns), so the lengths here come from
that same strategy object, not from a re-implementation of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED_TOKENIZERS = REPO.parent / "shared" / "data" / "tokenizers"
# The configs name hub ids; offline, their tokenizers live beside the repo.
DEFAULT_TOKENIZER_DIRS = {
    "Qwen/Qwen2.5-Coder-7B-Instruct": SHARED_TOKENIZERS / "qwen2.5-coder-7b-instruct",
    "mistralai/Mistral-7B-Instruct-v0.2": SHARED_TOKENIZERS / "mistral-7b-instruct-v0.2",
}
# Dataset-entry keys of the chat_template strategy that change the tokens or the labels.
STRATEGY_KEYS = ("type", "field_messages", "roles_to_train", "train_on_eos", "train_on_eot",
                 "message_property_mappings", "roles", "drop_system_message", "chat_template")


@dataclass(frozen=True)
class Lengths:
    total: np.ndarray      # input_ids per example
    trainable: np.ndarray  # labels that are not -100 per example


def rows_from_jsonl(path: Path) -> list[dict]:
    from cli_tuner import data

    return [record.data for record in data.read_records(path)]


def rows_from_nl2bash(folder: Path) -> list[dict]:
    """Every pair of all.nl / all.cm as a two-turn chat (the raw corpus: no filtering, no split)."""
    from cli_tuner.corpus import nl2bash

    pairs = nl2bash.read_pairs(folder / "all.nl", folder / "all.cm")
    return [nl2bash.as_chat(p) for p in pairs if p.description and p.command]


def load_rows(source: Path) -> list[dict]:
    source = Path(source)
    if source.is_dir() and (source / "all.nl").is_file():
        return rows_from_nl2bash(source)
    return rows_from_jsonl(source)


def tokenizer_dir_for(base_model: str, tokenizer_source: str, overrides: dict[str, str],
                      explicit: str | None = None) -> str:
    """A local tokenizer folder for a config: --tokenizer, then NAME=PATH maps, then the defaults."""
    if explicit:
        return explicit
    for name in (tokenizer_source, base_model):
        if name in overrides:
            return overrides[name]
        if name in DEFAULT_TOKENIZER_DIRS and DEFAULT_TOKENIZER_DIRS[name].is_dir():
            return str(DEFAULT_TOKENIZER_DIRS[name])
    return tokenizer_source


def strategy_fingerprint(axolotl_cfg: dict) -> tuple:
    """What of a config changes tokenization: the chat template and the first dataset's strategy keys."""
    entry = (axolotl_cfg.get("datasets") or [{}])[0]
    return (str(axolotl_cfg.get("chat_template")), bool(axolotl_cfg.get("train_on_inputs")),
            tuple((key, repr(entry.get(key))) for key in STRATEGY_KEYS))


def tokenized_lengths(rows: list[dict], tokenizer, axolotl_cfg: dict) -> Lengths:
    """Lengths from Axolotl's chat_template strategy, configured from the config's first dataset."""
    from axolotl.prompt_strategies.chat_template import load as load_strategy
    from axolotl.utils.dict import DictDefault

    entry = dict((axolotl_cfg.get("datasets") or [{}])[0])
    if entry.get("type", "chat_template") != "chat_template":
        raise ValueError(f"dataset type {entry.get('type')!r}: the benchmark tokenizes chat_template datasets only")
    cfg = DictDefault({**axolotl_cfg, "chat_template": axolotl_cfg.get("chat_template") or "tokenizer_default"})
    strategy = load_strategy(tokenizer, cfg, entry)
    total, trainable = [], []
    for row in rows:
        tokens = strategy.tokenize_prompt(row)
        total.append(len(tokens["input_ids"]))
        trainable.append(sum(1 for label in tokens["labels"] if label != -100))
    return Lengths(np.array(total, dtype=np.int64), np.array(trainable, dtype=np.int64))
