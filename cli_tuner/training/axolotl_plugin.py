"""Axolotl plugin loaded inside the training process (`plugins:` in the resolved config).

It does two things Axolotl does not: on SIGTERM/SIGINT it asks the trainer to save a checkpoint
and stop at the end of the current step (Axolotl's own handler saves only the bare adapter and
exits 0), and it writes `progress.json` so the parent process can record steps and losses in
provenance even when training dies.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

from ..atomic import write_json
from ..paths import PROGRESS_FILE


class GracefulStopCallback(TrainerCallback):
    """First signal: checkpoint and stop after this step. Second signal: leave at once."""

    def __init__(self):
        self.signal_received: int | None = None

    def _handle(self, signum, _frame):
        if self.signal_received is not None:
            os._exit(128 + signum)
        self.signal_received = signum
        print(f"[cli-tuner] signal {signum}: saving a checkpoint after this step, then stopping", flush=True)

    def on_train_begin(self, args, state, control, **kwargs):
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        if self.signal_received is not None:
            control.should_save = True
            control.should_training_stop = True
        return control


class ProgressCallback(TrainerCallback):
    def __init__(self, output_dir: str):
        self.path = Path(output_dir) / PROGRESS_FILE
        self.progress: dict = {"step": 0, "max_steps": None, "train_loss": None, "eval_loss": None,
                               "last_checkpoint": None, "stopped_by_signal": None}

    def _save(self):
        write_json(self.path, self.progress)

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress.update(step=state.global_step, max_steps=state.max_steps)
        self._save()

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        self.progress["step"] = state.global_step
        if "loss" in logs:
            self.progress["train_loss"] = logs["loss"]
        if "train_loss" in logs:
            self.progress["train_loss_mean"] = logs["train_loss"]
        if "eval_loss" in logs:
            self.progress["eval_loss"] = logs["eval_loss"]
        for key in ("train_runtime", "train_samples_per_second", "train_steps_per_second"):
            if key in logs:
                self.progress[key] = logs[key]
        self._save()

    def on_save(self, args, state, control, **kwargs):
        self.progress["step"] = state.global_step
        self.progress["last_checkpoint"] = f"checkpoint-{state.global_step}"
        self._save()

    def on_train_end(self, args, state, control, **kwargs):
        self.progress["step"] = state.global_step
        self.progress["train_end"] = True
        self._save()


class CliTunerPlugin(BasePlugin):
    def add_callbacks_post_trainer(self, cfg, trainer):
        stopper = GracefulStopCallback()
        progress = ProgressCallback(cfg.output_dir)
        return [stopper, progress]
