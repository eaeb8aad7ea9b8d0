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
# set the run's rlimits (address space in KiB, file size in 512-byte blocks as POSIX sh counts them, CPU
# seconds; no core files), join the groups given before `--`, then run the rest: one small shell in place
# of prlimit, so a run costs no extra exec
JOIN = ('ulimit -v "$1" && ulimit -f "$2" && ulimit -t "$3" && ulimit -c 0 || exit 93; shift 3; '
        'while [ "$1" != -- ]; do echo $$ > "$1" || exit 92; shift; done; shift; exec "$@"')
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
        self.bases = _bases(self.job)
        # cgroup v1 lets the run's own user join a group whose cgroup.procs it owns; v2 needs write access to
        # the common ancestor as well, so there the join runs as this process and `setpriv` drops to run_as
        self.join_as_root = self.bases is not None and run_as is not None and self.bases["pids"] == self.bases["memory"]
        if self.join_as_root and setpriv is None:
            _remove_group(self.bases["pids"])
            self.bases = None
        self.setpriv = setpriv
        self.can_mount = _can_mount(folder)
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._free: list[list[Path]] = []  # emptied groups of finished runs: made once, used by one run at a time
        self._points: list[dict[str, Path]] = []  # mount points of finished runs, unmounted

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
        """(the argv prefix that sets a run's rlimits and puts it in its groups, the folders to bind as $HOME
        and /tmp, clean-up). Without groups the prefix is empty: the caller uses prlimit."""
        with self._lock:
            number = next(self._counter)
        made: list[Path] = []
        mounts: dict[str, Path] = {}
        prefix: list[str] = []
        try:
            if self.bases is not None:
                with self._lock:
                    reused = self._free.pop() if self._free else None
                made = reused or []
                procs = []
                for controller, base in self.bases.items():
                    group = base / f"run-{number}"
                    if reused is not None:
                        group = next(g for g in reused if g.parent == base)
                    elif group not in made:
                        group.mkdir()
                        made.append(group)
                    if controller == "pids":
                        (group / "pids.max").write_text(str(limits.processes))
                    else:
                        _limit_memory(group, limits.memory_bytes)
                    procs.append(str(group / "cgroup.procs"))
                    if self.run_as is not None and not self.join_as_root:
                        os.chown(group / "cgroup.procs", self.run_as, self.run_as)
                prefix = ["/bin/sh", "-c", JOIN, "join", str(limits.memory_bytes >> 10), str(limits.file_bytes >> 9),
                          str(limits.cpu_seconds), *dict.fromkeys(procs), "--"]
                if self.join_as_root:
                    prefix += [self.setpriv, f"--reuid={self.run_as}", f"--regid={self.run_as}", "--clear-groups", "--"]
            if self.can_mount:
                with self._lock:
                    points = self._points.pop() if self._points else None
                for name, size, inodes in (("home", limits.work_bytes, limits.work_inodes),
                                           ("tmp", limits.tmp_bytes, limits.tmp_inodes)):
                    target = self.folder / "runs" / str(number) / name if points is None else points[name]
                    target.mkdir(parents=True, exist_ok=True)
                    owner = self.run_as if self.run_as is not None else os.geteuid()
                    _mount_tmpfs(target, f"size={size},nr_inodes={inodes},mode=0755,uid={owner},gid={owner}")
                    mounts[name] = target
        except OSError:
            _cleanup(made, mounts)
            raise
        return prefix, mounts, lambda: self._finish(made, mounts)

    def _finish(self, groups: list[Path], mounts: dict[str, Path]) -> None:
        """After a run: its mounts go; its groups, once empty, serve the next run."""
        for target in mounts.values():
            _unmount(target)
        if mounts:
            with self._lock:
                self._points.append(mounts)
        if groups and all(_empty(group) for group in groups):
            with self._lock:
                self._free.append(groups)
        else:
            _cleanup(groups, {})


def _empty(group: Path) -> bool:
    """Kill what still runs in a group and wait (up to a second) until it is gone."""
    for attempt in range(50):
        try:
            pids = (group / "cgroup.procs").read_text().split()
        except OSError:
            return False
        if not pids:
            return True
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)
    return False


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
