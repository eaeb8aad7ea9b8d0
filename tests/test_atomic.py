"""Atomic writes: a reader sees the old file or the new one, never half of either, and a
write that cannot happen is an EnvironmentProblem (exit 5) naming the file.

The failures are real ones: a file-size limit (what a full disk does to a write, without
needing root to mount a tiny filesystem), a parent that is a regular file, and sysfs, which
refuses new files even to root (tests here run as root, so chmod would not stop a write).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli_tuner import atomic
from cli_tuner.errors import EXIT_ENVIRONMENT, EnvironmentProblem
from conftest import REPO

SYSFS = Path("/sys")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_write_text_creates_parents_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "run" / "reports" / "report.txt"
    assert atomic.write_text(target, "hello\n") == target
    assert target.read_text() == "hello\n"
    assert leftovers(target.parent) == []


def test_write_json_round_trips_and_ends_with_a_newline(tmp_path):
    record = {"status": "running", "steps": {"planned": 5, "completed": None}, "path": tmp_path}
    text = atomic.write_json(tmp_path / "provenance.json", record).read_text()
    assert text.endswith("}\n")
    assert json.loads(text) == {"status": "running", "steps": {"planned": 5, "completed": None}, "path": str(tmp_path)}


def test_replacing_a_file_swaps_it_whole(tmp_path):
    target = atomic.write_text(tmp_path / "resolved_config.yaml", "old: 1\n")
    atomic.write_text(target, "new: 2\n")
    assert target.read_text() == "new: 2\n"
    assert leftovers(tmp_path) == []


def test_written_files_get_the_usual_permissions_not_the_temporary_files_0600(tmp_path):
    """A root container writes provenance and manifests that the host user must be able to read."""
    umask = os.umask(0o022)
    try:
        target = atomic.write_json(tmp_path / "provenance.json", {"status": "succeeded"})
    finally:
        os.umask(umask)
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_a_failing_encode_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    target = atomic.write_text(tmp_path / "report.txt", "complete old report\n")
    with pytest.raises(UnicodeEncodeError):
        atomic.write_text(target, "half a report \udcff")  # a lone surrogate cannot be UTF-8
    assert target.read_text() == "complete old report\n"
    assert leftovers(tmp_path) == []


FULL_DISK_SCRIPT = """
import resource, signal, sys
from cli_tuner import atomic
from cli_tuner.errors import EnvironmentProblem
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
try:
    atomic.write_text(sys.argv[1], "x" * 100_000)
except EnvironmentProblem as exc:
    print(exc.message)
    sys.exit(exc.exit_code)
"""


def test_a_write_that_runs_out_of_space_keeps_the_old_file(tmp_path):
    target = atomic.write_json(tmp_path / "provenance.json", {"status": "running"})
    before = target.read_bytes()
    result = subprocess.run([sys.executable, "-c", FULL_DISK_SCRIPT, str(target)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_ENVIRONMENT, result.stderr
    assert result.stdout.strip() == (f"cannot write {target}: File too large; free space or permissions on "
                                     f"{tmp_path} need fixing")
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_a_parent_that_is_a_file_is_an_environment_problem(tmp_path):
    blocker = tmp_path / "outputs"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(EnvironmentProblem) as caught:
        atomic.write_text(blocker / "run" / "provenance.json", "{}")
    assert caught.value.message.startswith(f"cannot write {blocker / 'run' / 'provenance.json'}: Not a directory; ")
    assert caught.value.exit_code == EXIT_ENVIRONMENT


@pytest.mark.skipif(not SYSFS.is_dir(), reason="needs Linux sysfs, which refuses new files even to root")
def test_a_read_only_folder_is_an_environment_problem():
    target = SYSFS / "cli-tuner-test.json"
    with pytest.raises(EnvironmentProblem) as caught:
        atomic.write_json(target, {"status": "running"})
    assert re.match(rf"cannot write {target}: (Operation not permitted|Permission denied); make /sys writable",
                    caught.value.message), caught.value.message
    assert not target.exists()


# Files that legitimately bypass cli_tuner.atomic, and why.
NOT_ATOMIC_ON_PURPOSE = {
    ("training/pipeline.py", "open(log_path, \"a\""): "train.log is a stream appended while training runs",
    ("shell/syntax.py", "path.write_text(commands[index]"): "scratch scripts in a TemporaryDirectory",
    ("evaluation/fixture.py", "tarfile.open(fileobj=buffer"): "an in-memory archive (BytesIO), not a file",
    ("evaluation/fixture.py", "path.write_bytes(entry.content)"): "the sandbox's scratch fixture tree, rebuilt from its seed",
    ("evaluation/sandbox.py", "made[name].write_text("): "the sandbox's passwd and group, scratch files of one run",
    **{("evaluation/run_bounds.py", f"{control}\").write_text("): "a cgroup control file: the kernel's interface, "
       "written in place (it cannot be renamed over)"
       for control in ("cgroup.subtree_control", "pids.max", "memory.max", "memory.swap.max", "memory.limit_in_bytes",
                       "memory.memsw.limit_in_bytes")},
}
WRITE_CALL = re.compile(r"(?<!atomic)\.write_(text|bytes|json)\(|json\.dump\(|yaml\.(safe_)?dump\(\w+,\s*\w+\s*[,)]|"
                        r"open\([^)]*[\"'][wax]b?\+?[\"']")


def test_every_file_the_job_writes_goes_through_atomic():
    offenders = []
    for source in sorted((REPO / "cli_tuner").rglob("*.py")):
        name = source.relative_to(REPO / "cli_tuner").as_posix()
        if name == "atomic.py":
            continue
        for number, line in enumerate(source.read_text().splitlines(), start=1):
            if line.lstrip().startswith("#") or not WRITE_CALL.search(line):
                continue
            if any(name == allowed and snippet in line for allowed, snippet in NOT_ATOMIC_ON_PURPOSE):
                continue
            offenders.append(f"{name}:{number}: {line.strip()}")
    assert offenders == [], "write these through cli_tuner.atomic (or list the reason here):\n" + "\n".join(offenders)


# ------------------------------------------------------------------ whole folders

def test_folder_replaces_the_old_folder_only_when_filled(tmp_path):
    target = tmp_path / "phase2-final"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic.folder(target) as staging:
        (staging / "new.txt").write_text("new")
        assert sorted(p.name for p in target.iterdir()) == ["old.txt"]  # untouched while filling
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert leftovers(tmp_path) == []


def test_folder_failing_midway_keeps_the_old_folder_and_names_the_os_error(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("{}")
    with pytest.raises(EnvironmentProblem) as caught:
        with atomic.folder(target) as staging:
            (staging / "half").write_text("x")
            raise OSError(27, "File too large")
    assert caught.value.exit_code == EXIT_ENVIRONMENT
    assert caught.value.message == f"cannot write {target}: File too large; free space or permissions on {tmp_path} need fixing"
    assert sorted(p.name for p in target.iterdir()) == ["config.json"] and leftovers(tmp_path) == []


def test_folder_passes_other_errors_through_and_cleans_up(tmp_path):
    with pytest.raises(ValueError):
        with atomic.folder(tmp_path / "out"):
            raise ValueError("a bug, not the disk")
    assert list(tmp_path.iterdir()) == []
