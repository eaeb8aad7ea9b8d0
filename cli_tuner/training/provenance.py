"""`provenance.json`: what ran, on what, from which data, and how it ended.

Written atomically when the run starts (status `running`) and rewritten at the end, so a run
that dies still leaves an honest record. Secrets are never collected: nothing here reads the
environment except the image tag and revision.
"""

from __future__ import annotations

import os
import platform as py_platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import atomic
from ..checks.environment import installed_version
from ..paths import PROVENANCE_FILE as FILE_NAME, REPO_ROOT
from ..redact import redact_data

PACKAGES = ("torch", "axolotl", "transformers", "peft", "bitsandbytes", "accelerate", "datasets", "trl", "flash-attn", "kernels")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": py_platform.python_version()}
    for name in PACKAGES:
        versions[name] = installed_version(name)
    return versions


def git_commit() -> str | None:
    if os.environ.get("GIT_REVISION"):
        return os.environ["GIT_REVISION"]
    try:
        result = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


class Provenance:
    """The record of one run; `save()` after every change."""

    def __init__(self, run_dir: Path, record: dict):
        self.path = Path(run_dir) / FILE_NAME
        self.record = record
        self._started = time.monotonic()

    @classmethod
    def start(cls, run_dir: Path, device: dict, **fields) -> "Provenance":
        """`device`: the plan's machine record, so provenance names the machine the checks saw."""
        record = {
            "schema": 1,
            "status": "running",
            "started_utc": utc_now(),
            "ended_utc": None,
            "wall_seconds": None,
            "versions": package_versions(),
            "device": device,
            "image": {"tag": os.environ.get("IMAGE_TAG"), "revision": os.environ.get("GIT_REVISION")},
            "git_commit": git_commit(),
        }
        record.update(fields)
        provenance = cls(run_dir, record)
        provenance.save()
        return provenance

    def update(self, **fields) -> None:
        self.record.update(fields)
        self.save()

    def finish(self, status: str, error: str | None = None, **fields) -> None:
        self.record.update(fields)
        self.record.update(status=status, error=error, ended_utc=utc_now(),
                           wall_seconds=round(time.monotonic() - self._started, 1))
        self.save()

    def save(self) -> None:
        atomic.write_json(self.path, redact_data(self.record))


def record_rescored_check(path: Path, check: dict, run_id: str | None) -> str | None:
    """Replace a finished run's checkpoint check with a later scoring's (score-execution) and move its
    status with the gate: a gated run that now fails becomes `failed_gate`, one that now passes
    `succeeded`. Returns the new status; None when the file is another run's or is not there."""
    import json

    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if run_id is not None and record.get("run_id") not in (None, run_id):
        return None
    earlier = record.get("checkpoint_check") or {}
    gated = earlier.get("gated", bool((record.get("run_spec") or {}).get("gated")))
    record["checkpoint_check"] = {**check, "gated": gated, "rescored_utc": utc_now()}
    if gated and record.get("status") in ("succeeded", "failed_gate"):
        failed = bool(check["gate_failures"])
        record["status"] = "failed_gate" if failed else "succeeded"
        record["error"] = f"checkpoint check failed: {'; '.join(check['gate_failures'])}" if failed else None
    atomic.write_json(path, redact_data(record))
    return record.get("status")
