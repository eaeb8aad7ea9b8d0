"""On SIGTERM/SIGINT: save a checkpoint at the end of the current step, then stop.

Axolotl's own handler saves only the bare adapter and exits 0; a pod stop or preemption must
leave a resumable checkpoint instead.
"""

from __future__ import annotations

import os
import signal

from transformers import TrainerCallback


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
