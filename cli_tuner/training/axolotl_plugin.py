"""Axolotl plugin loaded inside the training process (`plugins:` in the resolved config).

It adds what Axolotl does not do: a checkpoint on SIGTERM/SIGINT (`callbacks.graceful_stop`), a
checkpoint every N minutes (`callbacks.timed_checkpoint`, N from the job's environment),
`progress.json` for the parent process (`callbacks.progress`) and `measurements.json`, the GPU's
measured peak memory and speed (`callbacks.measurements`). At registration (config load, before
the datasets) it saves single-writer prepared sets in process (`callbacks.in_process_save`). It runs inside the trainer, so it
imports only its callbacks, which import only `paths` and `atomic` of the package.
"""

from __future__ import annotations

import os

from axolotl.integrations.base import BasePlugin

from ..paths import CHECKPOINT_MINUTES_ENV
from .callbacks.graceful_stop import GracefulStopCallback
from .callbacks.in_process_save import save_single_writer_sets_in_process
from .callbacks.measurements import MeasurementsCallback
from .callbacks.progress import ProgressCallback
from .callbacks.timed_checkpoint import TimedCheckpointCallback


class CliTunerPlugin(BasePlugin):
    def register(self, cfg):
        save_single_writer_sets_in_process()

    def add_callbacks_post_trainer(self, cfg, trainer):
        stopper = GracefulStopCallback()
        progress = ProgressCallback(cfg.output_dir)
        measurements = MeasurementsCallback(cfg.output_dir, trainer)
        # The job always sets it; a bare `axolotl train` with this plugin gets no timed checkpoints.
        timed = TimedCheckpointCallback(float(os.environ.get(CHECKPOINT_MINUTES_ENV) or 0))
        return [stopper, timed, progress, measurements]
