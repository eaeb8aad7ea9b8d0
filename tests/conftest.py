"""Shared fixtures: paths to the repo, and to the reference data (real tokenizers, NL2Bash corpus) when present."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli_tuner import tokenizer as job_tokenizer

REPO = Path(__file__).resolve().parent.parent

# Reference data: the real tokenizers and the NL2Bash corpus. None of it ships with the repo; a
# fresh clone skips the tests that need it (CI turns the skip into a failure, see REQUIRE_SWITCH).
# The tests look where the job looks (cli_tuner/tokenizer.py: the shared data folder, then the HF cache).
SHARED_DATA_ENV = job_tokenizer.SHARED_DATA_ENV
shared_data_folders = job_tokenizer.shared_data_folders
REQUIRE_SWITCH = "CLI_TUNER_REQUIRE_REFERENCE_DATA"


@dataclass(frozen=True)
class Reference:
    """One piece of reference data: where it sits in a shared data folder, and on the hub."""

    title: str
    folder: str  # inside a shared data folder
    files: tuple[str, ...]  # what the tests read
    hub_id: str | None = None  # a tokenizer can also come from the Hugging Face cache
    source: str = ""  # where else to get it
    hub_note: str = ""  # what the hub asks first


def tokenizer_reference(title: str, hub_id: str, hub_note: str = "") -> Reference:
    folder = f"{job_tokenizer.SHARED_TOKENIZERS}/{job_tokenizer.shared_folder_name(hub_id)}"
    return Reference(title, folder, ("tokenizer.json", "tokenizer_config.json"), hub_id, hub_note=hub_note)


REFERENCES = {
    "qwen": tokenizer_reference("the Qwen2.5-Coder-7B-Instruct tokenizer", "Qwen/Qwen2.5-Coder-7B-Instruct"),
    "mistral": tokenizer_reference("the Mistral-7B-Instruct-v0.2 tokenizer", "mistralai/Mistral-7B-Instruct-v0.2",
                                   "a gated repo: accept its terms on huggingface.co and `hf auth login` first"),
    "nl2bash": Reference("the NL2Bash corpus", "nl2bash", ("all.nl", "all.cm"),
                         source="data/bash/ of github.com/TellinaTool/nl2bash (MIT)"),
}


def in_hf_cache(hub_id: str, files: tuple[str, ...], cache_dir: str | Path | None = None) -> Path | None:
    """The cached snapshot folder of hub_id's main revision when it holds every one of files."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = [try_to_load_from_cache(hub_id, name, cache_dir=cache_dir) for name in files]
    if not all(isinstance(path, str) for path in found):
        return None  # not cached (None) or cached as missing on the hub
    folders = {Path(path).parent for path in found}
    return folders.pop() if len(folders) == 1 else None


def find_reference(key: str, hub: bool = True) -> Path | None:
    """The folder holding reference `key`, or None. hub=False: only the shared data folders."""
    ref = REFERENCES[key]
    for root in shared_data_folders():
        folder = root / ref.folder
        if all((folder / name).is_file() for name in ref.files):
            return folder
    if hub and ref.hub_id:
        return in_hf_cache(ref.hub_id, ref.files)
    return None


def how_to_get(key: str, hub: bool = True) -> str:
    ref = REFERENCES[key]
    looked = ", ".join(str(root / ref.folder) for root in shared_data_folders())
    if hub and ref.hub_id:
        looked += f", the Hugging Face cache ({ref.hub_id})"
    ways = [f"set {SHARED_DATA_ENV}=DIR where DIR/{ref.folder}/ holds {', '.join(ref.files)}"
            + (f" (from {ref.source})" if ref.source else "")]
    if hub and ref.hub_id:
        ways.append(f"run `hf download {ref.hub_id} {' '.join(ref.files)}`"
                    + (f" ({ref.hub_note})" if ref.hub_note else ""))
    return f"{ref.title} is not in {looked}; to run this test, " + " or ".join(ways)


def require_reference(key: str, hub: bool = True) -> Path:
    """The folder of reference `key`; skips the test without it, or fails it under REQUIRE_SWITCH."""
    folder = find_reference(key, hub=hub)
    if folder is not None:
        return folder
    reason = how_to_get(key, hub=hub)
    if os.environ.get(REQUIRE_SWITCH) == "1":
        pytest.fail(f"{reason} ({REQUIRE_SWITCH}=1: missing reference data is a failure)", pytrace=False)
    pytest.skip(reason)


def optional_reference(key: str) -> Path | None:
    """For a test that runs either way: the folder, or None (under REQUIRE_SWITCH, a failure)."""
    folder = find_reference(key)
    if folder is None and os.environ.get(REQUIRE_SWITCH) == "1":
        require_reference(key)
    return folder


def pytest_configure(config):
    config.addinivalue_line("markers", "requires_reference_data(*keys, hub=True): needs the named reference data "
                            f"({', '.join(REFERENCES)}); skipped without it, failed when {REQUIRE_SWITCH}=1")


def pytest_runtest_setup(item):
    for marker in item.iter_markers("requires_reference_data"):
        for key in marker.args:
            require_reference(key, hub=marker.kwargs.get("hub", True))


# Nothing in the tests may reach the hub; fail fast instead of waiting on timeouts.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["AXOLOTL_DO_NOT_TRACK"] = "1"
os.environ["WANDB_MODE"] = "offline"


def run_folders(output_root: Path) -> list[Path]:
    """The run folders in an output root (the tokenized-data cache sits beside them)."""
    from cli_tuner.paths import PREPARED_DIR

    return sorted(p for p in output_root.iterdir() if p.is_dir() and p.name != PREPARED_DIR)


@pytest.fixture
def qwen_tokenizer_dir() -> Path:
    return require_reference("qwen")


@pytest.fixture
def mistral_tokenizer_dir() -> Path:
    return require_reference("mistral")


@pytest.fixture
def nl2bash_dir() -> Path:
    return require_reference("nl2bash")


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


# For tests whose subject is signals, resumes, ranks or the pod's lifecycle, not the config's shape:
# the default config pads every row to its sequence_len (512), the test rows are under 64 tokens, and a
# CPU step costs in proportion to the padded rows (the tiny model's 151k-word output layer dominates).
SHORT_ROWS = ["--set", "sequence_len=128"]


@pytest.fixture
def locked_data(tmp_path) -> dict[str, Path]:
    return make_locked_data(tmp_path / "data")


@dataclass(frozen=True)
class Rehearsed:
    """The shared finished run: `rehearse` of the default config, 2 steps, on CPU."""

    result: subprocess.CompletedProcess
    files: dict[str, Path]
    run: Path
    tokenizer: Path | None  # the real Qwen tokenizer when the reference data is here, else None (the local one)


def run_shared_root(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this run sees (one run's workers share their base temp's
    parent); without xdist, this run's own base temp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def rehearsed(tmp_path_factory) -> Rehearsed:
    """One real `axolotl train` shared by every test that reads a finished run (test_rehearse,
    test_export, test_gguf, test_serving), made once per pytest run however many xdist workers ask
    for it: tests may read its folder and write beside it, never change what is in it."""
    import json

    from filelock import FileLock

    root = run_shared_root(tmp_path_factory) / "rehearsed"
    root.mkdir(exist_ok=True)
    record = root / "result.json"
    with FileLock(str(root) + ".lock"):
        if not record.is_file():
            files = make_locked_data(root / "data")
            # The real Qwen tokenizer when the reference data is here; else the job's own local tokenizer,
            # what a fresh clone offline gets.
            tokenizer = optional_reference("qwen")
            chosen = ["--tokenizer", str(tokenizer)] if tokenizer else []
            # The user's own locked folder, passed as a user passes it: the config's split paths are read
            # from it. A generous limit: every test that reads the run fails with it, so a busy machine
            # must not cut it short.
            result = run_entrypoint("rehearse", "--data-dir", str(files["train"].parent), *chosen,
                                    "--output-root", str(root / "outputs"),
                                    env={"WANDB_API_KEY": "", "HF_HUB_OFFLINE": "1"}, timeout=1800)
            record.write_text(json.dumps({"args": result.args, "returncode": result.returncode,
                                          "stdout": result.stdout, "stderr": result.stderr,
                                          "files": {k: str(v) for k, v in files.items()},
                                          "tokenizer": str(tokenizer) if tokenizer else None}))
    saved = json.loads(record.read_text())
    result = subprocess.CompletedProcess(saved["args"], saved["returncode"], saved["stdout"], saved["stderr"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = run_folders(root / "outputs")
    assert len(runs) == 1, runs
    return Rehearsed(result, {k: Path(v) for k, v in saved["files"].items()}, runs[0],
                     Path(saved["tokenizer"]) if saved["tokenizer"] else None)


@pytest.fixture(scope="session")
def finished_rehearsal(rehearsed) -> Path:
    """The shared finished run, for the tests that only read a run and write beside it: export's formats
    and `ask`. CLI_TUNER_TEST_FINISHED_RUN=RUN reuses a finished rehearsal's folder instead (its gguf/
    and vllm/ are rewritten)."""
    reused = os.environ.get("CLI_TUNER_TEST_FINISHED_RUN")
    return Path(reused) if reused else rehearsed.run
