"""Text keys for duplicate and leakage detection: two examples with the same key are one example."""

from __future__ import annotations

import unicodedata


def normalize_prompt(text: str) -> str:
    """Case, spacing, Unicode forms and closing punctuation do not make a prompt new."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split()).strip(" .?!:;")


def normalize_command(text: str) -> str:
    return " ".join(text.split())

