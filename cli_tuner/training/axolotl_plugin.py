"""Axolotl plugin loaded inside the training process (`plugins:` in the resolved config).

It adds what Axolotl does not do: a checkpoint on SIGTERM/SIGINT (`callbacks.graceful_stop`), a
checkpoint every N minutes (`callbacks.timed_checkpoint`, N from the job's environment),
`progress.json` for the parent process (`callbacks.progress`) and `measurements.json`, the GPU's
measured peak memory and speed (`callbacks.measurements`), both written by rank 0 alone; on
several processes the ranks agree on when to save and stop (`callbacks.rank_agreement`). At registration (config load, before the datasets) it saves
single-writer prepared sets in process (`callbacks.in_process_save`). It runs inside the trainer, so it
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
from .callbacks.rank_agreement import RankAgreementCallback
from .callbacks.timed_checkpoint import TimedCheckpointCallback


class CliTunerPlugin(BasePlugin):
    def register(self, cfg):
        save_single_writer_sets_in_process()

    def add_callbacks_post_trainer(self, cfg, trainer):
        stopper = GracefulStopCallback()
        # The job always sets it; a bare `axolotl train` with this plugin gets no timed checkpoints.
        timed = TimedCheckpointCallback(float(os.environ.get(CHECKPOINT_MINUTES_ENV) or 0))
        # Every rank handles signals and timed checkpoints, and they agree (last) on the step to act.
        callbacks = [stopper, timed]
        if trainer.is_world_process_zero():  # one writer: progress.json and measurements.json are rank 0's
            callbacks += [ProgressCallback(cfg.output_dir, stopper), MeasurementsCallback(cfg.output_dir, trainer)]
        if trainer.args.world_size > 1:
            callbacks.append(RankAgreementCallback())
        return callbacks
