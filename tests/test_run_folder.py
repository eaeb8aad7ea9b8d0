"""Run folders: one per (mode, config, data); resume from the newest complete checkpoint, set a
half-written one aside, refuse to mix runs or overwrite a finished one.

Checkpoints here are real files of the shapes the trainer writes (a loadable safetensors
adapter, trainer_state.json, optimizer and scheduler state), made without training.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from cli_tuner.training import run_folder
from cli_tuner.errors import EXIT_ENVIRONMENT, EXIT_USAGE, EnvironmentProblem, UsageError
from cli_tuner.training.run_folder import Identity, checkpoint_problem, open_run as open_locked


def open_run(*args, **kwargs):
    """The decision tests open one folder several times in one process: each lets go of the run
    lock at once (the lock itself is tested in test_lifecycle.py)."""
    folder = open_locked(*args, **kwargs)
    folder.lock.release()
    return folder

IDENTITY = Identity("rehearse", "c" * 64, "d" * 64)


class Said(list):
    def __call__(self, message: str) -> None:
        self.append(message)


def make_checkpoint(run_dir: Path, step: int) -> Path:
    folder = run_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    save_file({"base_model.model.layers.0.q_proj.lora_A.weight": np.full((8, 64), step, dtype=np.float32)},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16}))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 40}))
    (folder / "optimizer.pt").write_bytes(b"optimizer state " * 8)
    (folder / "scheduler.pt").write_bytes(b"scheduler state")
    return folder


def make_run(root: Path, identity: Identity = IDENTITY, status: str = "running", steps=(), name=None) -> Path:
    run_dir = root / (name or identity.default_run_id())
    run_dir.mkdir(parents=True)
    record = {"mode": identity.mode, "status": status, "config": {"sha256": identity.config_sha256},
              "data": {"data_sha256": identity.data_sha256}}
    (run_dir / "provenance.json").write_text(json.dumps(record))
    for step in steps:
        make_checkpoint(run_dir, step)
    return run_dir


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# ------------------------------------------------------------------ identity and fresh starts

def test_default_run_id_names_mode_config_and_data():
    assert IDENTITY.default_run_id() == "rehearse-cccccccc-dddddddd"


def test_a_fresh_start_creates_the_folder_and_resumes_nothing(tmp_path):
    said = Said()
    folder = open_run(tmp_path / "outputs", IDENTITY, None, new_run=False, resume=True, say=said)
    assert folder.path == tmp_path / "outputs" / "rehearse-cccccccc-dddddddd" and folder.path.is_dir()
    assert folder.resume_from is None and folder.previous is None


def test_an_explicit_run_id_names_the_folder(tmp_path):
    folder = open_run(tmp_path, IDENTITY, "my-run", new_run=False, resume=True, say=Said())
    assert folder.path == tmp_path / "my-run"


def test_a_start_killed_before_provenance_was_written_can_start_again(tmp_path):
    """A pod preempted while the rehearsal model is built (before provenance.json exists) must
    not leave a folder that the restarted pod refuses: the folder has to say whose it is."""
    first = open_run(tmp_path, IDENTITY, None, new_run=False, resume=True, say=Said())
    (first.path / "resolved_config.yaml").write_text("base_model: x\n")
    (first.path / "rehearsal-model").mkdir()
    (first.path / "rehearsal-model" / "config.json").write_text("{}")
    again = open_run(tmp_path, IDENTITY, None, new_run=False, resume=True, say=Said())
    assert again.path == first.path and again.resume_from is None


def test_such_a_folder_still_refuses_a_different_config(tmp_path):
    first = open_run(tmp_path, IDENTITY, "shared", new_run=False, resume=True, say=Said())
    (first.path / "resolved_config.yaml").write_text("base_model: x\n")
    with pytest.raises(UsageError):
        open_run(tmp_path, Identity("rehearse", "e" * 64, "d" * 64), "shared", new_run=False, resume=True, say=Said())


# ------------------------------------------------------------------ resume

def test_resumes_from_the_newest_checkpoint_by_step_number_and_says_so(tmp_path):
    run_dir = make_run(tmp_path, steps=(2, 9, 10))
    said = Said()
    folder = open_run(tmp_path, IDENTITY, None, new_run=False, resume=True, say=said)
    assert folder.path == run_dir
    assert folder.resume_from == run_dir / "checkpoint-10"  # 10 after 9: numbers, not text order
    assert folder.previous["status"] == "running"
    assert said == [f"{run_dir.name}: resuming from checkpoint-10 (status was running)"]


@pytest.mark.parametrize("status", ["running", "interrupted", "failed"])
def test_every_unfinished_status_resumes(tmp_path, status):
    make_run(tmp_path, status=status, steps=(3,))
    folder = open_run(tmp_path, IDENTITY, None, new_run=False, resume=True, say=Said())
    assert folder.resume_from.name == "checkpoint-3"


def test_a_half_written_newest_checkpoint_is_skipped_and_set_aside_not_deleted(tmp_path):
    run_dir = make_run(tmp_path, steps=(3, 6))
    broken = make_checkpoint(run_dir, 99)
    truncate(broken / "adapter_model.safetensors")
    kept = snapshot(broken)
    said = Said()
    folder = open_run(tmp_path, IDENTITY, None, new_run=False, resume=True, say=said)
    assert folder.resume_from == run_dir / "checkpoint-6"
    assert not broken.exists()
    (aside,) = [p for p in run_dir.iterdir() if p.is_dir() and "99" in p.name]
    assert snapshot(aside) == kept
    assert said[0].startswith("skipping checkpoint-99: unreadable adapter_model.safetensors (")
    assert said[0].endswith(f"(half-written by a kill?); moved to {aside.name}")
    assert said[1] == f"{run_dir.name}: resuming from checkpoint-6 (status was running)"


def test_a_set_aside_checkpoint_is_not_counted_by_the_trainers_checkpoint_rotation(tmp_path):
    """transformers globs `checkpoint-*` to rotate (save_total_limit) and to find the latest;
    a set-aside folder matching that glob would hold a slot or be taken for the newest."""
    from transformers.trainer_utils import sort_checkpoints

    run_dir = make_run(tmp_path, steps=(3,))
    truncate(make_checkpoint(run_dir, 6) / "adapter_model.safetensors")
    open_run(tmp_path, IDENTITY, None, new_run=False, resume=True, say=Said())
    assert [Path(p).name for p in sort_checkpoints(str(run_dir))] == ["checkpoint-3"]


@pytest.mark.parametrize("damage, problem", [
    (lambda c: (c / "trainer_state.json").unlink(), "missing trainer_state.json"),
    (lambda c: (c / "optimizer.pt").unlink(), "missing optimizer.pt"),
    (lambda c: (c / "adapter_model.safetensors").unlink(), "missing adapter_model.safetensors"),
    (lambda c: (c / "scheduler.pt").write_bytes(b""), "empty scheduler.pt"),
    (lambda c: (c / "trainer_state.json").write_text('{"global_st'), "unreadable trainer_state.json"),
    (lambda c: truncate(c / "adapter_model.safetensors"), "unreadable adapter_model.safetensors"),
])
def test_each_kind_of_incomplete_checkpoint_is_named(tmp_path, damage, problem):
    checkpoint = make_checkpoint(tmp_path, 5)
    assert checkpoint_problem(checkpoint) is None
    damage(checkpoint)
    assert checkpoint_problem(checkpoint).startswith(problem)


def test_no_usable_checkpoint_starts_again_from_step_zero_and_says_so(tmp_path):
    run_dir = make_run(tmp_path, status="interrupted", steps=(4,))
    (run_dir / "checkpoint-4" / "optimizer.pt").unlink()
    said = Said()
    folder = open_run(tmp_path, IDENTITY, None, new_run=False, resume=True, say=said)
    assert folder.resume_from is None and folder.previous["status"] == "interrupted"
    assert said[-1] == f"{run_dir.name}: unfinished run without a usable checkpoint; starting it again from step 0"


def test_no_resume_refuses_an_unfinished_run(tmp_path):
    run_dir = make_run(tmp_path, steps=(3,))
    with pytest.raises(UsageError) as caught:
        open_run(tmp_path, IDENTITY, None, new_run=False, resume=False, say=Said())
    assert caught.value.message == (f"{run_dir} holds an unfinished run; drop --no-resume to continue it, "
                                    "or pass --new-run")
    assert (run_dir / "checkpoint-3").is_dir()


# ------------------------------------------------------------------ refusing to mix or overwrite

@pytest.mark.parametrize("other", [
    Identity("rehearse", "e" * 64, "d" * 64),  # another config
    Identity("rehearse", "c" * 64, "f" * 64),  # other data
    Identity("smoke", "c" * 64, "d" * 64),     # another mode
])
def test_a_different_run_in_the_folder_is_refused_and_left_alone(tmp_path, other):
    run_dir = make_run(tmp_path, steps=(3,), name="shared")
    before = snapshot(run_dir)
    with pytest.raises(UsageError) as caught:
        open_run(tmp_path, other, "shared", new_run=False, resume=True, say=Said())
    assert caught.value.exit_code == EXIT_USAGE
    assert caught.value.message == (
        f"{run_dir} holds another run (mode rehearse, config cccccccc, data dddddddd); refusing to mix runs: "
        "use --new-run or another --run-id")
    assert snapshot(run_dir) == before


def test_a_folder_without_provenance_is_not_taken_over(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("someone's files")
    with pytest.raises(UsageError) as caught:
        open_run(tmp_path, IDENTITY, "mine", new_run=False, resume=True, say=Said())
    assert caught.value.message == (f"{tmp_path / 'mine'} exists, is not empty and has no provenance.json; "
                                    "choose another --run-id or empty it")


def test_a_finished_run_is_never_overwritten(tmp_path):
    run_dir = make_run(tmp_path, status="succeeded", steps=(5,))
    before = snapshot(run_dir)
    for resume in (True, False):
        with pytest.raises(UsageError) as caught:
            open_run(tmp_path, IDENTITY, None, new_run=False, resume=resume, say=Said())
        assert caught.value.message == (f"{run_dir}: already finished (status succeeded); its outputs are kept: "
                                        "pass --new-run to train again")
    assert snapshot(run_dir) == before


def test_new_run_takes_the_next_free_folder_and_leaves_the_finished_one(tmp_path):
    run_dir = make_run(tmp_path, status="succeeded", steps=(5,))
    before = snapshot(run_dir)
    second = open_run(tmp_path, IDENTITY, None, new_run=True, resume=True, say=Said())
    assert second.path == tmp_path / f"{run_dir.name}-2" and second.resume_from is None
    (second.path / "provenance.json").write_text("{}")
    third = open_run(tmp_path, IDENTITY, None, new_run=True, resume=True, say=Said())
    assert third.path == tmp_path / f"{run_dir.name}-3"
    assert snapshot(run_dir) == before


def test_new_run_with_a_fresh_name_uses_that_name(tmp_path):
    folder = open_run(tmp_path, IDENTITY, "first", new_run=True, resume=True, say=Said())
    assert folder.path == tmp_path / "first"


# ------------------------------------------------------------------ an output root that cannot be written

def test_an_output_root_under_a_regular_file_is_an_environment_problem(tmp_path):
    blocker = tmp_path / "volume"
    blocker.write_text("not a folder")
    with pytest.raises(EnvironmentProblem) as caught:
        open_run(blocker / "outputs", IDENTITY, None, new_run=False, resume=True, say=Said())
    assert caught.value.exit_code == EXIT_ENVIRONMENT
    assert caught.value.message == (f"cannot create output folder {blocker / 'outputs'}: Not a directory; "
                                    "mount a writable volume there")


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs Linux sysfs, which refuses new folders even to root")
def test_an_existing_read_only_output_root_is_an_environment_problem():
    """The root exists (a read-only volume) and only the run folder cannot be made."""
    with pytest.raises(EnvironmentProblem) as caught:
        open_run(Path("/sys"), IDENTITY, None, new_run=False, resume=True, say=Said())
    assert caught.value.exit_code == EXIT_ENVIRONMENT
    assert caught.value.message.startswith(f"cannot create run folder /sys/{IDENTITY.default_run_id()}: ")


def test_checkpoints_ignores_other_folders(tmp_path):
    for name in ("checkpoint-3", "checkpoint-12", "checkpoint-final", "phase2-final", "checkpoint-7.incomplete-1"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-5").write_text("a file, not a checkpoint folder")
    assert [p.name for p in run_folder.checkpoints(tmp_path)] == ["checkpoint-3", "checkpoint-12"]

