"""The CUDA probes' process plumbing, on a machine without a GPU: real child processes that report
no CUDA device, and real child processes that fail each way a pod fails (tests/probe_targets.py),
parsed into the `Check` doctor and preflight show. The GPU path itself needs a GPU."""

from __future__ import annotations

import importlib.machinery
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cli_tuner.checks import environment, gpu_probes, preflight
from cli_tuner.commands import smoke
from cli_tuner.config import load
from cli_tuner.facts.machine import Machine
from conftest import REPO

TESTS = Path(__file__).resolve().parent
MISSING_SYMBOL = "_ZN3c1017cli_tuner_missingEv"   # c10::cli_tuner_missing(), which no library defines
A5000 = Machine(kind="cuda", torch_version="2.13.0+cu128", torch_cuda="12.8", device_name="NVIDIA RTX A5000",
                total_memory_gib=23.68, compute_capability="8.6", bf16=True, driver_version="570.124.06",
                nvidia_gpus=["NVIDIA RTX A5000"])


@pytest.fixture
def targets(monkeypatch):
    """Children can import tests/probe_targets.py."""
    monkeypatch.setenv("PYTHONPATH", str(TESTS))


@pytest.fixture(scope="module")
def fake_extension(tmp_path_factory) -> Path:
    """A real Python extension file whose shared object needs a symbol nothing defines."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build an extension with a missing symbol")
    folder = tmp_path_factory.mktemp("ext")
    source = folder / "fake.c"
    source.write_text(f"extern void {MISSING_SYMBOL}(void);\n"
                      f"void *PyInit_fake_flash_ext(void) {{ {MISSING_SYMBOL}(); return 0; }}\n")
    target = folder / ("fake_flash_ext" + importlib.machinery.EXTENSION_SUFFIXES[0])
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(target), str(source)], check=True, timeout=60)
    return folder


# ----------------------------------------------------------------------------- the real probes, here

@pytest.mark.parametrize("probe", ["bnb4bit", "flash-attn"])
def test_the_real_probe_reports_no_cuda_device_as_one_json_line(probe):
    done = subprocess.run([sys.executable, "-m", gpu_probes.PROBE_MODULE, probe], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith(gpu_probes.MARKER)]
    assert len(lines) == 1, done.stdout
    result = json.loads(lines[0][len(gpu_probes.MARKER):])
    assert result["probe"] == probe and result["ok"] is False and result["kind"] == "no-cuda"
    assert "sees no CUDA device" in result["detail"] and result["error_class"] == "NoCuda"


def test_an_unknown_probe_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", gpu_probes.PROBE_MODULE, "nonsense"], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert done.returncode == 2 and "bnb4bit" in done.stderr and "flash-attn" in done.stderr


def test_the_4bit_probe_body_runs_on_the_cpu_backend():
    """The same quantize / dequantize / matmul_4bit calls and tolerances the CUDA probe makes."""
    assert "matmul_4bit matches the dequantized weight" in gpu_probes.bnb_4bit_round("cpu")


# ----------------------------------------------------------------------------- each failure, a real process

def probe(name: str, timeout: float = 60) -> gpu_probes.ProbeResult:
    return gpu_probes.run(name, timeout=timeout, module="probe_targets")


def test_an_undefined_symbol_is_an_abi_mismatch(targets, fake_extension, monkeypatch):
    monkeypatch.setenv("PROBE_TARGETS_EXT_DIR", str(fake_extension))
    result = probe("undefined-symbol")
    assert (result.ok, result.kind, result.error_class) == (False, "abi", "ImportError")
    assert f"undefined symbol: {MISSING_SYMBOL}" in result.error_line
    check = gpu_probes.as_check("flash-attn", result, A5000, "2.8.3")
    assert check.failed_error
    assert "flash-attn 2.8.3 on NVIDIA RTX A5000: its compiled extension does not match this torch" in check.detail
    assert MISSING_SYMBOL in check.detail
    assert "wheel built for this torch" in check.fix and "Dockerfile.cuda" in check.fix
    assert "fetch_attention_kernel.py" in check.fix and "attn_implementation=sdpa" in check.fix


def test_a_missing_module(targets):
    result = probe("missing-module")
    assert (result.kind, result.error_class) == ("missing", "ModuleNotFoundError")
    assert "flash_attn_2_cuda_not_installed_here" in result.error_line


def test_no_kernel_image_names_the_arch_list(targets):
    result = probe("no-kernel")
    assert result.kind == "arch"
    assert result.error_line == "CUDA error: no kernel image is available for execution on the device"
    check = gpu_probes.as_check("flash-attn", result, A5000, "2.8.3")
    assert "no kernel for this GPU's architecture" in check.detail
    assert "kernels for sm_86" in check.fix and "attn_implementation=sdpa" in check.fix
    assert "sm_86" in gpu_probes.as_check("bitsandbytes", result, A5000, "0.50.2").fix


def test_another_cuda_error(targets):
    result = probe("cuda-error")
    assert result.kind == "cuda" and "illegal memory access" in result.error_line
    assert "driver" in gpu_probes.as_check("bitsandbytes", result, A5000, "0.50.2").fix


def test_a_wrong_numeric_result(targets):
    result = probe("wrong-result")
    assert (result.kind, result.error_class) == ("wrong-result", "WrongResult")
    assert "the attention output differs from the reference by 0.5000" in result.error_line
    assert "computes wrong values" in gpu_probes.as_check("flash-attn", result, A5000, "2.8.3").detail


def test_a_segfault_is_a_crash_with_faulthandlers_line(targets):
    result = probe("segfault")
    assert (result.ok, result.kind, result.error_class) == (False, "crash", "SIGSEGV")
    assert "Fatal Python error: Segmentation fault" in result.error_line and "probe_targets.py" in result.error_line
    check = gpu_probes.as_check("flash-attn", result, A5000, "2.8.3")
    assert "crashed: the segfault probe's process died of SIGSEGV [Fatal Python error" in check.detail
    assert "--force-reinstall" in check.fix and "python -m cli_tuner.checks.gpu_probes segfault shows it again" in check.fix


def test_a_hang_is_killed_at_the_timeout(targets):
    result = probe("hang", timeout=3)
    assert result.kind == "timeout" and "did not finish in 3 s" in result.detail
    assert result.seconds < 30
    assert gpu_probes.TIMEOUT_ENV in gpu_probes.as_check("bitsandbytes", result, A5000).fix


def test_an_exit_without_a_result(targets):
    result = probe("silent-exit")
    assert result.kind == "no-result" and "status 3" in result.detail
    assert result.error_line == "libcuda: something went wrong"


def test_noise_on_stdout_does_not_hide_the_result(targets):
    result = probe("noisy-ok")
    assert result.ok and result.detail == "fine despite the noise"
    assert gpu_probes.as_check("flash-attn", result, A5000).ok


def test_the_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(gpu_probes.TIMEOUT_ENV, "42")
    assert gpu_probes.default_timeout() == 42
    monkeypatch.setenv(gpu_probes.TIMEOUT_ENV, "soon")
    assert gpu_probes.default_timeout() == gpu_probes.DEFAULT_TIMEOUT_S


# ----------------------------------------------------------------------------- wired into the checks

def test_cpu_and_mps_say_not_applicable_and_start_no_probe():
    for kind in ("cpu", "mps"):
        found = Machine(kind=kind, torch_version="2.13.0")
        flash = environment.check_flash_attn(found, deep=True)
        assert flash.ok and flash.level == "info" and "not applicable" in flash.detail
    bnb = environment.check_bitsandbytes(Machine(kind="cpu"), {"bitsandbytes": "0.50.2"}, deep=True)
    assert bnb.ok and bnb.level == "info" and "not applicable on CPU" in bnb.detail


def test_deep_checks_on_cuda_run_in_a_child_and_the_parent_never_imports_torch(tmp_path):
    """A fake A5000 on this CPU machine: both deep checks reach a child, which sees no CUDA device,
    and the job's process has not imported torch, so it cannot have touched CUDA."""
    site = tmp_path / "site"   # flash-attn's metadata and package folder, so the check goes on to its probe
    (site / "flash_attn-2.8.3.dist-info").mkdir(parents=True)
    (site / "flash_attn").mkdir()
    (site / "flash_attn" / "__init__.py").write_text("")
    (site / "flash_attn-2.8.3.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: flash_attn\nVersion: 2.8.3\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.append({str(site)!r})
        from cli_tuner.checks import environment
        from cli_tuner.facts.machine import Machine
        found = Machine(kind="cuda", torch_cuda="12.8", device_name="NVIDIA RTX A5000", compute_capability="8.6")
        for check in (environment.check_bitsandbytes(found, {{"bitsandbytes": "0.50.2"}}, deep=True),
                      environment.check_flash_attn(found, deep=True)):
            print(check.level, check.ok, check.line())
        print("torch imported:", "torch" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("error False bitsandbytes: bitsandbytes 0.50.2 on NVIDIA RTX A5000: in a child process: "
                               "torch 2.13.0+cpu (CUDA None) sees no CUDA device")
    assert lines[1].startswith("error False flash-attn: flash-attn 2.8.3 on NVIDIA RTX A5000: in a child process:")
    assert lines[2] == "torch imported: False"


def test_preflight_smoke_on_cuda_probes_bitsandbytes_in_a_child(tmp_path):
    loaded = load(REPO / "configs" / "axolotl_config.yaml")   # load_in_4bit: bitsandbytes is needed
    results, _ = preflight.environment_checks(smoke.SPEC, A5000, None, loaded, preflight.resolve_facts(loaded),
                                              tmp_path / "outputs")
    bnb = next(c for c in results if c.name == "bitsandbytes")
    assert bnb.failed_error and "in a child process" in bnb.detail and "sees no CUDA device" in bnb.detail
