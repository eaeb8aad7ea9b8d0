"""One training process per run folder: an exclusive `flock` on `run.lock`, held while it trains.

Two starts against one folder (a RunPod restart while a terminal job still runs, two terminals)
would both write checkpoints into it, and the second's resume could set aside a checkpoint the
first is still writing. The kernel drops a `flock` when its holder dies, so a lock left by a
killed process is free again by itself; the file also names the holder (pid, host, start time)
so a refusal can say who holds it. On a file system without `flock` the recorded pid decides.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from pathlib import Path

from .. import console
from ..errors import RunFolderBusy
from ..paths import LOCK_FILE
from .provenance import utc_now

NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    except (TypeError, ValueError):
        return False
    return True


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode("utf-8", errors="replace") or "{}")
    except (OSError, ValueError):
        return {}


def describe(holder: dict) -> str:
    pid, host = holder.get("pid"), holder.get("host")
    if host == socket.gethostname():
        state = "running" if _pid_alive(pid) else "exited; a process it started, such as the trainer, still holds the lock"
    else:
        state = "on another machine"
    return f"pid {pid} on {host} since {holder.get('started_utc')} ({state})"


class RunLock:
    """Held until `release()`; `fileno()` can be passed to a child so the lock lives as long as it."""

    def __init__(self, path: Path, fd: int, took_over: dict | None):
        self.path, self._fd, self.took_over = path, fd, took_over

    def fileno(self) -> int:
        return self._fd

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            os.ftruncate(self._fd, 0)  # an empty file: nobody holds it (the file stays, others may wait on it)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = -1


def acquire(run_dir: Path, say=console.say) -> RunLock:
    """Lock the run folder or raise RunFolderBusy naming the holder."""
    path = Path(run_dir) / LOCK_FILE
    # Not atomic.write_*: a rename would swap the inode under the lock; the holder is rewritten in place.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        previous = _read_holder(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderBusy(f"{run_dir} is in use by {describe(previous)}; wait for that run to end or stop it "
                                f"(pass --run-id or --new-run to train elsewhere)") from None
        except OSError as exc:
            if exc.errno not in NO_FLOCK:
                raise
            # No flock here (some network file systems): trust the recorded pid on this host.
            if previous.get("pid") and previous.get("host") == socket.gethostname() and \
                    previous.get("pid") != os.getpid() and _pid_alive(previous["pid"]):
                raise RunFolderBusy(f"{run_dir} is in use by {describe(previous)}; wait for that run to end or stop it "
                                    f"(pass --run-id or --new-run to train elsewhere)") from None
        took_over = previous if previous.get("pid") else None
        if took_over:
            say(f"run folder lock: taking over from pid {took_over.get('pid')} on {took_over.get('host')} "
                f"(since {took_over.get('started_utc')}), which no longer holds it")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started_utc": utc_now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return RunLock(path, fd, took_over)
