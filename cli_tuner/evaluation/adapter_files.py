"""The files an adapter check needs: adapter, weights, tokenizer and the run's provenance.

Errors, and why these classes:
- the folder, or a file it needs, is missing: UsageError (exit 2) -- --checkpoint points at the
  wrong folder; the message names the file and where a complete adapter lives.
- such a file is present but unreadable (invalid JSON, truncated safetensors, provenance without
  a base model), or the test file differs from the one the run recorded: DataError (exit 3) --
  an integrity problem, like a dataset that fails its manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..config import DATA_DIR_ENV, in_data_folder
from ..data import sha256_file, verify
from ..errors import DataError, UsageError
from ..paths import EVAL_FILE, FINAL_DIR, PROVENANCE_FILE, REPO_ROOT

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_VOCABS = ("tokenizer.json", "vocab.json", "tokenizer.model", "vocab.txt")
DEFAULT_TEST_FILE = "test.jsonl"  # the test split's name in a folder lock-data locked (config.LoadedConfig.split_files)


@dataclass(frozen=True)
class CheckpointFiles:
    folder: Path
    adapter_config: dict
    weights: Path
    provenance_path: Path
    provenance: dict


def _read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: {what} is not valid JSON ({exc}); the checkpoint is damaged, use another one") from exc
    if not isinstance(value, dict):
        raise DataError(f"{path}: {what} should hold a JSON object; the checkpoint is damaged, use another one")
    return value


def _check_safetensors(path: Path) -> None:
    """Reading the header and every tensor's byte range catches a file truncated by a kill."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            keys = list(handle.keys())
    except Exception as exc:  # safetensors raises its own error classes for each kind of damage
        raise DataError(f"{path}: unreadable adapter weights ({type(exc).__name__}: {exc}); "
                        "the file is truncated or damaged, use another checkpoint") from exc
    if not keys:
        raise DataError(f"{path}: adapter weights hold no tensors; the adapter was not saved, use another checkpoint")


def adapter_folder(path: Path) -> Path:
    """A run folder stands for its final adapter: RUN means RUN/phase2-final, the adapter the run
    checked and published (its root holds the trainer's copy, which is not the run's record)."""
    path = Path(path)
    return path / FINAL_DIR if path.name != FINAL_DIR and (path / FINAL_DIR).is_dir() else path


def new_record_path(folder: Path) -> Path:
    """Where a later check of this adapter writes: eval.json where there is none, else the first free
    eval-N.json beside it, so the run's own record (and every earlier check) is never overwritten."""
    first = Path(folder) / EVAL_FILE
    if not first.exists():
        return first
    stem, suffix = first.stem, first.suffix
    index = 2
    while (first.parent / f"{stem}-{index}{suffix}").exists():
        index += 1
    return first.parent / f"{stem}-{index}{suffix}"


def find_provenance(checkpoint_dir: Path) -> Path | None:
    """The checkpoint's own provenance.json (phase2-final, run root), else the run folder's."""
    for candidate in (checkpoint_dir / PROVENANCE_FILE, checkpoint_dir.parent / PROVENANCE_FILE):
        if candidate.is_file():
            return candidate
    return None


def verify_checkpoint(checkpoint_dir: Path | str) -> CheckpointFiles:
    """Every file a check needs, present and readable; raises UsageError/DataError naming the file."""
    folder = Path(checkpoint_dir)
    hint = "point --checkpoint at a checkpoint-N folder, phase2-final/ or the run folder"
    if not folder.is_dir():
        raise UsageError(f"{folder}: checkpoint folder not found; {hint}")
    if not (folder / ADAPTER_CONFIG).is_file():
        raise UsageError(f"{folder / ADAPTER_CONFIG}: not found, so {folder} holds no LoRA adapter; {hint}")
    adapter_config = _read_json(folder / ADAPTER_CONFIG, "adapter config")
    weights = next((folder / name for name in ADAPTER_WEIGHTS if (folder / name).is_file()), None)
    if weights is None:
        raise UsageError(f"{folder / ADAPTER_WEIGHTS[0]}: not found (nor {ADAPTER_WEIGHTS[1]}); the adapter weights "
                         f"were never saved here; {hint}")
    if weights.suffix == ".safetensors":
        _check_safetensors(weights)
    elif weights.stat().st_size == 0:
        raise DataError(f"{weights}: adapter weights are empty; the checkpoint is damaged, use another one")
    if not (folder / TOKENIZER_CONFIG).is_file():
        raise UsageError(f"{folder / TOKENIZER_CONFIG}: not found; the checkpoint carries no tokenizer; {hint}")
    _read_json(folder / TOKENIZER_CONFIG, "tokenizer config")
    if not any((folder / name).is_file() for name in TOKENIZER_VOCABS):
        raise UsageError(f"{folder / TOKENIZER_VOCABS[0]}: not found (nor {', '.join(TOKENIZER_VOCABS[1:])}); "
                         f"the tokenizer's vocabulary is missing; {hint}")
    provenance_path = find_provenance(folder)
    if provenance_path is None:
        raise UsageError(f"{folder / PROVENANCE_FILE}: not found (nor in {folder.parent}); a checkpoint is checked "
                         f"against the run that made it; {hint}")
    provenance = _read_json(provenance_path, "run provenance")
    return CheckpointFiles(folder, adapter_config, weights, provenance_path, provenance)


def resolve_base_model(files: CheckpointFiles, override: str | None) -> tuple[str, str]:
    """(base model, where the name came from): --base-model, provenance, then the adapter config."""
    if override:
        return override, "--base-model"
    if isinstance(files.provenance.get("base_model"), str) and files.provenance["base_model"]:
        return files.provenance["base_model"], str(files.provenance_path)
    from_adapter = files.adapter_config.get("base_model_name_or_path")
    if isinstance(from_adapter, str) and from_adapter:
        return from_adapter, str(files.folder / ADAPTER_CONFIG)
    raise DataError(f"{files.provenance_path}: no 'base_model' recorded (nor in {ADAPTER_CONFIG}); "
                    "pass --base-model with the model the adapter was trained on")


def _existing(path_text: str) -> Path:
    """A recorded relative path is relative to where the run started: the cwd, or the repo root."""
    path = Path(path_text).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return REPO_ROOT / path if (REPO_ROOT / path).exists() else path


def resolve_test_file(files: CheckpointFiles, explicit: Path | str | None, data_dir: Path | str | None = None) -> Path:
    """The test split to score on: `explicit` (--test-file), else the run's recorded file. With a data
    folder (--data-dir), that file's name is read from the folder and verified against its manifest,
    as every verb that reads data reads its splits (DataError, exit 3, on any mismatch)."""
    if data_dir is not None:
        return test_file_in_folder(files, explicit, Path(data_dir))
    if explicit:
        path = Path(explicit)
    else:
        recorded = (files.provenance.get("data") or {}).get("test_file")
        if not recorded:
            raise UsageError(f"{files.provenance_path}: the run recorded no test file; pass --test-file FILE (chat JSONL)")
        path = _existing(recorded)
    if not path.is_file():
        raise DataError(f"{path}: test file not found; pass --test-file with the held-out chat JSONL")
    return path


def test_file_in_folder(files: CheckpointFiles, explicit: Path | str | None, folder: Path) -> Path:
    """The test split inside the data folder: --test-file's name, else the name of the file the run
    recorded, else test.jsonl; verified against the folder's manifest."""
    recorded = (files.provenance.get("data") or {}).get("test_file")
    name = str(explicit) if explicit else Path(recorded).name if recorded else DEFAULT_TEST_FILE
    path = in_data_folder(name, folder)
    if not folder.is_dir():
        raise DataError(f"data folder {folder} (--data-dir or {DATA_DIR_ENV}) does not exist (resolved against "
                        f"{Path.cwd()}); pass the locked folder that holds the test split")
    if path.parent.resolve() != folder.resolve():
        raise DataError(f"--test-file {path} is outside the data folder {folder}; name a file in it, or leave "
                        "--data-dir out to score on that file")
    verify([path])
    return path


def check_test_file_hash(files: CheckpointFiles, test_file: Path) -> str:
    """The test file's SHA256; a file the run locked must still match, or the scores mean nothing."""
    actual = sha256_file(test_file)
    recorded_files = (files.provenance.get("data") or {}).get("files") or {}
    for recorded_path, entry in recorded_files.items():
        if _existing(recorded_path).resolve() != test_file.resolve():
            continue
        expected = (entry or {}).get("sha256")
        if expected and expected != actual:
            raise DataError(f"{test_file}: SHA256 {actual[:16]}... differs from {expected[:16]}... recorded in "
                            f"{files.provenance_path}; restore the locked test split or pass another --test-file")
    return actual
