"""Trainer callbacks the Axolotl plugin installs. They run inside the trainer process, so they
import only transformers and the package's `paths` and `atomic`, never the job's own machinery."""
