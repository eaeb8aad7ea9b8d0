"""Runner pieces that need no training: the smoke slices, the run identity, publishing the final adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_tuner import cli, data
from cli_tuner.commands import full, options as command_options, rehearse
from cli_tuner.training import pipeline as runner, slices
from cli_tuner.config import load
from cli_tuner.errors import CheckpointGateFailed, Interrupted, TrainingFailed
from conftest import REPO

A5000 = REPO / "configs" / "axolotl_config.yaml"
SMOKE = REPO / "configs" / "axolotl_smoke_test.yaml"


def test_smoke_trains_on_the_first_examples_of_the_verified_files(locked_data, tmp_path):
    loaded = load(A5000, overlays=[SMOKE], sets=[f"datasets.0.path={locked_data['train']}",
                                                f"test_datasets.0.path={locked_data['val']}"])
    cfg = slices.write(loaded, tmp_path)
    train = [r.data for r in data.read_records(cfg["datasets"][0]["path"])]
    val = [r.data for r in data.read_records(cfg["test_datasets"][0]["path"])]
    source = [r.data for r in data.read_records(locked_data["train"])]
    assert train == source[:10] and len(val) == 5
    assert cfg["max_steps"] == 10 and cfg["save_steps"] == 5 and cfg["eval_steps"] == 5 and cfg["logging_steps"] == 1
    assert cfg["datasets"][0]["type"] == "chat_template"  # everything else is the full config's


def test_identity_changes_with_config_and_data_but_not_with_key_order(locked_data):
    verified = data.verify([locked_data["train"]])
    first = runner.identity_of(full.SPEC, load(A5000), verified)
    assert first == runner.identity_of(full.SPEC, load(A5000), verified)
    assert first != runner.identity_of(full.SPEC, load(A5000, sets=["lora_r=16"]), verified)
    other = data.VerifiedData(verified.files, "0" * 64)
    assert first.default_run_id() != runner.identity_of(full.SPEC, load(A5000), other).default_run_id()
    assert first.default_run_id().startswith("full-")


def test_publish_final_copies_adapter_tokenizer_and_provenance(tmp_path):
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_text(name)
    (tmp_path / "provenance.json").write_text(json.dumps({"status": "succeeded"}))
    (tmp_path / "optimizer.pt").write_text("not part of the final adapter")
    final = runner.publish_final(tmp_path)
    assert sorted(p.name for p in final.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                       "provenance.json", "tokenizer.json", "tokenizer_config.json"]
    assert not (tmp_path / ".phase2-final.tmp").exists()


def test_the_smoke_overlay_comes_after_user_overlays_and_before_sets(tmp_path):
    user = tmp_path / "long.yaml"
    user.write_text("max_steps: 5000\nlora_r: 32\n")
    args = cli.build_parser().parse_args(["smoke", "--config", str(A5000), "--overlay", str(user), "--set", "save_steps=2"])
    loaded = command_options.load_config(args, last_overlays=(str(SMOKE),))
    assert loaded.axolotl["max_steps"] == 10 and loaded.axolotl["lora_r"] == 32 and loaded.axolotl["save_steps"] == 2


def test_the_prepared_dataset_cache_is_keyed_by_the_data_hash(tmp_path):
    shipped = {"dataset_prepared_path": "outputs/prepared"}  # relative: would land outside the volume
    assert runner.prepared_dataset_path(shipped, tmp_path, "ab" * 32) == str(tmp_path / "prepared" / ("ab" * 8))
    assert runner.prepared_dataset_path(shipped, tmp_path, "cd" * 32) != runner.prepared_dataset_path(shipped, tmp_path, "ab" * 32)
    absolute = {"dataset_prepared_path": str(tmp_path / "cache")}
    assert runner.prepared_dataset_path(absolute, tmp_path, "ab" * 32) == str(tmp_path / "cache" / ("ab" * 8))


def test_axolotl_gets_one_dataset_process_per_256_train_rows_unless_the_user_chose(tmp_path):
    """Axolotl's default dataset_num_proc is the CPU count: on the 16-core H200 pod smoke's 10 rows
    were tokenized, filtered and saved by 10 processes each time (bench/smoke_phases.py)."""
    train = tmp_path / "train.jsonl"
    train.write_text("".join('{"messages": []}\n' for _ in range(10)) + "\n")
    cfg = {"datasets": [{"path": str(train)}]}
    assert runner.preprocessing_processes(cfg, {}, cpus=16) == 1
    train.write_text("".join('{"messages": []}\n' for _ in range(2000)))
    assert runner.preprocessing_processes(cfg, {}, cpus=16) == 7
    assert runner.preprocessing_processes(cfg, {}, cpus=4) == 4
    assert runner.preprocessing_processes(cfg, {"RUNPOD_CPU_COUNT": "2"}) == 2
    # the user's choice stands: the config key, its deprecated name, or Axolotl's environment variables
    assert runner.preprocessing_processes({**cfg, "dataset_num_proc": 3}, {}, cpus=16) is None
    assert runner.preprocessing_processes({**cfg, "dataset_processes": 3}, {}, cpus=16) is None
    assert runner.preprocessing_processes(cfg, {"AXOLOTL_DATASET_NUM_PROC": "3"}, cpus=16) is None
    assert runner.preprocessing_processes({"datasets": [{"path": str(tmp_path / "missing.jsonl")}]}, {}, cpus=16) is None


@pytest.mark.parametrize("exc, status, error", [
    (None, "succeeded", None),
    (CheckpointGateFailed("/r/phase2-final: checkpoint check failed: syntax", record="checkpoint check failed: syntax"),
     "failed_gate", "checkpoint check failed: syntax"),
    (Interrupted("interrupted by signal 15 at step 3; start the same command again", record="signal 15 at step 3"),
     "interrupted", "signal 15 at step 3"),
    (Interrupted("interrupted by signal 2"), "interrupted", "interrupted by signal 2"),
    (KeyboardInterrupt(), "interrupted", "interrupted"),
    (TrainingFailed("training failed (axolotl exit 1): boom; full log: x", record="axolotl train exited 1: boom"),
     "failed", "axolotl train exited 1: boom"),
    (ValueError("bad value"), "failed", "ValueError: bad value"),
])
def test_a_runs_status_follows_from_what_ended_it(exc, status, error):
    """provenance and attempts.json record the status the exception's type gives, and the error line
    without the advice (so the same failure reads the same on every attempt)."""
    assert runner.ending_of(exc) == (status, error)


def test_a_rehearsals_process_count_is_part_of_its_identity(locked_data, tmp_path):
    """`rehearse --processes 2` after a finished one-process rehearsal is another run, not "already
    finished"; one process keeps the identity runs always had."""
    from cli_tuner.training import run_folder

    verified = data.verify([locked_data["train"]])
    options = runner.RehearsalOptions()
    one = runner.identity_of(rehearse.SPEC, load(A5000), verified, options)
    assert one == runner.identity_of(rehearse.SPEC, load(A5000), verified, options, processes=1)
    two = runner.identity_of(rehearse.SPEC, load(A5000), verified, options, processes=2)
    assert two.default_run_id() != one.default_run_id()
    finished = run_folder.open_run(tmp_path, one, None, new_run=False, resume=True, say=lambda _: None)
    finished.lock.release()
    (finished.path / "provenance.json").write_text(json.dumps({**one.record(), "status": "succeeded"}))
    second = run_folder.open_run(tmp_path, two, None, new_run=False, resume=True, say=lambda _: None)
    second.lock.release()
    assert second.path != finished.path and second.resume_from is None
    # on a pod the GPUs are not the identity: a restart on another count meets its checkpoints' layout rule
    assert runner.identity_of(full.SPEC, load(A5000), verified, processes=2) == runner.identity_of(full.SPEC, load(A5000), verified)


def test_every_file_the_trainer_reads_is_in_provenance_with_its_hash(tmp_path, qwen_tokenizer_dir, monkeypatch):
    """smoke cuts slices of the verified files into RUN/data/; the trainer reads those, so provenance lists
    each with its own sha256 and the verified file it was cut from. The trainer here is a stand-in that
    reads the resolved config and the provenance written before it starts (no model loads)."""
    import yaml

    from cli_tuner.checks import preflight
    from cli_tuner.commands import smoke
    from cli_tuner.errors import TrainingFailed
    from cli_tuner.training import pipeline
    from conftest import data_sets, make_locked_data

    monkeypatch.chdir(tmp_path)
    files = make_locked_data(tmp_path / "data", train=40, val=8, test=4)
    sets = [s for s in data_sets(files) if s != "--set"]
    loaded = load(A5000, overlays=[SMOKE], sets=[*sets, f"tokenizer_config={qwen_tokenizer_dir}"])
    plan = preflight.prepare(smoke.SPEC, loaded, check_environment=False)
    seen = {}

    def trainer(resolved_path, run_dir, env, **_):
        seen["config"] = yaml.safe_load(Path(resolved_path).read_text())
        seen["provenance"] = json.loads((Path(run_dir) / "provenance.json").read_text())
        return 1, None

    monkeypatch.setattr(pipeline, "run_training", trainer)
    monkeypatch.setattr(pipeline.tracking, "training_environment", lambda cfg, run_dir, say, identity_key: ({}, {}))
    with pytest.raises(TrainingFailed):
        pipeline.run(plan, pipeline.RunOptions(output_root=tmp_path / "outputs"))
    recorded = seen["provenance"]["data"]
    hashes = {**{p: e["sha256"] for p, e in recorded["files"].items()},
              **{p: e["sha256"] for p, e in recorded["slices"].items()}}
    read = [entry["path"] for key in ("datasets", "test_datasets") for entry in seen["config"][key]]
    assert read and all(Path(p).parent.name == "data" and Path(p).parent.parent.name.startswith("smoke-") for p in read)
    for path in read:  # each file the trainer reads, with the hash of its bytes
        assert hashes.get(path) == data.sha256_file(Path(path)), path
    train_slice = recorded["slices"][read[0]]
    assert train_slice["cut_from"] == str(files["train"]) and train_slice["lines"] == 10
    assert train_slice["cut_from_sha256"] == recorded["files"][str(files["train"])]["sha256"]
