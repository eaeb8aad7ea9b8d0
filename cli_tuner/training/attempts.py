"""`attempts.json` in the run folder: every start of the run and how it ended.

RunPod starts an exited container again. A run that crashes the same way each time (out of
memory at the same step, a broken base model) would resume, crash and restart forever while the
pod bills; after `cli_tuner.max_identical_failures` failures in a row with the same error line
the job refuses to start the run again. Written atomically, under the run folder's lock.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from .. import atomic
from ..errors import RepeatedFailure
from ..paths import ATTEMPTS_FILE
from .provenance import utc_now

# Parts of an error line that differ between two otherwise identical failures.
VOLATILE = [re.compile(r"\d{4}-\d\d-\d\d[ T_]\d\d:\d\d:\d\d[,.\d]*"), re.compile(r"0x[0-9a-fA-F]+"),
            re.compile(r"\bpid \d+\b")]


def signature(error: str | None) -> str:
    text = error or ""
    for pattern in VOLATILE:
        text = pattern.sub("#", text)
    return text.strip()


def read(run_dir: Path) -> list[dict]:
    try:
        found = json.loads((Path(run_dir) / ATTEMPTS_FILE).read_text())
    except (OSError, ValueError):
        return []
    return found if isinstance(found, list) else []


def identical_failures(history: list[dict]) -> int:
    """How many attempts at the end of the history failed with the same error line."""
    count, last = 0, None
    for attempt in reversed(history):
        if attempt.get("outcome") != "failed":
            break
        if last is not None and signature(attempt.get("error")) != last:
            break
        last = signature(attempt.get("error"))
        count += 1
    return count


@dataclass
class Attempt:
    run_dir: Path
    history: list[dict]

    def end(self, outcome: str, error: str | None) -> None:
        self.history[-1].update(outcome=outcome, error=error, ended_utc=utc_now())
        atomic.write_json(self.run_dir / ATTEMPTS_FILE, self.history)


def begin(run_dir: Path, max_identical_failures: int) -> Attempt:
    """Record a new attempt, or raise RepeatedFailure when the last ones failed alike."""
    run_dir = Path(run_dir)
    history = read(run_dir)
    for attempt in history:
        if attempt.get("outcome") == "running":
            # Nobody recorded its end: killed with the pod (SIGKILL, preemption, power).
            attempt.update(outcome="vanished")
    repeated = identical_failures(history)
    if max_identical_failures and repeated >= max_identical_failures:
        raise RepeatedFailure(
            f"refused: the last {repeated} attempts of {run_dir.name} failed the same way "
            f"({history[-1].get('error')}); fix the cause, then delete {run_dir / ATTEMPTS_FILE} "
            f"to allow it again or start a new run with --new-run")
    history.append({"number": len(history) + 1, "started_utc": utc_now(), "ended_utc": None, "pid": os.getpid(),
                    "host": socket.gethostname(), "outcome": "running", "error": None})
    atomic.write_json(run_dir / ATTEMPTS_FILE, history)
    return Attempt(run_dir, history)
