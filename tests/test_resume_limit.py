"""A run interrupted in its last step (Ctrl-C, or a pod's preemption during `full`) resumes without
training past its limit (issue 31, point 4).

transformers' loop checks the step limit only after a step, so a trainer handed a checkpoint that
already holds every step trains one more (`training: step 3/2`). The pod's path is walked here:
`full`'s plan through pipeline.run, with the trainer replaced by one that writes what the real one
writes (checkpoints, progress.json), and that trains one step past the limit when resumed, as
transformers does. No model loads."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml

from cli_tuner import config
from cli_tuner.checks import preflight
from cli_tuner.commands import full
from cli_tuner.errors import Interrupted
from cli_tuner.training import pipeline, run_folder
from conftest import REPO, data_sets, make_locked_data

CONFIG = REPO / "configs" / "axolotl_config.yaml"
STEPS = 2


def write_checkpoint(run_dir: Path, step: int, max_steps: int) -> None:
    import numpy
    from safetensors.numpy import save_file

    folder = run_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    save_file({"lora_A.weight": numpy.full((1, 1), step, dtype=numpy.float32)}, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "optimizer.pt").write_bytes(b"state")
    (folder / "scheduler.pt").write_bytes(b"state")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": max_steps}))


class FakeTrainer:
    """`axolotl train` as far as the pipeline sees it; `signal_in_step`: a signal arrives during that step."""

    def __init__(self, signal_in_step: int | None = None):
        self.signal_in_step = signal_in_step
        self.calls = 0

    def __call__(self, resolved_path, run_dir, env, **_):
        self.calls += 1
        cfg = yaml.safe_load(Path(resolved_path).read_text())
        limit = cfg["max_steps"]
        resumed = cfg.get("resume_from_checkpoint")
        start = json.loads((Path(resumed) / "trainer_state.json").read_text())["global_step"] if resumed else 0
        step = start
        while True:  # transformers: a step first, then the limit and the stop flags
            step += 1
            if step >= limit or step == self.signal_in_step:
                break
        write_checkpoint(run_dir, step, limit)
        (run_dir / "adapter_model.safetensors").write_bytes((run_dir / f"checkpoint-{step}" / "adapter_model.safetensors").read_bytes())
        (run_dir / "adapter_config.json").write_text(json.dumps({"r": 8}))
        stopped = signal.SIGTERM if step == self.signal_in_step else None
        (run_dir / "progress.json").write_text(json.dumps({
            "step": step, "max_steps": limit, "last_checkpoint": f"checkpoint-{step}",
            "train_end": stopped is None, "stopped_by_signal": stopped}))
        return 0, stopped


def check_without_a_model(plan, final, provenance) -> list[str]:
    """The checkpoint check's record as evaluate() writes it: while the run is still running."""
    (final / "eval.json").write_text(json.dumps({"schema": 1, "summary": {"n": 4}, "examples": [],
                                                 "run_status": provenance.record["status"]}))
    return []


@pytest.fixture
def full_plan(tmp_path, qwen_tokenizer_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = make_locked_data(tmp_path / "data", train=12, val=4, test=4)
    sets = [s for s in data_sets(files) if s != "--set"]
    loaded = config.load(CONFIG, sets=[*sets, f"tokenizer_config={qwen_tokenizer_dir}", f"max_steps={STEPS}",
                                        "warmup_steps=1", f"eval_steps={STEPS}", f"save_steps={STEPS}"])
    monkeypatch.setattr(pipeline, "check_final", check_without_a_model)
    monkeypatch.setattr(pipeline.tracking, "training_environment", lambda cfg, run_dir, say, identity_key: ({}, {}))
    return preflight.prepare(full.SPEC, loaded, check_environment=False)


def test_a_checkpoint_at_its_limit_is_recognised(tmp_path):
    write_checkpoint(tmp_path, 2, 2)
    write_checkpoint(tmp_path, 1, 2)
    assert run_folder.finished_steps(tmp_path / "checkpoint-2") == 2
    assert run_folder.finished_steps(tmp_path / "checkpoint-1") is None
    assert run_folder.finished_steps(tmp_path / "no-such-checkpoint") is None


def test_full_preempted_in_its_last_step_resumes_without_training_past_the_limit(full_plan, tmp_path, monkeypatch):
    options = pipeline.RunOptions(output_root=tmp_path / "outputs")
    preempted = FakeTrainer(signal_in_step=STEPS)
    monkeypatch.setattr(pipeline, "run_training", preempted)
    with pytest.raises(Interrupted, match="resume from checkpoint-2"):
        pipeline.run(full_plan, options)
    (run,) = [p for p in (tmp_path / "outputs").iterdir() if p.name.startswith("full-")]
    record = json.loads((run / "provenance.json").read_text())
    assert record["status"] == "interrupted"
    assert json.loads((run / "progress.json").read_text())["train_end"] is False  # agrees with provenance

    resumed = FakeTrainer()
    monkeypatch.setattr(pipeline, "run_training", resumed)
    assert pipeline.run(full_plan, options) == run.resolve()
    assert resumed.calls == 0  # handed to the trainer, it would train step 3 of 2
    record = json.loads((run / "provenance.json").read_text())
    assert record["status"] == "succeeded" and record["steps"] == {"planned": STEPS, "completed": STEPS}
    assert record["resumed_from"] == "checkpoint-2"
    assert not (run / "checkpoint-3").exists()
    assert ((run / "phase2-final" / "adapter_model.safetensors").read_bytes()
            == (run / "checkpoint-2" / "adapter_model.safetensors").read_bytes())
    progress = json.loads((run / "progress.json").read_text())
    assert progress["train_end"] is True and progress["step"] == STEPS
    # the run's three records agree on how it ended
    assert json.loads((run / "phase2-final" / "eval.json").read_text())["run_status"] == "succeeded"
    assert json.loads((run / "phase2-final" / "provenance.json").read_text())["status"] == "succeeded"


def test_progress_says_training_did_not_end_when_a_signal_stopped_it(tmp_path):
    """The trainer's own progress.json, as the plugin writes it: a run a signal stopped is no train_end."""
    from types import SimpleNamespace

    from cli_tuner.training.callbacks.graceful_stop import GracefulStopCallback
    from cli_tuner.training.callbacks.progress import ProgressCallback

    state = SimpleNamespace(global_step=2, max_steps=2)
    stopper = GracefulStopCallback()
    progress = ProgressCallback(str(tmp_path), stopper)
    progress.on_train_end(None, state, None)
    assert json.loads((tmp_path / "progress.json").read_text())["train_end"] is True
    stopper.signal_received = signal.SIGTERM
    progress.on_train_end(None, state, None)
    written = json.loads((tmp_path / "progress.json").read_text())
    assert written["train_end"] is False and written["stopped_by_signal"] == signal.SIGTERM
