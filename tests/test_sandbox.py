"""The sandbox holds what a model's command can do, proved first with a canary; the fixture is seeded.

Forms no sandbox can be trusted with (`rm -rf /`, `rm -rf ~`, fork bombs, `dd` to a device) are
never given to a shell here, sandboxed or not: the last tests show the risk rules refuse them
before the sandbox is asked, with a guard that fails the test instead of running anything.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from cli_tuner.evaluation import execution, fixture, sandbox
from cli_tuner.shell import risk

AVAILABLE = sandbox.probe()
needs_sandbox = pytest.mark.skipif(not AVAILABLE.ok, reason=AVAILABLE.reason)
LIMITS = sandbox.Limits(seconds=2.0, work_bytes=32 << 20, output_bytes=256 << 10)


def tree_digest(root: Path) -> str:
    """Paths, kinds, modes, link targets and contents of everything under root."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest.update(f"{path.relative_to(root)}\0{info.st_mode:o}\0{info.st_mtime_ns}\0".encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def box():
    if not AVAILABLE.ok:
        pytest.skip(AVAILABLE.reason)
    with sandbox.Sandbox(LIMITS) as opened:
        yield opened


@pytest.fixture
def canary(tmp_path: Path, box) -> Path:
    """A host folder outside the sandbox, readable by the sandbox's user were it visible."""
    folder = tmp_path / "canary"
    folder.mkdir()
    (folder / "keep.txt").write_text("the canary lives\n")
    tmp_path.chmod(0o755)
    return folder


def attack_canary(box, canary: Path) -> sandbox.Outcome:
    """A prediction that tries to delete, overwrite and fill the canary and the fixture master copy."""
    master = box.master
    return box.run(f"rm -rf {canary} {master}/*; echo gone > {canary}/keep.txt; "
                   f"head -c 1000000 /dev/zero > {canary}/fill; echo x > /fixture/file.txt; "
                   f"ls {canary} {master} || echo hidden")


@needs_sandbox
def test_canary_survives_an_attack(box, canary):
    master_before = tree_digest(box.master)
    outcome = attack_canary(box, canary)
    assert outcome.status == 0 and b"hidden" in outcome.stdout  # it ran, and saw neither folder
    assert (canary / "keep.txt").read_text() == "the canary lives\n"
    assert sorted(p.name for p in canary.iterdir()) == ["keep.txt"]
    assert tree_digest(box.master) == master_before


@pytest.fixture
def proven(box, canary):
    """Containment is proved with the canary before any test below runs its command."""
    before = tree_digest(box.master)
    attack_canary(box, canary)
    assert (canary / "keep.txt").read_text() == "the canary lives\n"
    assert tree_digest(box.master) == before
    yield box
    assert (canary / "keep.txt").read_text() == "the canary lives\n"
    assert tree_digest(box.master) == before


@needs_sandbox
def test_a_write_into_etc_fails_and_the_host_is_untouched(proven):
    target = Path("/etc/cli-tuner-sandbox-test")
    outcome = proven.run(f"echo owned > {target}")
    assert outcome.status != 0 and b"Read-only file system" in outcome.stderr
    assert not target.exists()


@needs_sandbox
def test_sleep_ends_at_the_time_limit(proven):
    started = time.monotonic()
    outcome = proven.run("sleep 100")
    assert outcome.timed_out
    assert time.monotonic() - started < LIMITS.seconds + 5


@needs_sandbox
def test_a_background_sleeper_does_not_outlive_the_sandbox(proven):
    started = time.monotonic()
    outcome = proven.run("(sleep 100 > out.txt &) ; echo started")
    assert outcome.status == 0 and outcome.stdout == b"started\n"
    assert time.monotonic() - started < LIMITS.seconds + 5


@needs_sandbox
def test_yes_stops_at_the_output_cap(proven):
    started = time.monotonic()
    outcome = proven.run("yes")
    assert outcome.output_capped and not outcome.timed_out
    assert len(outcome.stdout) <= LIMITS.output_bytes
    assert time.monotonic() - started < LIMITS.seconds + 5


@needs_sandbox
def test_filling_the_working_folder_stops_at_its_size(proven):
    outcome = proven.run("for i in $(seq 1 40); do head -c 4000000 /dev/zero > fill$i || exit 1; done")
    assert outcome.status == 1 and b"No space left on device" in outcome.stderr
    written = sum(entry[2] for path, entry in outcome.tree.items() if path.startswith("fill"))
    assert 0 < written <= LIMITS.work_bytes


@needs_sandbox
def test_one_file_stops_at_the_file_size_limit(box):
    limits = sandbox.Limits(seconds=2.0, file_bytes=2 << 20)  # the fixture's largest file must still copy
    with sandbox.Sandbox(limits) as small:
        outcome = small.run("head -c 5000000 /dev/zero > new.bin")
    assert outcome.status != 0
    assert outcome.tree["new.bin"][2] == 2 << 20


@needs_sandbox
def test_the_process_count_is_bounded_when_it_runs_as_nobody(proven):
    """A bounded loop (60 short sleepers, never an unbounded one) against a limit of 40 processes."""
    if proven.availability.run_as is None:
        pytest.skip(f"no process-count bound in this mode ({proven.availability.reason})")
    limits = sandbox.Limits(seconds=4.0, processes=40)
    with sandbox.Sandbox(limits, availability=proven.availability) as bounded:
        outcome = bounded.run("for i in $(seq 1 60); do sleep 2 & done; echo done")
    assert b"fork: retry: Resource temporarily unavailable" in outcome.stderr


@needs_sandbox
def test_there_is_no_network(proven):
    outcome = proven.run("curl -sS --max-time 3 http://1.1.1.1/ || exec 3<>/dev/tcp/1.1.1.1/80")
    assert outcome.status != 0 and not outcome.timed_out
    assert outcome.stdout == b""


@needs_sandbox
def test_home_is_a_fresh_fixture_copy_every_time(proven):
    first = proven.run("rm -f file.txt foo.txt && touch only")
    second = proven.run("true")
    assert set(first.tree) == set(proven.master_tree) - {"file.txt", "foo.txt"} | {"only"}
    assert second.tree == proven.master_tree


@needs_sandbox
def test_identity_is_the_same_by_every_name(proven):
    outcome = proven.run('whoami; id -un; echo "$USER"; echo "$LOGNAME"; echo "$HOME"; find . -maxdepth 0 -user "$USER"')
    assert outcome.status == 0, outcome.stderr
    name, id_name, user, logname, home, found = outcome.stdout.decode().splitlines()
    assert name == id_name == user == logname and home == sandbox.HOME and found == "."
    assert home.rsplit("/", 1)[-1] == name  # the same user by the name of its home too


# ------------------------------------------------------------------ one run does not change another's verdict

@needs_sandbox
def test_a_process_flood_in_one_run_does_not_starve_another(proven):
    """A bounded flood (300 short sleepers, never an unbounded one) beside correct runs."""
    import threading

    limits = sandbox.Limits(seconds=6.0, processes=64)
    with sandbox.Sandbox(limits, availability=proven.availability) as bounded:
        flood = threading.Thread(target=bounded.run, args=("for i in $(seq 1 300); do sleep 4 & done; wait",))
        flood.start()
        time.sleep(1.5)
        others = [bounded.run("echo ok") for _ in range(3)]
        flood.join()
    assert [(o.status, o.stdout) for o in others] == [(0, b"ok\n")] * 3, [o.notes + [o.stderr] for o in others]


@needs_sandbox
def test_memory_is_bounded_across_a_runs_processes(proven):
    """Four processes of about 400 MiB each against 1 GiB for the whole run: not all of them finish."""
    limits = sandbox.Limits(seconds=20.0, memory_bytes=1 << 30)
    grab = "python3 -c 'import time; b = bytearray(400 << 20); b[::4096] = b\"x\" * len(b[::4096]); time.sleep(4); print(1)'"
    with sandbox.Sandbox(limits, availability=proven.availability) as bounded:
        outcome = bounded.run(f"for i in 1 2 3 4; do {grab} & done; wait")
    assert outcome.stdout.count(b"1") < 4, outcome.stdout


@needs_sandbox
def test_the_working_folder_has_an_inode_limit(proven):
    limits = sandbox.Limits(seconds=6.0, work_inodes=1000)
    with sandbox.Sandbox(limits, availability=proven.availability) as bounded:
        outcome = bounded.run("for i in $(seq 1 2000); do : > f$i || exit 7; done")
    assert outcome.status == 7 and b"No space left on device" in outcome.stderr


def test_a_killed_jobs_fixture_master_is_removed_at_the_next_start(tmp_path, monkeypatch):
    import subprocess
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    done = subprocess.Popen(["true"])
    done.wait()  # a process id that no longer runs: the job that made it was killed
    stale = tmp_path / f"cli-tuner-fixture-{done.pid}-abc"
    (stale / "master" / "locked").mkdir(parents=True)
    (stale / "master" / "locked").chmod(0)
    alive = tmp_path / f"cli-tuner-fixture-{os.getpid()}-def"  # a running job's: kept
    alive.mkdir()
    sandbox.remove_stale_masters()
    assert not stale.exists() and alive.exists()


# ------------------------------------------------------------------ never run, even sandboxed

NEVER_RUN = ["rm -rf /", "rm -rf ~", "rm -rf --no-preserve-root /", ":(){ :|:& };:",
             "bomb(){ bomb | bomb & }; bomb", "dd if=/dev/zero of=/dev/sda bs=1M", "dd if=/dev/urandom of=/dev/nvme0n1"]


class RefusingSandbox:
    """Stands where a Sandbox would: a command reaching it fails the test, and nothing runs."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def run(self, command: str):
        self.asked.append(command)
        raise AssertionError(f"the sandbox was asked to run {command!r}")


@pytest.mark.parametrize("command", NEVER_RUN)
def test_the_risk_rules_refuse_the_forms_no_sandbox_may_run(command):
    assert risk.is_dangerous(command)


def test_dangerous_predictions_never_reach_the_sandbox():
    guard = RefusingSandbox()
    assert execution.run_all(guard, NEVER_RUN) == {}
    assert guard.asked == []


@needs_sandbox
def test_dangerous_predictions_count_as_wrong(box):
    verdicts = execution.score(box, ["ls"] * len(NEVER_RUN), {"model": NEVER_RUN})["model"]
    assert [v.as_dict() for v in verdicts] == [{"verdict": "wrong", "why": "dangerous: not run"}] * len(NEVER_RUN)


# ------------------------------------------------------------------ no sandbox

def test_without_bubblewrap_the_probe_says_so_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    found = sandbox.probe(refresh=True)
    monkeypatch.undo()
    sandbox.probe(refresh=True)
    assert not found.ok
    assert found.reason.startswith("no sandbox: bubblewrap (bwrap) is not installed")
    assert "\n" not in found.reason


def test_a_sandbox_that_cannot_start_refuses_to_run_anything():
    absent = sandbox.Availability(False, "no sandbox: test", None)
    with pytest.raises(RuntimeError, match="no sandbox: test"):
        with sandbox.Sandbox(availability=absent):
            pass


# ------------------------------------------------------------------ the fixture tree

def test_the_fixture_is_the_same_for_the_same_seed(tmp_path):
    # pinned: a change to the generator (or to Python's seeded random) shows here, not as drifting scores
    assert fixture.fingerprint(24) == "6b427a48c3cdfe2d8f3ea3f9ac0de2c6d3d588eef94d76bceb4192556af7466b"
    assert fixture.fingerprint(25) != fixture.fingerprint(24)
    now = 1_700_000_000.0
    assert tree_digest(fixture.build(tmp_path / "a", now=now)) == tree_digest(fixture.build(tmp_path / "b", now=now))


def test_the_fixture_gives_the_common_utilities_something_to_work_on(tmp_path):
    root = fixture.build(tmp_path / "tree")
    entries = list(root.rglob("*"))
    files = [p for p in entries if p.is_file() and not p.is_symlink()]
    assert len(files) > 150
    assert {p.suffix for p in files} >= {".txt", ".log", ".py", ".c", ".html", ".csv", ".mp3", ".gz", ".jpg"}
    assert any(p.name.startswith(".") for p in entries) and any(" " in p.name for p in entries)
    assert any(p.is_symlink() and not p.exists() for p in entries)           # a dangling link
    assert any(p.is_symlink() and p.is_dir() for p in entries)               # a link to a folder
    assert max(len(p.relative_to(root).parts) for p in entries) >= 6
    assert any(p.stat().st_size > 1 << 20 for p in files) and any(p.stat().st_size == 0 for p in files)
    assert len({p.stat().st_mode & 0o777 for p in files}) >= 6
    ages = {round((time.time() - p.lstat().st_mtime) / 86400) for p in entries}
    assert min(ages) == 0 and max(ages) > 365
