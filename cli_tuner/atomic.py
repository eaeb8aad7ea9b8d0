"""Atomic file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import EnvironmentProblem


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path | str, text: str) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot write {path}: {exc.strerror}; make {path.parent} writable or choose another output folder"
        ) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise EnvironmentProblem(
            f"cannot write {path}: {exc.strerror}; free space or permissions on {path.parent} need fixing"
        ) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path | str, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


@contextmanager
def folder(target: Path | str) -> Iterator[Path]:
    """Fill the yielded staging folder; on success it replaces `target` by a rename, so a kill or a
    full disk leaves the old folder or none, never a half-written one that looks finished."""
    target = Path(target)
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        yield staging
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        reason = _io_reason(exc)
        if reason is None:
            raise
        raise EnvironmentProblem(
            f"cannot write {target}: {reason}; free space or permissions on {target.parent} need fixing"
        ) from exc


def _io_reason(exc: BaseException) -> str | None:
    """The OS error behind a failed write; safetensors reports it inside its own exception's text."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    found = re.search(r"I/O error: (.+?) \(os error \d+\)", str(exc))
    return found.group(1) if found else None
