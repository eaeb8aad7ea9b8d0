"""Every shipped config through a real `axolotl train` rehearsal on CPU, on its own training path:
4-bit NF4 where the config quantizes, its optimizer, precision, gradient checkpointing, accumulation,
micro batch and packing; the divergences recorded in provenance are exactly the pinned ones."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import REPO, data_sets, make_locked_data, require_reference, run_folders
from test_config_matrix import ALLOWED, KEPT

pytestmark = pytest.mark.slow

# The default config runs in tests/test_rehearse.py; these are the others, one rehearsal each.
CASES = {
    "training_config_h100.yaml": "mistral",
    "training_config_m4.yaml": "mistral",
}


@pytest.fixture(scope="module", params=sorted(CASES))
def rehearsed(request, tmp_path_factory):
    from conftest import run_entrypoint

    name = request.param
    root = tmp_path_factory.mktemp(name.removesuffix(".yaml"))
    # 300 examples of ~27 Mistral tokens: more than the 3 x 2048 tokens one optimizer step of the H100
    # config's rehearsal needs (4 packed bins of 4 x 512); 200 are refused with exit 3
    files = make_locked_data(root / "data", train=300, val=8, test=8)
    result = run_entrypoint("rehearse", "--config", str(REPO / "configs" / name), *data_sets(files),
                            "--tokenizer", str(require_reference(CASES[name])), "--output-root", str(root / "outputs"),
                            env={"WANDB_API_KEY": ""})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run,) = run_folders(root / "outputs")
    return name, result, run


def test_trains_the_configs_own_path(rehearsed):
    name, result, run = rehearsed
    pod = yaml.safe_load((REPO / "configs" / name).read_text())
    resolved = yaml.safe_load((run / "resolved_config.yaml").read_text())
    for key in KEPT:
        if key != "datasets":
            assert resolved.get(key) == pod.get(key), key
    log = (run / "train.log").read_text()
    if pod.get("load_in_4bit"):
        assert "prepare_model_for_kbit_training" in log and "4-bit layers" in log
    assert json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    adapter = json.loads((run / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == set(pod["lora_target_modules"]) and adapter["r"] == pod["lora_r"]


def test_divergences_in_provenance_are_the_pinned_ones(rehearsed):
    name, result, run = rehearsed
    record = json.loads((run / "provenance.json").read_text())
    divergences = record["rehearsal"]["divergences"]
    assert {d["key"] for d in divergences} == ALLOWED[(name, None)]
    assert all(d["reason"] for d in divergences)
    for d in divergences:  # printed once each
        assert result.stdout.count(f"  {d['key']}: ") == 1, d["key"]
