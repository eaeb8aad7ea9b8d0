"""The rehearsal-only plugin: `use_cpu` into TrainingArguments, bitsandbytes' in-place CPU repacking
off on every 4-bit layer; and it is in a rehearsal's plugins only, never a pod's."""

from __future__ import annotations

from cli_tuner.training import pipeline, rehearsal


def test_plugin_sets_use_cpu_and_turns_the_cpu_repacking_off():
    import bitsandbytes as bnb
    import torch

    from cli_tuner.training.rehearsal_plugin import CpuRehearsalPlugin

    model = torch.nn.Sequential(bnb.nn.Linear4bit(64, 64, quant_type="nf4"), torch.nn.Linear(64, 64))
    model[0].support_avx512bf16_for_cpu = True
    plugin = CpuRehearsalPlugin()
    assert plugin.get_training_args(None) == {"use_cpu": True}
    plugin.post_model_build(None, model)
    assert model[0].support_avx512bf16_for_cpu is False
    assert not hasattr(model[1], "support_avx512bf16_for_cpu")


def test_only_the_rehearsal_config_names_the_plugin(tmp_path):
    from cli_tuner import config
    from conftest import REPO

    loaded = config.load(REPO / "configs" / "axolotl_config.yaml")
    assert rehearsal.PLUGIN not in (loaded.axolotl.get("plugins") or [])
    cfg, _ = rehearsal.rehearsal_config(loaded.axolotl, tmp_path, 2, None, "config")
    assert set(cfg["plugins"]) == {rehearsal.PLUGIN}
    assert pipeline.PLUGIN != rehearsal.PLUGIN


def test_cpu_ranks_restore_a_checkpoint_mapped_to_their_cpu_n_device():
    import io

    import torch

    from cli_tuner.training.rehearsal_plugin import _restore_cpu_n_locations

    saved = io.BytesIO()
    torch.save({"exp_avg": torch.ones(3)}, saved)
    _restore_cpu_n_locations()
    _restore_cpu_n_locations()  # once only, however many times a rank registers the plugin
    saved.seek(0)
    # transformers' map_location on a CPU rank: accelerate's device cpu:<local rank>
    assert torch.load(saved, map_location=torch.device("cpu", 1))["exp_avg"].sum() == 3
    names = [getattr(entry[2], "__name__", "") for entry in torch.serialization._package_registry]
    assert names.count("restore_cpu_rank_location") == 1
