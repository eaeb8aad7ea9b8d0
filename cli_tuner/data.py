"""Dataset files: JSONL reading with file:line errors, format detection, and the SHA256 manifest.

The manifest (`manifest.json` beside the split files) is what makes a training run
reproducible: every training command verifies it before touching a model. Data locked before
the rename carries it as `provenance.json`; that is still read, and replaced on the next lock.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from . import atomic
from .errors import DataError, UsageError
from .paths import DEFAULT_DATA_DIR, LEGACY_MANIFEST_FILE, MANIFEST_FILE

MANIFEST_NAME = MANIFEST_FILE
CHAT_FORMAT = "chat"
TEXT_FORMAT = "text"
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Record:
    path: Path
    line: int
    data: dict

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def parse_line(path: Path, number: int, raw: bytes) -> Record | None:
    """One JSONL line as a Record (None when blank); a bad line raises DataError naming file:line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{number}: not UTF-8 ({exc.reason} at byte {exc.start}); re-encode the file as UTF-8") from exc
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno}); fix or remove that line") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}:{number}: expected a JSON object per line, got {type(data).__name__}")
    return Record(path, number, data)


def iter_records(path: Path | str) -> Iterator[Record]:
    """Yield each non-blank line as a JSON object; a bad line raises DataError naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found; check the dataset path in the config or run from the repo root")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            record = parse_line(path, number, raw)
            if record is not None:
                yield record


def read_records(path: Path | str) -> list[Record]:
    records = list(iter_records(path))
    if not records:
        raise DataError(f"{path}: data file is empty; it needs at least one example")
    return records


def record_format(record: Record) -> str:
    """Classify one example as chat (`messages`) or text (`text`), rejecting anything else."""
    data = record.data
    if "messages" in data:
        messages = data["messages"]
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{record.where}: 'messages' must be a non-empty list of {{role, content}} objects")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise DataError(f"{record.where}: messages[{index}] needs 'role' and 'content' fields")
            if message["role"] not in ROLES:
                raise DataError(f"{record.where}: messages[{index}] has role {message['role']!r}; use one of {', '.join(ROLES)}")
            if not isinstance(message["content"], str) or not message["content"].strip():
                raise DataError(f"{record.where}: messages[{index}] has empty content")
        if not any(m["role"] == "assistant" for m in messages):
            raise DataError(f"{record.where}: no assistant turn, so there is nothing to learn from this example")
        return CHAT_FORMAT
    if "text" in data:
        if not isinstance(data["text"], str) or not data["text"].strip():
            raise DataError(f"{record.where}: 'text' must be a non-empty string")
        return TEXT_FORMAT
    fields = ", ".join(sorted(data)) or "none"
    raise DataError(f"{record.where}: no 'messages' or 'text' field (found: {fields}); rename the field or convert the file")


def detect_format(path: Path | str) -> str:
    """The one format every example of a file shares; mixed files are refused."""
    formats = {}
    for record in read_records(path):
        formats.setdefault(record_format(record), record)
    if len(formats) > 1:
        second = list(formats.values())[1]
        raise DataError(f"{second.where}: file mixes chat ('messages') and text examples; keep one format per file")
    return next(iter(formats))


def chat_pairs(records: list[Record]) -> Iterator[tuple[Record, str, str]]:
    """(record, prompt, answer) for each chat example: the last user turn and the assistant reply after it."""
    for record in records:
        messages = record.data.get("messages") or []
        prompt = next((m["content"] for m in messages if m.get("role") == "user"), "")
        answer = next((m["content"] for m in reversed(messages) if m.get("role") == "assistant"), "")
        yield record, prompt, answer


# ---------------------------------------------------------------- manifest

def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def combined_hash(file_hashes: dict[str, str]) -> str:
    """One hash for the whole dataset, independent of file order."""
    lines = "".join(f"{name}\t{sha}\n" for name, sha in sorted(file_hashes.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def build_manifest(data_dir: Path) -> dict:
    files = sorted(p for p in data_dir.glob("*.jsonl") if p.is_file())
    if not files:
        raise DataError(f"{data_dir}: no .jsonl files to lock; put train.jsonl/val.jsonl/test.jsonl there first")
    entries = {}
    for path in files:
        records = read_records(path)  # also proves every line parses before it is locked
        entries[path.name] = {
            "sha256": sha256_file(path),
            "lines": len(records),
            "bytes": path.stat().st_size,
            "format": detect_format(path),
        }
    return {
        "schema": 1,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": entries,
        "data_sha256": combined_hash({name: e["sha256"] for name, e in entries.items()}),
    }


def _is_manifest(path: Path) -> bool:
    """A legacy `provenance.json` is a data manifest only if it holds the manifest's tables."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and isinstance(content.get("files"), dict) and "data_sha256" in content


def manifest_path(data_dir: Path | str) -> Path:
    """The manifest of a data folder: `manifest.json`, else a data manifest under its old name."""
    data_dir = Path(data_dir)
    current, legacy = data_dir / MANIFEST_FILE, data_dir / LEGACY_MANIFEST_FILE
    if not current.exists() and legacy.is_file() and _is_manifest(legacy):
        return legacy
    return current


def lock(data_dir: Path | str = DEFAULT_DATA_DIR, force: bool = False) -> tuple[Path, dict]:
    data_dir = Path(data_dir)
    existing = manifest_path(data_dir)
    if existing.exists() and not force:
        raise UsageError(f"{existing} already exists; pass --force to replace it after checking the data changed on purpose")
    manifest = build_manifest(data_dir)
    written = atomic.write_json(data_dir / MANIFEST_FILE, manifest)
    if existing.name == LEGACY_MANIFEST_FILE:
        existing.unlink()  # one manifest per folder: the old name would otherwise shadow nothing but confuse people
    return written, manifest


def load_manifest(manifest_path: Path) -> dict:
    if not manifest_path.is_file():
        raise DataError(f"{manifest_path}: dataset manifest not found; run `entrypoint.py lock-data --data-dir {manifest_path.parent}`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{manifest_path}: manifest is not valid JSON ({exc}); restore it or re-run lock-data --force") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise DataError(f"{manifest_path}: manifest has no 'files' table; re-run lock-data --force")
    return manifest


@dataclass(frozen=True)
class VerifiedData:
    """The result of a successful manifest check, recorded in run provenance."""

    files: dict[str, dict]  # path -> {sha256, lines}
    data_sha256: str


def verify(paths: list[Path | str]) -> VerifiedData:
    """Check each data file against the manifest beside it; any mismatch raises DataError."""
    verified: dict[str, dict] = {}
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise DataError(f"{path}: data file not found; check the dataset path in the config")
        found = manifest_path(path.parent)
        entry = load_manifest(found)["files"].get(path.name)
        if entry is None:
            raise DataError(f"{path}: not listed in {found}; run lock-data --force if this file is meant to be used")
        actual = sha256_file(path)
        if actual != entry.get("sha256"):
            raise DataError(
                f"{path}: SHA256 mismatch: manifest {entry.get('sha256')} vs file {actual}; "
                "restore the file or re-lock with lock-data --force"
            )
        verified[str(path)] = {"sha256": actual, "lines": entry.get("lines")}
    return VerifiedData(verified, combined_hash({Path(p).name: v["sha256"] for p, v in verified.items()}))
