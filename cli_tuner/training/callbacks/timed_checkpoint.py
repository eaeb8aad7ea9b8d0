"""A checkpoint every N minutes of training, whatever `save_steps` says.

A preemption loses everything since the last checkpoint. `save_steps` counts steps, whose length
depends on the GPU, the batch and the data: on NL2Bash the H100 config's `save_steps: 500` never
fires in a run of about 30 steps. A wall-clock interval bounds the loss to N minutes.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback


class TimedCheckpointCallback(TrainerCallback):
    def __init__(self, minutes: float):
        self.interval_s = float(minutes) * 60.0
        self.last_save = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self.last_save = time.monotonic()  # model loading is not training time

    def on_step_end(self, args, state, control, **kwargs):
        if self.interval_s > 0 and time.monotonic() - self.last_save >= self.interval_s and not control.should_save:
            control.should_save = True
            print(f"[cli-tuner] timed checkpoint at step {state.global_step} "
                  f"(every {self.interval_s / 60:g} min)", flush=True)
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last_save = time.monotonic()
