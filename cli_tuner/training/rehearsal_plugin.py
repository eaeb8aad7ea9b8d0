"""Axolotl plugin for the CPU rehearsal only (`plugins:` of a rehearsal's resolved config, never a pod's).

It makes the config's own training path run on a CPU without changing the config:
- `use_cpu=True` in the TrainingArguments: transformers refuses `bf16: true` without a CUDA device
  unless told the run is on the CPU ("You need to assign use_cpu ..."); Axolotl has no config key
  for it, but passes a plugin's `get_training_args` into TrainingArguments.
- `support_avx512bf16_for_cpu = False` on every bitsandbytes `Linear4bit`: on CPUs with
  AVX512-BF16, bitsandbytes 0.50.2 repacks the 4-bit weight in place when the layer runs in eval
  mode (`_convert_weight_packed_for_cpu`) and does not undo it when training resumes, so the
  evaluation before the first step breaks the next backward pass. The NF4 weights, their
  quantization state and the 4-bit matmul stay as they are; only that CPU inference shortcut is off.

- On several CPU processes (`rehearse --processes N`, DDP over gloo): each rank's model on the CPU.
  Axolotl's normalize_config gives every rank `device_map: {"": LOCAL_RANK}` (one accelerator per
  rank); on a CPU that index names a device that is not there and transformers stops in
  `caching_allocator_warmup` ("Cannot access accelerator device when none is available"). The
  plugin sets the model loader's device_map to "cpu" after Axolotl's own placement. And resuming:
  accelerate names a CPU rank's device `cpu:<local rank>`, transformers loads the checkpoint's
  optimizer with that as map_location, and torch has no restore rule for "cpu:N" ("don't know how
  to restore data location"); the plugin registers one (torch.serialization.register_package).

Like the job's main plugin it runs inside the trainer process, so it imports nothing of the package.
"""

from __future__ import annotations

from axolotl.integrations.base import BasePlugin


def _place_ranks_on_the_cpu() -> None:
    import os

    from axolotl.loaders.model import ModelLoader

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or getattr(ModelLoader, "_cli_tuner_ranks_on_cpu", False):
        return
    original = ModelLoader._set_device_map_config

    def set_device_map_config(self):
        original(self)
        if "device_map" in self.model_kwargs:
            self.model_kwargs["device_map"] = "cpu"

    ModelLoader._set_device_map_config = set_device_map_config
    ModelLoader._cli_tuner_ranks_on_cpu = True
    _restore_cpu_n_locations()


def _restore_cpu_n_locations() -> None:
    import torch

    def tag(_obj):
        return None  # saving is unchanged: tensors keep torch's own "cpu" tag

    def restore_cpu_rank_location(obj, location: str):
        return obj if location.startswith("cpu:") else None  # already in CPU memory

    if not any(getattr(entry[2], "__name__", "") == "restore_cpu_rank_location"
               for entry in torch.serialization._package_registry):
        torch.serialization.register_package(11, tag, restore_cpu_rank_location)  # just after torch's own CPU rule (10)


class CpuRehearsalPlugin(BasePlugin):
    def register(self, cfg):
        _place_ranks_on_the_cpu()

    def get_training_args(self, cfg):
        return {"use_cpu": True}

    def post_model_build(self, cfg, model):
        disabled = 0
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
                disabled += 1
        print(f"[cli-tuner] CPU rehearsal: bitsandbytes in-place CPU repacking off on {disabled} 4-bit layers",
              flush=True)
