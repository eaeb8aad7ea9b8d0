"""cli-tuner: a containerized QLoRA fine-tuning job built on Axolotl."""

__version__ = "0.1.0"
