"""Shared fixtures: paths to the repo and to the real tokenizer/corpus files beside it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
QWEN_TOKENIZER = SHARED_DATA / "tokenizers" / "qwen2.5-coder-7b-instruct"
MISTRAL_TOKENIZER = SHARED_DATA / "tokenizers" / "mistral-7b-instruct-v0.2"
NL2BASH = SHARED_DATA / "nl2bash"

# Nothing in the tests may reach the hub; fail fast instead of waiting on timeouts.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["AXOLOTL_DO_NOT_TRACK"] = "1"
os.environ["WANDB_MODE"] = "offline"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: tests need ../shared/data beside the repo")
    return path


@pytest.fixture
def qwen_tokenizer_dir() -> Path:
    return require(QWEN_TOKENIZER)


@pytest.fixture
def mistral_tokenizer_dir() -> Path:
    return require(MISTRAL_TOKENIZER)


@pytest.fixture
def nl2bash_dir() -> Path:
    return require(NL2BASH)


def run_entrypoint(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run entrypoint.py as a user would, capturing output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(REPO / "entrypoint.py"), *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def entrypoint():
    return run_entrypoint
