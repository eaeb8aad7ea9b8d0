"""Load a tokenizer the standard way, with one clear error when it cannot be found offline."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError


def load(name_or_path: str):
    """A local folder, the HF cache, or the hub when online (transformers decides the order)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(name_or_path))
    except Exception as exc:  # transformers raises OSError, ValueError or hub errors depending on the cause
        where = "folder" if Path(str(name_or_path)).exists() else "hub id"
        raise ConfigError(
            f"cannot load tokenizer from {where} {name_or_path!r} ({type(exc).__name__}); offline, set "
            "`tokenizer_config:` to a local folder (e.g. --set tokenizer_config=PATH) or pass --tokenizer PATH"
        ) from exc
