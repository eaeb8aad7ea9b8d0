"""Text keys for duplicate and leakage detection: two examples with the same key are one example."""

from __future__ import annotations

import re
import unicodedata


def normalize_prompt(text: str) -> str:
    """Case, spacing, Unicode forms and closing punctuation do not make a prompt new."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split()).strip(" .?!:;")


def normalize_command(text: str) -> str:
    return " ".join(text.split())


def prompt_words(text: str) -> frozenset[str]:
    """The near-duplicate key: the set of words, so order and punctuation do not matter."""
    return frozenset(re.findall(r"\w+", normalize_prompt(text)))
