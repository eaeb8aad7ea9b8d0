"""The console's phases: a live bar on a terminal, a few plain lines elsewhere; the log tail on failure."""

from __future__ import annotations

import os
import sys

import pytest

from cli_tuner import cli, console
from cli_tuner.training import launcher, pipeline


def test_off_a_terminal_a_phase_prints_milestones_not_a_line_per_update(capsys):
    bar = console.Phase("training", total=1000, unit="steps", live=False, every_percent=10)
    for step in range(1, 1001):
        bar.update(completed=step, detail="loss 1.0")
    bar.done("step 1000/1000")
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "\r" not in out and "\x1b" not in out
    assert lines[0] == "[cli-tuner] training: started, 1000 steps"
    milestones = [l for l in lines if "% )" in l or "%)" in l]
    assert [l.split(": ", 1)[1].split(" (")[0] for l in milestones] == [f"{n}/1000 steps" for n in range(100, 1000, 100)]
    assert "loss 1.0" in milestones[0] and "ETA" in milestones[0]
    assert lines[-1].startswith("[cli-tuner] training: step 1000/1000 (")
    assert len(lines) == 11


def test_a_silent_phase_prints_a_heartbeat(capsys, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    bar = console.Phase("preparation", live=False, heartbeat_s=60)
    bar.update(detail="Tokenizing Prompts 10/220")
    clock[0] += 61
    bar.update()
    bar.update()
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "[cli-tuner] preparation: still running, Tokenizing Prompts 10/220, elapsed 1:01"
    assert len(out) == 2


def test_a_phase_left_by_an_error_says_failed(capsys):
    try:
        with console.Phase("data check", live=False):
            raise ValueError("boom")
    except ValueError:
        pass
    assert capsys.readouterr().out.splitlines()[-1].startswith("[cli-tuner] data check: failed (")


def test_the_trainer_s_tqdm_lines_name_the_preparation_step():
    found = pipeline.TQDM_LINE.search("Tokenizing Prompts (num_proc=2):  50%|█████     | 110/220 [00:00<00:00, 340 examples/s]")
    assert (found["what"], found["done"], found["total"]) == ("Tokenizing Prompts (num_proc=2)", "110", "220")
    assert pipeline.TQDM_LINE.search("[2026-12-01] [INFO] [axolotl.train] Starting trainer...") is None


def test_the_log_tail_skips_progress_bars_and_blank_lines(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("start\n\n 60%|██████    | 3/5 [00:02<00:01,  1.75it/s]\nTraceback (most recent call last):\n"
                   "ValueError: base_model not found\n")
    assert pipeline.log_tail(log, 3) == ["start", "Traceback (most recent call last):", "ValueError: base_model not found"]


def test_verbose_is_an_option_of_the_training_modes_and_an_environment_switch(monkeypatch):
    for mode in ("smoke", "full", "rehearse"):
        assert cli.build_parser().parse_args([mode]).verbose is False
        assert cli.build_parser().parse_args([mode, "--verbose"]).verbose is True
    monkeypatch.setenv("CLI_TUNER_VERBOSE", "1")
    assert cli.build_parser().parse_args(["rehearse"]).verbose is True


# A stand-in for `axolotl train` that fails in preparation: the console's handling of a trainer's
# output and exit is what these tests are about, not Axolotl.
FAILING_TRAINER = """
import sys
print("[2026-12-01] [INFO] [axolotl.train] Starting trainer...", flush=True)
print("Tokenizing Prompts (num_proc=2):  50%|#####     | 110/220 [00:00<00:00, 340 examples/s]", flush=True)
print("", flush=True)
print("Traceback (most recent call last):", flush=True)
print("OSError: no-such-model is not a local folder and is not a valid model identifier", flush=True)
sys.exit(1)
"""


@pytest.fixture
def failing_trainer(monkeypatch):
    monkeypatch.setattr(launcher, "command", lambda *args, **kwargs: [sys.executable, "-c", FAILING_TRAINER])
    console.held_library_logs()  # what an earlier command in this test process held would land in this train.log


def test_a_failed_trainer_leaves_its_last_lines_and_the_log_path_on_stderr(tmp_path, capsys, failing_trainer):
    returncode, received = pipeline.run_training(tmp_path / "resolved_config.yaml", tmp_path, dict(os.environ))
    captured = capsys.readouterr()
    assert returncode == 1 and received is None
    assert "[cli-tuner] preparation: failed (" in captured.out
    assert "training:" not in captured.out
    assert f"last lines of {tmp_path / 'train.log'}:" in captured.err
    tail = [line.strip() for line in captured.err.splitlines()[1:]]
    assert tail == ["[2026-12-01] [INFO] [axolotl.train] Starting trainer...", "Traceback (most recent call last):",
                    "OSError: no-such-model is not a local folder and is not a valid model identifier"]
    assert len(captured.out.splitlines()) <= 3, captured.out  # none of the trainer's own lines
    assert "Starting trainer" in (tmp_path / "train.log").read_text()


def test_verbose_streams_the_trainer_s_log_instead_of_the_bars(tmp_path, capsys, failing_trainer):
    returncode, _ = pipeline.run_training(tmp_path / "resolved_config.yaml", tmp_path, dict(os.environ), verbose=True)
    captured = capsys.readouterr()
    assert returncode == 1
    assert "[axolotl.train] Starting trainer" in captured.out and "Tokenizing Prompts" in captured.out
    assert "[cli-tuner] preparation" not in captured.out  # the log itself, not the bars
    assert "last lines of" not in captured.err  # the log was on the console already
    assert "[axolotl.train] Starting trainer" in (tmp_path / "train.log").read_text()


def test_the_training_line_shows_the_measured_processed_and_real_rates_each_named(tmp_path, capsys):
    """Axolotl's trainable-token rate alone reads as the throughput; the line names each rate, the
    measurement callback's processed and real tokens/s first."""
    import json

    from cli_tuner.training.callbacks import measurements as callback

    # 10 steps of 4 micro-batches of 512 slots, 50 real tokens each, 1.108 s per step: the measured rates
    steps = [{"seconds": 1.108, "real": 200, "processed": 2048, "trainable": 30, "rows": 1, "row_len": 512,
              "max_micro_tokens": 512, "micro_batches": 4, "counted_by": "attention_mask"} for _ in range(10)]
    record = callback.summarize(steps, {}, None, "cuda", "NVIDIA H200")
    view = pipeline.TrainingView(tmp_path / "progress.json")  # before the trainer writes its files
    (tmp_path / "measurements.json").write_text(json.dumps(record))
    (tmp_path / "progress.json").write_text(json.dumps({"step": 10, "max_steps": 10, "train_loss": 1.25,
                                                        "trainable_tokens_per_second": 27.4}))
    view.poll()
    view.finish(0)
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("[cli-tuner] training: step 10/10, loss 1.25, 1,848 processed tokens/s, "
                           "181 real tokens/s, 27 trainable tokens/s (Axolotl)"), last
    # without Axolotl's figure the line has only the measured rates; nothing unlabelled
    assert pipeline.training_detail({"train_loss": 2.0}, record) == "loss 2, 1,848 processed tokens/s, 181 real tokens/s"
    assert pipeline.training_detail({"train_loss": 2.0, "tokens_per_second": 30}, None) == "loss 2"
