"""`progress.json` in the run folder: step, losses, tokens/s and the last checkpoint, as training goes.

The parent process reads it to record steps and losses in provenance even when training dies,
and polls it to draw the training bar (step/total, loss, ETA; the rates beside it come from measurements.json). Between logging steps
the step is written at most every STEP_WRITE_SECONDS, so the bar moves on long logging intervals.
"""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from ...atomic import write_json
from ...paths import PROGRESS_FILE


STEP_WRITE_SECONDS = 2.0
# Axolotl's trainer logs trainable tokens (those with a loss) per second per GPU under this key
# (include_tkps, on by default); the processed and real rates come from measurements.json.
TRAINABLE_TOKENS_PER_SECOND_KEY = "tokens/train_per_sec_per_gpu"


class ProgressCallback(TrainerCallback):
    """`stopper`: the run's GracefulStopCallback; training that a signal ended did not reach its end, so
    progress.json then says `"train_end": false` with the signal, as provenance says interrupted."""

    def __init__(self, output_dir: str, stopper=None):
        self.path = Path(output_dir) / PROGRESS_FILE
        self.stopper = stopper
        self._written = 0.0
        self.progress: dict = {"step": 0, "max_steps": None, "train_loss": None, "eval_loss": None,
                               "last_checkpoint": None, "stopped_by_signal": None}

    def _save(self):
        write_json(self.path, self.progress)
        self._written = time.monotonic()

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
        if isinstance(logs.get(TRAINABLE_TOKENS_PER_SECOND_KEY), (int, float)):
            self.progress["trainable_tokens_per_second"] = logs[TRAINABLE_TOKENS_PER_SECOND_KEY]
        for key in ("train_runtime", "train_samples_per_second", "train_steps_per_second"):
            if key in logs:
                self.progress[key] = logs[key]
        self._save()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self._written >= STEP_WRITE_SECONDS:
            self.progress["step"] = state.global_step
            self._save()

    def on_save(self, args, state, control, **kwargs):
        self.progress["step"] = state.global_step
        self.progress["last_checkpoint"] = f"checkpoint-{state.global_step}"
        self._save()

    def on_train_end(self, args, state, control, **kwargs):
        self.progress["step"] = state.global_step
        signum = getattr(self.stopper, "signal_received", None)
        self.progress["train_end"] = signum is None
        self.progress["stopped_by_signal"] = signum
        self._save()
