"""Shared fixtures: paths to the repo and to the real tokenizer/corpus files beside it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# ../shared/data beside the checkout; CLI_TUNER_SHARED_DATA or /shared/data (compose's test service) elsewhere.
SHARED_DATA = next((Path(p) for p in (os.environ.get("CLI_TUNER_SHARED_DATA"), REPO.parent / "shared" / "data", "/shared/data")
                    if p and Path(p).is_dir()), REPO.parent / "shared" / "data")
QWEN_TOKENIZER = SHARED_DATA / "tokenizers" / "qwen2.5-coder-7b-instruct"
MISTRAL_TOKENIZER = SHARED_DATA / "tokenizers" / "mistral-7b-instruct-v0.2"
NL2BASH = SHARED_DATA / "nl2bash"

# Nothing in the tests may reach the hub; fail fast instead of waiting on timeouts.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["AXOLOTL_DO_NOT_TRACK"] = "1"
os.environ["WANDB_MODE"] = "offline"


def run_folders(output_root: Path) -> list[Path]:
    """The run folders in an output root (the tokenized-data cache sits beside them)."""
    from cli_tuner.paths import PREPARED_DIR

    return sorted(p for p in output_root.iterdir() if p.is_dir() and p.name != PREPARED_DIR)


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


SAMPLE_PAIRS = [
    ("list all files including hidden ones", "ls -la"),
    ("show free disk space in human units", "df -h"),
    ("count the lines of notes.txt", "wc -l notes.txt"),
    ("print the current directory", "pwd"),
    ("find python files under src", "find src -name '*.py'"),
    ("search logs for the word timeout", "grep -r timeout logs/"),
    ("show the ten largest files here", "du -ah . | sort -rh | head -n 10"),
    ("print today's date in ISO format", "date -I"),
]


def write_chat_split(path: Path, count: int, offset: int = 0) -> Path:
    import json

    with path.open("w", encoding="utf-8") as handle:
        for index in range(offset, offset + count):
            prompt, command = SAMPLE_PAIRS[index % len(SAMPLE_PAIRS)]
            record = {"messages": [{"role": "user", "content": f"{prompt} (case {index})"},
                                   {"role": "assistant", "content": command}]}
            handle.write(json.dumps(record) + "\n")
    return path


def make_locked_data(folder: Path, train: int = 40, val: int = 8, test: int = 8) -> dict[str, Path]:
    """A small chat dataset with its manifest, and the --set flags that point a config at it."""
    from cli_tuner import data

    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "train": write_chat_split(folder / "train.jsonl", train),
        "val": write_chat_split(folder / "val.jsonl", val, offset=1000),
        "test": write_chat_split(folder / "test.jsonl", test, offset=2000),
    }
    data.lock(folder, force=True)
    return files


def data_sets(files: dict[str, Path]) -> list[str]:
    return ["--set", f"datasets.0.path={files['train']}", "--set", f"test_datasets.0.path={files['val']}",
            "--set", f"cli_tuner.test_file={files['test']}"]


@pytest.fixture
def locked_data(tmp_path) -> dict[str, Path]:
    return make_locked_data(tmp_path / "data")
