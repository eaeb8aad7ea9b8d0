"""Text keys for duplicate and leakage detection: two examples with the same key are one example."""

from __future__ import annotations

import unicodedata


def normalize_prompt(text: str) -> str:
    """Case, spacing, Unicode forms and closing punctuation do not make a prompt new."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.split()).strip(" .?!:;")


def normalize_command(text: str) -> str:
    """Spacing does not make a command new. The data's duplicate and leakage keys (data_report,
    corpus.nl2bash) use this one: whitespace only, with no parse of every example of a corpus, and
    base, where the data checks may import it. Scoring an answer (evaluation.answers.normalize,
    `normalized_match`) parses both commands with the shell parser and forgives the quoting style
    too, so an answer quoted otherwise than its reference still matches."""
    return " ".join(text.split())

