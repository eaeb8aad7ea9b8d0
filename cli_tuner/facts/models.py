"""Architecture facts of a base model, found offline when possible.

Order of lookup: a local model folder, the Hugging Face cache (or the hub when online), and
finally the facts shipped below for the supported models, so validation, memory estimates and
rehearsals work on a laptop with no network.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import hub

# Public numbers from each model's config.json on the Hugging Face hub.
SHIPPED: dict[str, dict] = {
    "Qwen/Qwen2.5-Coder-7B-Instruct": {
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": False,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-06,
    },
    "mistralai/Mistral-7B-Instruct-v0.2": {
        "model_type": "mistral",
        "architectures": ["MistralForCausalLM"],
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 32000,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": False,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-05,
    },
}
SHIPPED["Qwen/Qwen2.5-7B-Instruct"] = dict(SHIPPED["Qwen/Qwen2.5-Coder-7B-Instruct"])

# Linear layer names per decoder family: what LoRA's target_modules may name.
LINEAR_MODULES: dict[str, frozenset[str]] = {
    family: frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"})
    for family in ("qwen2", "mistral", "llama", "qwen3")
}

FIELDS = (
    "model_type", "architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "vocab_size", "max_position_embeddings",
    "tie_word_embeddings", "rope_theta", "rms_norm_eps",
)


@dataclass(frozen=True)
class ModelFacts:
    name: str
    source: str  # "local", "hub", or "shipped"
    model_type: str
    architectures: list
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    rope_theta: float
    rms_norm_eps: float

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def linear_modules(self) -> frozenset[str]:
        return LINEAR_MODULES.get(self.model_type, frozenset())

    def as_dict(self) -> dict:
        return asdict(self)


def _from_config_dict(name: str, source: str, raw: dict) -> ModelFacts:
    values = {field: raw.get(field) for field in FIELDS}
    values["num_key_value_heads"] = values["num_key_value_heads"] or values["num_attention_heads"]
    values["tie_word_embeddings"] = bool(values["tie_word_embeddings"])
    values["architectures"] = list(values["architectures"] or [])
    values["rope_theta"] = values["rope_theta"] or 10000.0
    values["rms_norm_eps"] = values["rms_norm_eps"] or 1e-6
    missing = [f for f in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size") if values[f] is None]
    if missing:
        raise ValueError(f"{name}: config.json lacks {', '.join(missing)}")
    return ModelFacts(name=name, source=source, **values)


def _hub_config(name: str) -> dict | None:
    """config.json from the local HF cache, or the hub when the machine is online."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HFValidationError
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return None
    for offline in (True, False):
        if not offline and not hub.online():
            break
        try:
            path = hf_hub_download(name, "config.json", local_files_only=offline)
            return json.loads(Path(path).read_text())
        except (OSError, ValueError, HFValidationError):
            continue
        except Exception:  # network errors come in many classes; any of them means "not here"
            continue
    return None


def lookup(name_or_path: str) -> ModelFacts | None:
    """Facts for a base model id or a local folder; None when nothing offline or online knows it."""
    local = Path(name_or_path).expanduser()
    if (local / "config.json").is_file():
        return _from_config_dict(name_or_path, "local", json.loads((local / "config.json").read_text()))
    if name_or_path in SHIPPED:
        # Shipped facts first for the supported models: no network call, same answer everywhere.
        return _from_config_dict(name_or_path, "shipped", SHIPPED[name_or_path])
    raw = _hub_config(name_or_path)
    if raw is not None:
        return _from_config_dict(name_or_path, "hub", raw)
    return None
