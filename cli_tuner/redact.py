"""The secrets the job may hold, and the one way text is cleaned of them before it is written.

Every path that writes text a person or a machine outside the pod may read (train.log and the
console's stream of it, provenance, the model cards, the export log) passes it through `redact`
or `redact_data` with the values of `SECRET_VARIABLES` in the environment at that moment.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

SECRET_VARIABLES = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "RUNPOD_API_KEY")
MASK = "***"
# Shorter values are no real key (W&B keys are 40 characters, Hugging Face and RunPod tokens over
# 30), and masking them would mangle ordinary text: an empty or placeholder value is left alone.
MIN_SECRET_LENGTH = 8


def secret_values(env: Mapping[str, str] | None = None, extra: Iterable[str | None] = ()) -> tuple[str, ...]:
    """The secrets set in env (default: this process's environment) and any extra ones, longest first."""
    env = os.environ if env is None else env
    found = {env.get(name) for name in SECRET_VARIABLES} | set(extra)
    return tuple(sorted((v for v in found if v and len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True))


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """text with every secret replaced by MASK; secrets default to the environment's."""
    for secret in secret_values() if secrets is None else secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_data(value, secrets: Iterable[str] | None = None):
    """A JSON-like value (dicts, lists, strings) with every secret in its keys and strings masked."""
    secrets = secret_values() if secrets is None else tuple(secrets)
    if not secrets:
        return value
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {redact_data(k, secrets): redact_data(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v, secrets) for v in value]
    return value
