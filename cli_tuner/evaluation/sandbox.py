"""Running a model's command where it can do no harm: bubblewrap, no network, a fresh fixture copy.

Each run gets its own mount, PID, network, IPC, UTS, cgroup and user namespaces (`bwrap
--unshare-all`), an empty read-only root with only the system folders (/usr, /etc and the /bin,
/lib links) bound read-only, and two tmpfs capped in size (and, where this job may mount, in
inodes): the working folder ($HOME, a fresh copy of the fixture tree) and /tmp. Standard output
goes to a third, capped at the output size, so `yes` stops when it is full; /dev has only null,
zero, random and friends. Limits: wall time (`timeout`, and a host-side deadline that kills the
whole process group), CPU time, address space and file size (rlimits); processes and memory of
the whole run by its own pids and memory cgroup (`run_bounds.py`), so a flood in one run cannot
starve another. When this process is root the sandbox runs as `nobody`'s uid, named `user`
inside (`whoami`, `ls -l`, $USER, $LOGNAME and $HOME agree); where no cgroup can be had, RLIMIT_NPROC of `nobody` bounds the processes
of all runs together. `--die-with-parent` ends it if this process dies.

What it does not stop: a fork bomb where the process count is not bounded -- without cgroups, when
`nobody` cannot start bubblewrap and a root job falls back to running it as root, or when the job
is an ordinary user's (its RLIMIT_NPROC would count all that user's processes, so none is set;
the probe's line says which mode runs). Commands the risk rules call dangerous are never given to
it (`execution.py` refuses them first).

After the command, the same sandbox lists the resulting tree (kind, mode, size, time, target)
and the md5 of every file changed since the copy (its ctime is newer than a time the runner keeps
in a variable, out of the command's reach; no command can set a ctime), so the caller compares
trees without the copy leaving the sandbox; unchanged files take the master copy's hash, computed
once. What the command made unreadable is opened first and reported with the modes it set.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import fixture
from .run_bounds import RunBounds, remove_stale_masters  # noqa: F401 (remove_stale_masters: part of this module's API)

NOBODY = 65534
HOME = "/home/user"
SETUP_FAILED = 90  # the runner's exit status when the fixture could not be copied in
TIMED_OUT = 124    # `timeout`'s exit status
KILLED = 137       # `timeout -k`'s status when the command ignored SIGTERM and took SIGKILL
SNAPSHOT_CAP = 8 << 20
MARK = b"\0--cli-tuner-hashes--\0"
RELISTED = b"\0--cli-tuner-relisted--\0"
LISTING = b"\0--cli-tuner-listing--\0"
# The change mark is a time kept in the runner's own variable (`find -newerct @TIME`), not a file the
# command could touch. After the command, what it left running is killed and the tree is listed; where
# the command made something unreadable (a folder without r or x, a file without r), that is opened,
# pass by pass, and the tree listed again, with the modes it had reported first to replace the opened ones.
RUNNER = r"""
cp -a /fixture/. "$HOME"/ 2>/dev/null || exit 90
cd "$HOME" || exit 90
mark=$EPOCHREALTIME; sleep 0.01
started=$EPOCHREALTIME
timeout -k 1 "$2" bash -c "$1" </dev/null >/out/stdout 2>/err/stderr
status=$?
ended=$EPOCHREALTIME
kill -9 -1 2>/dev/null  # what it left running, in this PID namespace only: nothing writes while we read
cd / && chmod u+rwx "$HOME" 2>/dev/null; cd "$HOME" || exit 91
locked='( ( -type d ! -perm -u=rx ) -o ( ! -type d ! -type l ! -perm -u=r ) )'
printf '%d %s ' "$status" "$(( (${ended/./} - ${started/./}) / 1000 ))"; find /out/stdout /err/stderr -printf '%s '; echo
cat /out/stdout /err/stderr
{ find . -mindepth 1 \( $locked -fprintf /err/locked '%m %P\0' -o -true \) -printf '%y %m %s %T@ %P\0%l\0' 2>/dev/null
  if [ -s /err/locked ]; then
    for pass in 1 2 3 4 5 6 7 8 9 10; do
      cat /err/locked >> /err/modes
      find . -mindepth 1 $locked -exec chmod u+rx {} + 2>/dev/null
      find . -mindepth 1 $locked -fprintf /err/locked '%m %P\0' 2>/dev/null
      [ -s /err/locked ] || break
    done
    printf '\0--cli-tuner-relisted--\0'; cat /err/modes; printf '\0--cli-tuner-listing--\0'
    find . -mindepth 1 -printf '%y %m %s %T@ %P\0%l\0' 2>/dev/null
  fi
  printf '\0--cli-tuner-hashes--\0'
  find . -type f -readable -newerct "@$mark" -exec md5sum -z -- {} + 2>/dev/null
  printf '\0--cli-tuner-end--\0'; } | head -c SNAPSHOT_CAP
""".replace("SNAPSHOT_CAP", str(SNAPSHOT_CAP))


@dataclass(frozen=True)
class Limits:
    """Bounds on one command. `seconds` is the `cli_tuner:` key `sandbox_seconds`."""

    seconds: float = 5.0
    memory_bytes: int = 2 << 30    # all of a run's processes together (its memory cgroup); RLIMIT_AS of each
    file_bytes: int = 32 << 20     # RLIMIT_FSIZE: the largest file one write may make
    work_bytes: int = 64 << 20     # the working folder's tmpfs (the fixture is about 4 MB)
    work_inodes: int = 16384       # files and folders it may hold (the fixture has about 300)
    tmp_bytes: int = 16 << 20      # /tmp's tmpfs
    tmp_inodes: int = 4096
    output_bytes: int = 1 << 20    # standard output kept; the tmpfs it goes to is this size
    processes: int = 2048          # a run's pids cgroup (without one: RLIMIT_NPROC of the sandbox user, shared)

    @property
    def cpu_seconds(self) -> int:
        return int(self.seconds * 2) + 1


@dataclass
class Outcome:
    """What one command did."""

    status: int | None                      # exit status; None when the host had to kill it
    stdout: bytes = b""
    stderr: bytes = b""
    tree: dict[str, tuple] | None = None    # path -> (kind, mode, size, mtime, md5 or link target)
    timed_out: bool = False
    output_capped: bool = False
    tree_capped: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str          # one line: why it cannot run, or how it runs
    run_as: int | None   # the uid it runs as (nobody when this process is root), None: this process's


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), f"/{name}"]
        elif path.is_dir():
            args += ["--ro-bind", str(path), f"/{name}"]
    return args


def bwrap_args(master: Path, limits: Limits, bwrap: str, mounts: dict[str, Path] | None = None,
               identity: dict[str, Path] | None = None) -> list[str]:
    """`mounts`: host tmpfs with an inode limit for $HOME and /tmp ("home", "tmp"); else bwrap's own.
    `identity`: the passwd and group files that name the sandbox's user (identity_files)."""
    folders = ["--bind", str(mounts["home"]), HOME, "--bind", str(mounts["tmp"]), "/tmp"] if mounts else [
        "--size", str(limits.work_bytes), "--tmpfs", HOME, "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
    for name, path in (identity or {}).items():
        folders += ["--ro-bind", str(path), f"/etc/{name}"]
    return [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--hostname", "sandbox", *_system_binds(), "--proc", "/proc", "--dev", "/dev",
            "--ro-bind", str(master), "/fixture", *folders,
            "--size", str(limits.output_bytes), "--tmpfs", "/out",
            "--size", str(64 << 10), "--tmpfs", "/err",
            "--remount-ro", "/", "--remount-ro", "/dev", "--chdir", HOME]


USER = "user"  # the sandbox's user by every name: whoami, id -un, ls -l, $USER, $LOGNAME, the last part of $HOME


def identity_files(folder: Path, uid: int) -> dict[str, Path]:
    """/etc/passwd and /etc/group for the sandbox: the host's, with the uid it runs as named USER, so
    `whoami` agrees with $USER and $HOME and `find -user "$USER"` finds the files it owns."""
    made = {}
    for name, line in (("passwd", f"{USER}:x:{uid}:{uid}:{USER}:{HOME}:/bin/bash"), ("group", f"{USER}:x:{uid}:")):
        try:
            host = Path("/etc", name).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            host = []
        kept = [entry for entry in host if entry.split(":")[2:3] != [str(uid)] and entry.split(":")[:1] != [USER]]
        made[name] = folder / name
        made[name].write_text("\n".join([line, *kept]) + "\n", encoding="utf-8")
        made[name].chmod(0o644)
    return made


def _environment() -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": HOME, "USER": USER,
            "LOGNAME": USER, "SHELL": "/bin/bash", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC",
            "TERM": "dumb"}


def _prlimit(limits: Limits, run_as: int | None) -> list[str]:
    """The rlimits where no cgroup can be had (RunBounds' prefix sets them otherwise, without RLIMIT_NPROC:
    the run's pids group bounds it on its own, while RLIMIT_NPROC is one budget for the whole user)."""
    args = ["prlimit", f"--as={limits.memory_bytes}", f"--fsize={limits.file_bytes}",
            f"--cpu={limits.cpu_seconds}", "--core=0"]
    if run_as is not None:
        args.append(f"--nproc={limits.processes}")
    return args + ["--"]


class Sandbox:
    """A fixture master copy and the settings to run commands on fresh copies of it.

    Use as a context manager: the master copy lives in a temporary folder removed on exit."""

    def __init__(self, limits: Limits | None = None, seed: int = fixture.DEFAULT_SEED,
                 availability: Availability | None = None):
        self.limits = limits or Limits()
        self.seed = seed
        self.availability = availability or probe()
        self._folder: Path | None = None
        self.master: Path | None = None
        self.master_tree: dict[str, tuple] | None = None
        self._master_hashes: dict[str, str] = {}
        self.bounds: RunBounds | None = None
        self._identity: dict[str, Path] | None = None

    def __enter__(self) -> Sandbox:
        if not self.availability.ok:
            raise RuntimeError(self.availability.reason)
        remove_stale_masters()  # a killed job's: its process id names its folder
        self._folder = Path(tempfile.mkdtemp(prefix=f"cli-tuner-fixture-{os.getpid()}-"))
        self._folder.chmod(0o755)  # `nobody` must reach the master to bind it
        self.bounds = RunBounds(self._folder, self.availability.run_as)
        uid = os.getuid() if self.availability.run_as is None else self.availability.run_as
        self._identity = identity_files(self._folder, uid)
        self.master = fixture.build(self._folder / "master", self.seed)
        if self.availability.run_as is not None:
            for path in [self.master, *self.master.rglob("*")]:
                os.lchown(path, self.availability.run_as, self.availability.run_as)
        self._master_hashes = {str(path.relative_to(self.master)): hashlib.md5(path.read_bytes()).hexdigest()
                               for path in self.master.rglob("*") if path.is_file() and not path.is_symlink()}
        listed = self.run("true")
        if listed.tree is None or listed.status != 0:
            raise RuntimeError("the sandbox could not copy or list the fixture tree: " + "; ".join(listed.notes))
        self.master_tree = listed.tree
        return self

    def __exit__(self, *exc) -> None:
        if self.bounds is not None:
            self.bounds.close()
        if self._folder is not None:
            for path in [self._folder, *self._folder.rglob("*")]:
                if path.is_dir() and not path.is_symlink():
                    path.chmod(0o755)  # read-only folders of the fixture would stop rmtree
            shutil.rmtree(self._folder, ignore_errors=True)

    def run(self, command: str) -> Outcome:
        """Run one command on a fresh copy of the fixture. Never call it with a command the risk
        rules call dangerous."""
        assert self.master is not None, "use Sandbox as a context manager"
        limits = self.limits
        if "\0" in command:
            return Outcome(None, notes=["the command holds a NUL byte, which no shell can be given"])
        try:
            prefix, mounts, cleanup = self.bounds.prepare(limits)
        except OSError as exc:
            return Outcome(None, notes=[f"the sandbox's bounds could not be set up: {exc}"])
        try:
            return self._run(command, prefix, mounts)
        finally:
            cleanup()

    def _run(self, command: str, prefix: list[str], mounts: dict[str, Path]) -> Outcome:
        limits, run_as = self.limits, self.availability.run_as
        argv = [*(prefix or _prlimit(limits, run_as)),
                *bwrap_args(self.master, limits, shutil.which("bwrap") or "bwrap", mounts, self._identity),
                "bash", "-c", RUNNER, "runner", command, f"{limits.seconds:g}"]
        started = time.monotonic()
        try:  # where the join needs this process's rights, the prefix drops to run_as itself
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       env=_environment(), start_new_session=True,
                                       **(_as_user(run_as) if not self.bounds.join_as_root else {}))
        except OSError as exc:
            return Outcome(None, notes=[f"the sandbox could not start: {exc}"])
        try:
            raw, err = process.communicate(timeout=limits.seconds + 10)  # copying and listing the tree take time too
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raw, err = process.communicate()
            return Outcome(None, timed_out=True, seconds=time.monotonic() - started,
                           notes=["killed by the host's deadline"])
        finally:
            _kill_group(process)  # anything left in its session
        try:
            outcome = parse_output(raw, limits, self._master_hashes)
        except ValueError as exc:
            outcome = Outcome(None, notes=[f"unreadable sandbox output ({exc})"])
        outcome.seconds = time.monotonic() - started
        if process.returncode == SETUP_FAILED:
            outcome.notes.append("the fixture could not be copied into the sandbox: " + err.decode(errors="replace")[:200])
        elif outcome.status is None:
            outcome.notes.append("the sandbox failed: " + err.decode(errors="replace").strip()[:200])
        return outcome


def _as_user(uid: int | None) -> dict:
    return {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass


def parse_output(raw: bytes, limits: Limits, unchanged: dict[str, str]) -> Outcome:
    """The runner's output as an Outcome; files the command left unchanged take their hash from `unchanged`."""
    header, _, rest = raw.partition(b"\n")
    try:
        status, ran_ms, out_len, err_len = (int(x) for x in header.split())
    except ValueError:
        return Outcome(None)
    stdout, stderr, rest = rest[:out_len], rest[out_len:out_len + err_len], rest[out_len + err_len:]
    listing, _, hashes = rest.partition(MARK)
    locked = b""
    if RELISTED in listing:  # the listing after opening what the command locked, and the modes it had set
        locked, _, listing = listing.partition(RELISTED)[2].partition(LISTING)
    complete = hashes.endswith(b"\0--cli-tuner-end--\0")
    hashes = hashes.removesuffix(b"\0--cli-tuner-end--\0")
    modes: dict[str, int] = {}
    for line in locked.split(b"\0"):
        if b" " in line:
            mode, path = line.split(b" ", 1)
            modes.setdefault(path.decode(errors="surrogateescape"), int(mode, 8))
    tree: dict[str, tuple] = {}
    fields = listing.split(b"\0")
    for head, target in zip(fields[0::2], fields[1::2]):
        kind, mode, size, mtime, path = head.split(b" ", 4)
        name = path.decode(errors="surrogateescape")
        tree[name] = [kind.decode(), modes.get(name, int(mode, 8)), int(size) if kind == b"f" else 0, mtime.decode(),
                      target.decode(errors="surrogateescape") if kind == b"l" else None]
    for line in hashes.split(b"\0"):
        if len(line) > 34:
            digest, path = line[:32], line[34:].decode(errors="surrogateescape")
            path = path[2:] if path.startswith("./") else path
            if path in tree:
                tree[path][4] = digest.decode()
    for path, value in tree.items():
        if value[0] == "f" and value[4] is None:
            value[4] = unchanged.get(path)
    # a command that ignores SIGTERM ends with `timeout -k`'s SIGKILL: 137 after the whole limit
    timed_out = status == TIMED_OUT or status == KILLED and ran_ms >= limits.seconds * 1000
    return Outcome(status, stdout, stderr, {path: tuple(value) for path, value in tree.items()},
                   timed_out=timed_out, output_capped=out_len >= limits.output_bytes,
                   tree_capped=not complete)


_PROBED: dict[bool, Availability] = {}


def probe(refresh: bool = False) -> Availability:
    """Whether bubblewrap can start here, once per process; the reason is one line for the report."""
    root = os.geteuid() == 0
    if root in _PROBED and not refresh:
        return _PROBED[root]
    _PROBED[root] = found = _probe(root)
    return found


def _probe(root: bool) -> Availability:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Availability(False, "no sandbox: bubblewrap (bwrap) is not installed (apt-get install bubblewrap); "
                                   "execution accuracy not scored", None)
    last = ""
    with tempfile.TemporaryDirectory(prefix="cli-tuner-probe-") as folder:
        Path(folder).chmod(0o755)
        for run_as in ((NOBODY, None) if root else (None,)):
            argv = [*_prlimit(Limits(), run_as), *bwrap_args(Path(folder), Limits(), bwrap), "true"]
            try:
                done = subprocess.run(argv, capture_output=True, timeout=30, env=_environment(), **_as_user(run_as))
            except (OSError, subprocess.TimeoutExpired) as exc:
                last = str(exc)
                continue
            if done.returncode == 0:
                how = "as nobody, process count bounded" if run_as else \
                      ("as root: no process-count bound" if root else "as this user")
                return Availability(True, f"sandbox: bubblewrap {how}", run_as)
            last = (done.stderr.decode(errors="replace").strip().splitlines() or [f"exit {done.returncode}"])[-1]
    return Availability(False, f"no sandbox: bubblewrap cannot start here ({last}); execution accuracy not scored", None)
