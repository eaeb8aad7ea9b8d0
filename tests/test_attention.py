"""The flash-attention source of a machine (facts.attention), the one sdpa rule (checks.attention)
and where the job applies it: a CUDA machine with no source trains a flash-attention config with
sdpa and the pod's batching, before the step arithmetic reads the config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_tuner.batching import steps
from cli_tuner.checks import attention, environment, preflight
from cli_tuner.commands import smoke, validate as validate_command
from cli_tuner.config import load
from cli_tuner.facts import attention as facts
from cli_tuner.facts.machine import Machine
from cli_tuner.training import rehearsal

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
H100 = Machine(kind="cuda", torch_version="2.13.0+cu126", torch_cuda="12.6", device_name="NVIDIA H100 80GB HBM3",
               total_memory_gib=79.2, compute_capability="9.0", bf16=True, device_count=1)
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def this_torch_build() -> str:
    """The kernels build folder name this machine's torch loads (CPU torch here)."""
    import torch

    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    backend = f"cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else "cpu"
    return f"torch{major}{minor}-cxx11-{backend}-x86_64-linux"


def kernel_cache(root: Path, builds: list[str], repo_type: str = "kernels") -> Path:
    """A Hugging Face cache holding the flash-attn2 kernel's v2 branch, laid out as huggingface_hub writes it."""
    folder = root / f"{repo_type}--kernels-community--flash-attn2"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "v2").write_text(COMMIT)
    for build in builds:
        variant = folder / "snapshots" / COMMIT / "build" / build
        variant.mkdir(parents=True)
        (variant / "__init__.py").write_text("")
    return root


# ----------------------------------------------------------------------------- the pins it mirrors

def test_the_kernel_is_the_one_axolotl_pins_and_transformers_falls_back_to():
    from axolotl.monkeypatch.attention.fa2_hub_kernel import FA2_HUB_KERNEL_VERSION
    from transformers.modeling_flash_attention_utils import FLASH_ATTN_KERNEL_FALLBACK

    assert facts.KERNEL_VERSION == FA2_HUB_KERNEL_VERSION
    assert facts.KERNEL_REPO == FLASH_ATTN_KERNEL_FALLBACK["flash_attention_2"]


# ----------------------------------------------------------------------------- facts.attention

def test_none_here_names_both_missing_sources(tmp_path):
    found = facts.detect({"HF_HUB_CACHE": str(tmp_path)})
    assert found.kind == facts.NONE and not found.available
    assert "flash_attn package is not installed" in found.detail and "not in the kernel cache" in found.detail


@pytest.mark.parametrize("repo_type", ["kernels", "models"])
def test_the_hub_kernel_in_the_cache_is_found_with_its_commit_and_build(tmp_path, repo_type):
    cache = kernel_cache(tmp_path, [this_torch_build(), "torch213-cxx11-cu126-x86_64-linux"], repo_type)
    found = facts.detect({"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    assert found.kind == facts.HUB_KERNEL and found.revision == COMMIT
    assert Path(found.kernel_path).name == this_torch_build()
    assert "HF_HUB_OFFLINE" not in found.detail
    online = facts.detect({"HF_HUB_CACHE": str(cache)})
    assert "unless HF_HUB_OFFLINE=1" in online.detail


def test_kernels_cache_wins_over_hf_hub_cache(tmp_path):
    cache = kernel_cache(tmp_path / "kernels", [this_torch_build()])
    found = facts.detect({"KERNELS_CACHE": str(cache), "HF_HUB_CACHE": str(tmp_path / "empty")})
    assert found.kind == facts.HUB_KERNEL


def test_a_kernel_without_a_build_for_this_torch_is_none(tmp_path):
    cache = kernel_cache(tmp_path, ["torch212-cxx11-cu126-x86_64-linux"])
    found = facts.detect({"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    assert found.kind == facts.NONE and "has no build for torch" in found.detail
    assert "torch212-cxx11-cu126-x86_64-linux" in found.detail


def test_local_kernels_is_read_first(tmp_path):
    folder = tmp_path / "flash-attn2"
    (folder / "build" / this_torch_build()).mkdir(parents=True)
    (folder / "kernel.json").write_text(json.dumps({"commit": COMMIT}))
    found = facts.detect({"LOCAL_KERNELS": f"other/kernel=/nowhere:{facts.KERNEL_REPO}={folder}",
                          "HF_HUB_CACHE": str(tmp_path / "empty")})
    assert found.kind == facts.HUB_KERNEL and found.revision == COMMIT and "LOCAL_KERNELS" in found.detail
    gone = facts.detect({"LOCAL_KERNELS": f"{facts.KERNEL_REPO}={tmp_path / 'missing'}"})
    assert gone.kind == facts.NONE and "does not exist" in gone.detail


def test_the_cache_layout_is_the_one_kernels_itself_resolves_offline(tmp_path):
    """kernels' own offline lookup (version 2 -> commit -> this torch's build) finds the folder the fact names."""
    cache = kernel_cache(tmp_path, [this_torch_build()])
    script = ("from kernels._versions import select_revision_or_version as s; from kernels.utils import install_kernel; "
              f"r = s({facts.KERNEL_REPO!r}, revision=None, version={facts.KERNEL_VERSION}); "
              f"print(r); print(install_kernel({facts.KERNEL_REPO!r}, revision=r))")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    env.pop("KERNELS_CACHE", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    revision, path = done.stdout.split()[-2:]
    found = facts.detect({"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    assert revision == found.revision == COMMIT and Path(path) == Path(found.kernel_path)


def test_the_module_prints_json_and_exits_1_without_a_source(tmp_path):
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("KERNELS_CACHE", None)
    env.pop("LOCAL_KERNELS", None)
    done = subprocess.run([sys.executable, "-m", "cli_tuner.facts.attention"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
    assert done.returncode == 1 and json.loads(done.stdout)["kind"] == facts.NONE


# ----------------------------------------------------------------------------- the rule and where it applies

NO_SOURCE = facts.AttentionSource(facts.NONE, "no flash-attention source: test")
KERNEL = facts.AttentionSource(facts.HUB_KERNEL, "hub kernel: test", "0.16.2", "/opt/k", COMMIT)
FLASH_CONFIGS = [("training_config_h100.yaml", []), ("axolotl_config.yaml", ["overlays/packing.yaml"])]


@pytest.mark.parametrize("config,overlays", FLASH_CONFIGS)
def test_no_source_on_cuda_trains_with_sdpa_and_the_pods_batching(config, overlays):
    loaded = load(CONFIGS / config, [CONFIGS / o for o in overlays])
    assert attention.asks_for_flash(loaded.axolotl) and loaded.axolotl.get("sample_packing")
    flash_need = steps.need_for_one_step(loaded.axolotl)
    changes = attention.machine_fallback(loaded.axolotl, H100, NO_SOURCE)
    assert [(c["key"], c["to"]) for c in changes] == [("attn_implementation", "sdpa"), ("multipack_real_batches", False)]
    assert loaded.axolotl["attn_implementation"] == "sdpa" and loaded.axolotl["multipack_real_batches"] is False
    assert steps.need_for_one_step(loaded.axolotl) == flash_need   # the step and eval arithmetic is unchanged
    line = attention.describe(changes)
    assert "\n" not in line and "'flash_attention_2' -> 'sdpa'" in line and "no flash-attention source" in line
    assert "fix: rebuild the image" in line


@pytest.mark.parametrize("config,overlays", FLASH_CONFIGS)
def test_a_source_or_no_gpu_changes_nothing(config, overlays):
    for machine, source in ((H100, KERNEL), (Machine(kind="cpu"), NO_SOURCE), (None, NO_SOURCE)):
        loaded = load(CONFIGS / config, [CONFIGS / o for o in overlays])
        before = dict(loaded.axolotl)
        assert attention.machine_fallback(loaded.axolotl, machine, source) == []
        assert loaded.axolotl == before


def test_a_config_without_flash_attention_is_left_alone():
    loaded = load(CONFIGS / "axolotl_config.yaml")
    assert not attention.asks_for_flash(loaded.axolotl)
    assert attention.machine_fallback(loaded.axolotl, H100, NO_SOURCE) == []


def test_an_explicit_multipack_setting_is_kept():
    cfg = {"attn_implementation": "flash_attention_2", "sample_packing": True, "multipack_real_batches": True}
    changes = attention.sdpa_instead(cfg, "why")
    assert [c["key"] for c in changes] == ["attn_implementation"] and cfg["multipack_real_batches"] is True


def test_the_deprecated_flash_attention_flag_becomes_sdpa_with_the_pods_batching():
    cfg = {"flash_attention": True, "sample_packing": True}
    changes = attention.sdpa_instead(cfg, "why")
    assert cfg == {"attn_implementation": "sdpa", "sample_packing": True, "multipack_real_batches": False}
    assert {c["key"] for c in changes} == {"flash_attention", "multipack_real_batches"}
    assert "attention fallback: flash_attention: True -> (removed)" in attention.describe(changes)


@pytest.mark.parametrize("config,overlays", FLASH_CONFIGS)
def test_the_rehearsal_uses_the_same_rule(config, overlays, tmp_path):
    loaded = load(CONFIGS / config, [CONFIGS / o for o in overlays])
    cfg, divergences = rehearsal.rehearsal_config(loaded.axolotl, tmp_path, 2, None, "config")
    pod = dict(loaded.axolotl)
    made = attention.sdpa_instead(pod, "flash-attn is CUDA-only")
    by_key = {d["key"]: d for d in divergences}
    for change in made:
        assert by_key[change["key"]] == {"key": change["key"], "pod": change["from"], "rehearsal": change["to"],
                                         "reason": change["reason"]}
        assert cfg[change["key"]] == pod[change["key"]]


def test_preflight_applies_it_before_the_plan_is_read(monkeypatch, tmp_path):
    """smoke on a CUDA machine with no source: the Plan's config is already sdpa when prepare returns."""
    from cli_tuner.facts import machine as machine_facts

    monkeypatch.setattr(machine_facts, "detect", lambda: H100)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("KERNELS_CACHE", raising=False)
    monkeypatch.delenv("LOCAL_KERNELS", raising=False)
    loaded = load(CONFIGS / "axolotl_config.yaml", [CONFIGS / "overlays" / "packing.yaml"])
    plan = preflight.prepare(smoke.SPEC, loaded, output_root=tmp_path, check_environment=False)
    assert plan.attention.kind == facts.NONE
    assert plan.loaded.axolotl["attn_implementation"] == "sdpa" and plan.loaded.axolotl["multipack_real_batches"] is False
    record = plan.attention_record()
    assert record["source"]["kind"] == facts.NONE and [c["key"] for c in record["fallback"]] == [
        "attn_implementation", "multipack_real_batches"]
    validate = preflight.prepare(validate_command.SPEC, load(CONFIGS / "training_config_h100.yaml"), check_environment=False)
    assert validate.attention is None and validate.loaded.axolotl["attn_implementation"] == "flash_attention_2"


# ----------------------------------------------------------------------------- doctor's line

def test_doctor_says_in_one_line_that_there_is_no_source_and_the_fix():
    check = environment.check_flash_attn(H100, deep=True, source=NO_SOURCE)
    assert check.level == "warning" and not check.ok
    assert "trains with sdpa here" in check.detail and "\n" not in check.line()
    assert "Dockerfile.cuda" in check.fix and "fetch_attention_kernel.py" in check.fix


def test_doctor_names_the_hub_kernel_when_that_is_the_source():
    check = environment.check_flash_attn(H100, deep=False, source=KERNEL)
    assert check.ok and "hub kernel" in check.detail


# ----------------------------------------------------------------------------- the probe's loader

KERNEL_MODULE = '''
import torch

def flash_attn_func(q, k, v, causal=False, **kwargs):
    """(batch, seqlen, heads, headdim) attention through SDPA: a CPU stand-in for the CUDA build."""
    groups = q.shape[2] // k.shape[2]
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.repeat_interleave(groups, dim=2).transpose(1, 2),
        v.repeat_interleave(groups, dim=2).transpose(1, 2), is_causal=causal)
    return out.transpose(1, 2)

def flash_attn_varlen_func(*args, **kwargs):
    raise NotImplementedError
'''


def test_the_probe_loads_the_kernel_through_transformers_from_local_kernels(tmp_path):
    """What the image relies on: transformers' flash_attention_2 fallback, after Axolotl's version pin,
    loads the kernel from the LOCAL_KERNELS folder (no Hub). A CPU build of the kernel's folder layout
    stands in for the CUDA build, which only a GPU can run."""
    build = tmp_path / "flash-attn2" / "build" / this_torch_build()
    (build / "flash_attn2").mkdir(parents=True)
    (build / "metadata.json").write_text(json.dumps({"id": "flash_attn2_cli_tuner_test", "name": "flash-attn2", "version": 2,
                                                     "license": "BSD-3-Clause", "python-depends": [],
                                                     "backend": {"type": "cpu"}}))
    (build / "flash_attn2" / "__init__.py").write_text(KERNEL_MODULE)
    script = ("from cli_tuner.checks import gpu_probes; from cli_tuner.facts import attention; import torch; "
              "print(attention.detect().kind); f = gpu_probes.load_hub_kernel_attention(); print(f.__module__); "
              "q = torch.randn(1, 8, 4, 16); k = torch.randn(1, 8, 2, 16); print(tuple(f(q, k, k, causal=True).shape))")
    env = {**os.environ, "LOCAL_KERNELS": f"{facts.KERNEL_REPO}={tmp_path / 'flash-attn2'}", "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(tmp_path / "empty"), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    kind, module, shape = done.stdout.strip().splitlines()[-3:]
    assert kind == facts.HUB_KERNEL and module == "flash_attn2_cli_tuner_test" and shape == "(1, 8, 4, 16)"
