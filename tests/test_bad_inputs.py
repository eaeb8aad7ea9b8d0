"""Bad input to a training command: each case stops with its exit code and one line naming
the file (and line or key) and what to do, before any model is touched, and leaves nothing
half-made behind. No training runs here.

The commands run in-process through `cli.main` (what entrypoint.py calls) from a folder with
no `.env`, so the heavy imports are paid once; the full-disk case needs its own process for
the file-size limit. Tests run as root, so "read-only" uses sysfs (refuses new folders even
to root) and a path under a regular file instead of chmod.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_tuner import cli, data
from cli_tuner.training import tracking
from conftest import REPO, data_sets, make_locked_data, run_folders

CONFIG = REPO / "configs" / "axolotl_config.yaml"
SYSFS = Path("/sys")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working folder without `.env`: the repo's own `.env`, if any, must not leak in."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def files(tmp_path):
    return make_locked_data(tmp_path / "data", train=16, val=4, test=4)


def train_command(files, outputs: Path, *extra: str, mode: str = "rehearse") -> list[str]:
    # --skip-checks: the machine checks are not what these tests are about.
    return [mode, "--config", str(CONFIG), *data_sets(files), "--output-root", str(outputs),
            "--set", f"dataset_prepared_path={outputs.parent / 'prepared'}", "--skip-checks", *extra]


def run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    """(exit code, last stderr line) of `entrypoint.py ARGV`."""
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return code, (err.splitlines() or [""])[-1]


def nothing_left(outputs: Path) -> bool:
    return not outputs.exists() or not any(outputs.rglob("*"))


def rewrite_manifest(folder: Path) -> None:
    """A manifest that matches the files as they are now, written the way lock-data writes it,
    without lock-data's own format check (the situation of a manifest from an older tool)."""
    manifest_path = folder / data.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    for name, entry in manifest["files"].items():
        entry["sha256"] = data.sha256_file(folder / name)
    manifest["data_sha256"] = data.combined_hash({n: e["sha256"] for n, e in manifest["files"].items()})
    manifest_path.write_text(json.dumps(manifest))


# ------------------------------------------------------------------ data files

def test_a_config_naming_a_data_file_that_does_not_exist(capsys, workdir, files, tmp_path):
    outputs = tmp_path / "outputs"
    absent = tmp_path / "data" / "absent.jsonl"
    code, last = run_cli(capsys, train_command(files, outputs, "--set", f"datasets.0.path={absent}"))
    assert code == 3
    assert last == (f"error: {CONFIG}: datasets[0].path {absent} does not exist; put the file in the data folder "
                    f"{absent.parent} and run lock-data --force there, or fix the path")
    assert nothing_left(outputs)


def test_a_missing_test_split(capsys, workdir, files, tmp_path):
    outputs = tmp_path / "outputs"
    files["test"].unlink()
    code, last = run_cli(capsys, train_command(files, outputs))
    # a split of the data folder, checked with the others before anything loads
    assert code == 3
    assert last.startswith(f"error: {CONFIG}: cli_tuner.test_file {files['test']} does not exist; ")
    assert nothing_left(outputs)


def test_an_emptied_data_file_no_longer_matches_its_manifest(capsys, workdir, files, tmp_path):
    outputs = tmp_path / "outputs"
    files["train"].write_text("")
    code, last = run_cli(capsys, train_command(files, outputs))
    assert code == 3
    assert last.startswith(f"error: {files['train']}: SHA256 mismatch: manifest ")
    assert last.endswith("restore the file or re-lock with lock-data --force")
    assert nothing_left(outputs)


def test_lock_data_refuses_an_empty_file_and_writes_no_manifest(capsys, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n\n")
    code, last = run_cli(capsys, ["lock-data", "--data-dir", str(folder)])
    assert code == 3
    assert last == f"error: {folder / 'train.jsonl'}: data file is empty; it needs at least one example"
    assert sorted(p.name for p in folder.iterdir()) == ["train.jsonl"]


def test_lock_data_names_the_line_of_invalid_json_and_keeps_the_old_manifest(capsys, files):
    folder = files["train"].parent
    manifest_before = (folder / data.MANIFEST_NAME).read_bytes()
    lines = files["train"].read_text().splitlines()
    lines[2] = lines[2][:-1]  # line 3 loses its closing brace
    files["train"].write_text("\n".join(lines) + "\n")
    code, last = run_cli(capsys, ["lock-data", "--data-dir", str(folder), "--force"])
    assert code == 3
    assert last.startswith(f"error: {files['train']}:3: invalid JSON (")
    assert last.endswith("); fix or remove that line")
    assert (folder / data.MANIFEST_NAME).read_bytes() == manifest_before
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "test.jsonl", "train.jsonl", "val.jsonl"]


def test_training_names_the_line_of_invalid_json_even_when_the_manifest_matches(capsys, workdir, files, tmp_path):
    outputs = tmp_path / "outputs"
    lines = files["val"].read_text().splitlines()
    lines[3] = '{"messages": [oops]}'
    files["val"].write_text("\n".join(lines) + "\n")
    rewrite_manifest(files["val"].parent)
    code, last = run_cli(capsys, train_command(files, outputs))
    assert code == 3
    assert last.startswith(f"error: {CONFIG}: test_datasets[0].path: {files['val']}:4: invalid JSON (")
    assert nothing_left(outputs)


@pytest.mark.parametrize("record, problem", [
    ({"prompt": "list files", "completion": "ls"}, "no 'messages' or 'text' field (found: completion, prompt); "
                                                   "rename the field or convert the file"),
    ({"conversations": [{"from": "human", "value": "list files"}]},
     "no 'messages' or 'text' field (found: conversations); rename the field or convert the file"),
    ({"messages": [{"from": "human", "value": "list files"}]}, "messages[0] needs 'role' and 'content' fields"),
    ({"messages": [{"role": "human", "content": "list files"}]},
     "messages[0] has role 'human'; use one of system, user, assistant"),
])
def test_wrong_field_names_are_refused_at_lock_time_naming_the_line(capsys, tmp_path, record, problem):
    folder = tmp_path / "data"
    folder.mkdir()
    good = {"messages": [{"role": "user", "content": "print the date"}, {"role": "assistant", "content": "date"}]}
    (folder / "train.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
    code, last = run_cli(capsys, ["lock-data", "--data-dir", str(folder)])
    assert code == 3
    assert last == f"error: {folder / 'train.jsonl'}:2: {problem}"
    assert not (folder / data.MANIFEST_NAME).exists()


def test_a_manifest_that_is_not_json(capsys, workdir, files, tmp_path):
    outputs = tmp_path / "outputs"
    manifest = files["train"].parent / data.MANIFEST_NAME
    manifest.write_text('{"files": {"train.jsonl": ')
    code, last = run_cli(capsys, train_command(files, outputs))
    assert code == 3
    assert last.startswith(f"error: {manifest}: manifest is not valid JSON (")
    assert last.endswith("); restore it or re-run lock-data --force")
    assert nothing_left(outputs)


def test_a_missing_manifest_says_how_to_make_one(capsys, workdir, files, tmp_path):
    outputs = tmp_path / "outputs"
    manifest = files["train"].parent / data.MANIFEST_NAME
    manifest.unlink()
    code, last = run_cli(capsys, train_command(files, outputs))
    assert code == 3
    assert last == (f"error: {manifest}: dataset manifest not found; run "
                    f"`entrypoint.py lock-data --data-dir {manifest.parent}`")
    assert nothing_left(outputs)


# ------------------------------------------------------------------ config and command line

def test_a_config_that_is_not_yaml_names_the_line(capsys, workdir, files, tmp_path):
    outputs = tmp_path / "outputs"
    broken = tmp_path / "broken.yaml"
    broken.write_text("base_model: Qwen/Qwen2.5-Coder-7B-Instruct\nlora_r: [8\nlora_alpha: 16\n")
    argv = train_command(files, outputs)
    argv[argv.index("--config") + 1] = str(broken)
    code, last = run_cli(capsys, argv)
    assert code == 4
    assert last.startswith(f"error: {broken}:3: not valid YAML (")
    assert last.endswith("); fix the syntax on that line")
    assert nothing_left(outputs)


@pytest.mark.parametrize("flag", ["--config", "--overlay"])
def test_a_config_or_overlay_that_does_not_exist(capsys, workdir, files, tmp_path, flag):
    outputs = tmp_path / "outputs"
    absent = tmp_path / "absent.yaml"
    argv = train_command(files, outputs)
    if flag == "--config":
        argv[argv.index("--config") + 1] = str(absent)
    else:
        argv += ["--overlay", str(absent)]
    code, last = run_cli(capsys, argv)
    assert code == 4
    assert last == f"error: {absent}: config file not found; pass --config with an existing YAML file"
    assert nothing_left(outputs)


def test_an_unknown_mode_from_the_environment(capsys, workdir, tmp_path, monkeypatch):
    outputs = tmp_path / "outputs"
    monkeypatch.setenv("TRAIN_MODE", "train")
    monkeypatch.setenv("OUTPUT_ROOT", str(outputs))
    code, last = run_cli(capsys, [])
    assert code == 2
    assert last == "error: TRAIN_MODE='train' is not a mode; use one of validate, smoke, full, rehearse"
    assert nothing_left(outputs)


def test_an_unknown_mode_on_the_command_line(capsys, workdir, tmp_path):
    with pytest.raises(SystemExit) as caught:  # argparse's own usage error, also exit 2
        cli.main(["train", "--output-root", str(tmp_path / "outputs")])
    assert caught.value.code == 2
    assert "invalid choice: 'train'" in capsys.readouterr().err
    assert nothing_left(tmp_path / "outputs")


def test_a_base_model_that_cannot_be_resolved_offline(capsys, workdir, files, tmp_path):
    outputs = tmp_path / "outputs"
    code, last = run_cli(capsys, train_command(files, outputs, "--set", "base_model=nobody/no-such-model-7b"))
    assert code == 4
    assert last == (f"error: {CONFIG}: base_model 'nobody/no-such-model-7b' cannot be resolved offline (no local "
                    "folder, no cached config.json, not a shipped model); set base_model to a local folder or go "
                    "online once")
    assert nothing_left(outputs)


def test_a_missing_env_file_is_allowed(capsys, workdir, files, tmp_path):
    """No `.env` in the working folder: the command goes on to its next step (here the data check)."""
    assert not (workdir / ".env").exists()
    assert tracking.load_env_file(workdir / ".env") is False
    outputs = tmp_path / "outputs"
    files["train"].write_text(files["train"].read_text() + "\n")  # a data problem the next step reports
    code, last = run_cli(capsys, train_command(files, outputs))
    assert code == 3 and "SHA256 mismatch" in last


# ------------------------------------------------------------------ output folder

def test_an_output_root_under_a_regular_file(capsys, workdir, files, tmp_path):
    blocker = tmp_path / "volume"
    blocker.write_text("not a folder")
    code, last = run_cli(capsys, train_command(files, blocker / "outputs"))
    assert code == 5
    assert last == f"error: cannot create output folder {blocker / 'outputs'}: Not a directory; mount a writable volume there"
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(not SYSFS.is_dir(), reason="needs Linux sysfs, which refuses new folders even to root")
def test_a_read_only_output_root(capsys, workdir, files):
    code, last = run_cli(capsys, train_command(files, SYSFS))
    assert code == 5, last
    assert last.startswith("error: cannot create run folder /sys/rehearse-")


FULL_DISK = """
import resource, signal, sys
from cli_tuner import cli
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024, resource.RLIM_INFINITY))
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_full_output_volume_is_an_environment_problem_and_leaves_no_half_made_model(files, tmp_path):
    """The first big write of a rehearsal is the tiny model: a full disk there must be exit 5,
    and no folder that a restart would take for a finished model."""
    outputs = tmp_path / "outputs"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", FULL_DISK, *train_command(files, outputs)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    last = (result.stderr.strip().splitlines() or [""])[-1]
    assert result.returncode == 5, result.stderr[-2000:]
    assert last.startswith("error: cannot write ") and "File too large" in last, last
    assert "Traceback" not in result.stderr
    (run_dir,) = run_folders(outputs)
    model_dir = run_dir / "rehearsal-model"
    assert not (model_dir / "config.json").exists() or (model_dir / "model.safetensors").exists()
