"""Batching arithmetic, the way Axolotl batches: the data one optimizer step takes, the eval batches
an eval set makes."""
