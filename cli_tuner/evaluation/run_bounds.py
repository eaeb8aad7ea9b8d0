"""What keeps one sandboxed run from changing another's verdict: its own process and memory budget,
its own inode-bounded working folders, and no leftovers from a job that was killed.

- **Processes and memory**: each run gets its own control group with `pids.max` (the run's
  `Limits.processes`) and a memory limit over all its processes together (`Limits.memory_bytes`,
  swap included where the kernel accounts it), in cgroup v1 (`/sys/fs/cgroup/pids`, `.../memory`)
  or v2 (a delegated subtree of this process's own group). The run joins its groups before it
  drops to its user (`setpriv`), so no process of it starts outside them. Where no group can be
  made (no cgroup file system, no right to write it), the runs fall back to per-uid
  `RLIMIT_NPROC`, one budget shared by every run of the job, and to `RLIMIT_AS` per process: total
  memory is then bounded only by that times the process count. The probe's line says which holds.
- **Inodes**: where this process may mount (root with CAP_SYS_ADMIN), the working folder and /tmp
  are tmpfs mounted here with `size=` and `nr_inodes=` and bound into the sandbox; elsewhere they
  are bubblewrap's tmpfs, bounded in size only (each inode's kernel memory still counts against the
  run's memory group where there is one).
- **Leftovers**: a job's fixture folder is named after its process id; at the next start, folders,
  mounts and groups of jobs that no longer run and belonged to this user are removed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import os
import re
import shutil
import threading
import time
from pathlib import Path

FOLDER_PREFIX = "cli-tuner-fixture-"
GROUP_PREFIX = "cli-tuner-"
CGROUP_ROOT = Path("/sys/fs/cgroup")
# join the groups given before `--`, then run the rest (as root, so that the join is allowed; the rest drops)
JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 92; shift; done; shift; exec "$@"'
MS_NOSUID, MS_NODEV, MNT_DETACH = 2, 4, 2


# ------------------------------------------------------------------ control groups

def _own_groups() -> dict[str, str]:
    """controller (or "" for v2) -> this process's group path."""
    found = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                found[controller] = path
    except OSError:
        pass
    return found


def _bases(job: str) -> dict[str, Path] | None:
    """Where this job makes its run groups: {"pids": dir, "memory": dir}, or None."""
    own = _own_groups()
    bases: dict[str, Path] = {}
    for controller in ("pids", "memory"):  # cgroup v1: one hierarchy per controller
        mount = CGROUP_ROOT / controller
        if controller in own and (mount / "cgroup.procs").exists():
            bases[controller] = mount / own[controller].lstrip("/") / job
    if len(bases) < 2 and "" in own and (CGROUP_ROOT / "cgroup.controllers").exists():
        parent = CGROUP_ROOT / own[""].lstrip("/")  # cgroup v2: a subtree delegated to this process's group
        enabled = (parent / "cgroup.subtree_control").read_text().split() if (parent / "cgroup.subtree_control").exists() else []
        if "pids" in enabled and "memory" in enabled:
            bases = {"pids": parent / job, "memory": parent / job}
    if set(bases) != {"pids", "memory"}:
        return None
    try:
        for base in set(bases.values()):
            base.mkdir(exist_ok=True)
            if bases["pids"] == bases["memory"]:
                (base / "cgroup.subtree_control").write_text("+pids +memory")
    except OSError:
        for base in set(bases.values()):
            _remove_group(base)
        return None
    return bases


def _remove_group(path: Path) -> None:
    """Remove a group and the groups below it, killing what still runs in them."""
    if not path.is_dir():
        return
    for child in [p for p in path.iterdir() if p.is_dir()]:
        _remove_group(child)
    for attempt in range(50):
        try:
            for pid in (path / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, PermissionError):
                    pass
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)


class RunBounds:
    """The bounds of one job's runs. `prepare(run_as, limits)` gives a run's argv prefix and its clean-up."""

    def __init__(self, folder: Path, run_as: int | None) -> None:
        self.folder = folder
        self.run_as = run_as
        self.job = f"{GROUP_PREFIX}{os.getpid()}-{folder.name[-8:]}"
        setpriv = shutil.which("setpriv")
        self.bases = _bases(self.job) if setpriv or run_as is None else None
        self.setpriv = setpriv
        self.can_mount = _can_mount(folder)
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Remove this job's groups (each run's own are removed after it)."""
        for base in set((self.bases or {}).values()):
            _remove_group(base)

    @property
    def groups(self) -> bool:
        return self.bases is not None

    def describe(self) -> str:
        processes = "per-run pids and memory cgroups" if self.groups else \
            "no cgroups: process count shared by all runs, memory bounded per process"
        inodes = "tmpfs with an inode limit" if self.can_mount else "tmpfs bounded in size only"
        return f"{processes}; {inodes}"

    def prepare(self, limits) -> tuple[list[str], dict[str, Path], callable]:
        """(the argv prefix that puts a run in its groups, the folders to bind as $HOME and /tmp, clean-up)."""
        with self._lock:
            number = next(self._counter)
        made: list[Path] = []
        mounts: dict[str, Path] = {}
        prefix: list[str] = []
        try:
            if self.bases is not None:
                procs = []
                for controller, base in self.bases.items():
                    group = base / f"run-{number}"
                    if group not in made:
                        group.mkdir()
                        made.append(group)
                    if controller == "pids":
                        (group / "pids.max").write_text(str(limits.processes))
                    else:
                        _limit_memory(group, limits.memory_bytes)
                    procs.append(str(group / "cgroup.procs"))
                prefix = ["/bin/sh", "-c", JOIN, "join", *dict.fromkeys(procs), "--"]
                if self.run_as is not None:
                    prefix += [self.setpriv, f"--reuid={self.run_as}", f"--regid={self.run_as}", "--clear-groups", "--"]
            if self.can_mount:
                for name, size, inodes in (("home", limits.work_bytes, limits.work_inodes),
                                           ("tmp", limits.tmp_bytes, limits.tmp_inodes)):
                    target = self.folder / "runs" / str(number) / name
                    target.mkdir(parents=True)
                    owner = self.run_as if self.run_as is not None else os.geteuid()
                    _mount_tmpfs(target, f"size={size},nr_inodes={inodes},mode=0755,uid={owner},gid={owner}")
                    mounts[name] = target
        except OSError:
            _cleanup(made, mounts)
            raise
        return prefix, mounts, lambda: _cleanup(made, mounts)


def _limit_memory(group: Path, limit: int) -> None:
    if (group / "memory.max").exists():  # v2
        (group / "memory.max").write_text(str(limit))
        if (group / "memory.swap.max").exists():
            (group / "memory.swap.max").write_text("0")
        return
    (group / "memory.limit_in_bytes").write_text(str(limit))
    if (group / "memory.memsw.limit_in_bytes").exists():
        (group / "memory.memsw.limit_in_bytes").write_text(str(limit))


def _cleanup(groups: list[Path], mounts: dict[str, Path]) -> None:
    for group in groups:
        _remove_group(group)
    for target in mounts.values():
        _unmount(target)
        shutil.rmtree(target.parent, ignore_errors=True)


# ------------------------------------------------------------------ tmpfs with an inode limit

_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _LIBC


def _mount_tmpfs(target: Path, options: str) -> None:
    if _libc().mount(b"tmpfs", str(target).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode()) != 0:
        raise OSError(ctypes.get_errno(), f"mount tmpfs on {target}")


def _unmount(target: Path) -> None:
    _libc().umount2(str(target).encode(), MNT_DETACH)


def _can_mount(folder: Path) -> bool:
    if os.geteuid() != 0:
        return False
    probe = folder / "mount-probe"
    try:
        probe.mkdir()
        _mount_tmpfs(probe, "size=4096,nr_inodes=16")
    except OSError:
        shutil.rmtree(probe, ignore_errors=True)
        return False
    _unmount(probe)
    probe.rmdir()
    return True


# ------------------------------------------------------------------ a killed job's leftovers

def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_masters(temp: str | None = None) -> list[Path]:
    """Remove the fixture folders (with their mounts) and groups of this user's jobs that no longer run."""
    import tempfile

    removed = []
    base = Path(temp or tempfile.gettempdir())
    for folder in base.glob(FOLDER_PREFIX + "*"):
        found = re.match(re.escape(FOLDER_PREFIX) + r"(\d+)-", folder.name)
        try:
            owned = folder.lstat().st_uid == os.geteuid()
        except OSError:
            continue
        if not found or not owned or _running(int(found.group(1))):
            continue
        for target in _mounts_under(folder):
            _unmount(target)
        for path in [folder, *folder.rglob("*")]:
            try:
                if path.is_dir() and not path.is_symlink():
                    path.chmod(0o755)
            except OSError:
                pass
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    for controller, path in _own_groups().items():
        root = CGROUP_ROOT / controller / path.lstrip("/") if controller else CGROUP_ROOT / path.lstrip("/")
        for group in root.glob(GROUP_PREFIX + "*") if root.is_dir() else []:
            found = re.match(re.escape(GROUP_PREFIX) + r"(\d+)-", group.name)
            if found and not _running(int(found.group(1))):
                _remove_group(group)
    return removed


def _mounts_under(folder: Path) -> list[Path]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    prefix = str(folder) + "/"
    targets = [Path(line.split()[1].encode().decode("unicode_escape")) for line in lines if len(line.split()) > 1]
    return sorted((t for t in targets if str(t).startswith(prefix)), key=lambda t: -len(str(t)))
