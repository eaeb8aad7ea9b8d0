"""Axolotl plugin loaded inside the training process (`plugins:` in the resolved config).

It adds what Axolotl does not do: a checkpoint on SIGTERM/SIGINT (`callbacks.graceful_stop`),
`progress.json` for the parent process (`callbacks.progress`) and `measurements.json`, the GPU's
measured peak memory and speed (`callbacks.measurements`). It runs inside the trainer, so it
imports only its callbacks, which import only `paths` and `atomic` of the package.
"""

from __future__ import annotations

from axolotl.integrations.base import BasePlugin

from .callbacks.graceful_stop import GracefulStopCallback
from .callbacks.measurements import MeasurementsCallback
from .callbacks.progress import ProgressCallback


class CliTunerPlugin(BasePlugin):
    def add_callbacks_post_trainer(self, cfg, trainer):
        stopper = GracefulStopCallback()
        progress = ProgressCallback(cfg.output_dir)
        measurements = MeasurementsCallback(cfg.output_dir, trainer)
        return [stopper, progress, measurements]
