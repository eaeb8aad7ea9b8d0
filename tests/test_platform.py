"""Platform detection, `doctor`, the environment checks and the conda environment files."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from cli_tuner.checks import environment, preflight
from cli_tuner.commands import rehearse, smoke
from cli_tuner.facts import machine
from cli_tuner.errors import EnvironmentProblem
from cli_tuner.facts.machine import Machine as Platform
from cli_tuner.config import load
from conftest import REPO

ANSI = "\x1b["


def a5000(driver: str, torch_cuda: str = "12.8", driver_cuda: str | None = None) -> Platform:
    return Platform(kind="cuda", torch_version=f"2.13.0+cu{torch_cuda.replace('.', '')}", torch_cuda=torch_cuda,
                    device_name="NVIDIA RTX A5000", total_memory_gib=23.68, compute_capability="8.6", bf16=True,
                    driver_version=driver, driver_cuda=driver_cuda, nvidia_gpus=["NVIDIA RTX A5000"], ram_gib=64)


def named(results, name):
    return next(c for c in results if c.name == name)


# ----------------------------------------------------------------------------- doctor through the CLI

def test_doctor_on_this_cpu_machine(entrypoint):
    result = entrypoint("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith("platform: CPU:")
    assert "no GPU" in out
    assert "recommended config: configs/axolotl_config.yaml" in out
    assert "python entrypoint.py rehearse --config configs/axolotl_config.yaml" in out
    assert re.search(r"^ok +torch: torch 2\.13\.0", out, re.M)
    assert "doctor: 0 error(s)" in out
    # the GPU probes are CUDA-only: no child process on CPU, an info line each
    assert re.search(r"^ok +bitsandbytes: bitsandbytes 0\.50\.2; the 4-bit kernel probe is not applicable on CPU", out, re.M)
    assert re.search(r"^ok +flash-attn: not applicable on CPU", out, re.M)
    assert ANSI not in out and ANSI not in result.stderr  # not a terminal: plain text


def test_doctor_with_a_config_estimates_its_target(entrypoint):
    result = entrypoint("doctor", "--config", "configs/axolotl_config.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no GPU here: estimating configs/axolotl_config.yaml for its target a5000" in result.stdout
    assert "memory: configs/axolotl_config.yaml: expected" in result.stdout


def test_doctor_fails_with_exit_5_when_the_config_cannot_fit(entrypoint, tmp_path):
    config = yaml.safe_load((REPO / "configs/axolotl_config.yaml").read_text())
    config["sequence_len"] = 32768
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(config))
    result = entrypoint("doctor", "--config", str(path))
    assert result.returncode == 5
    assert re.search(r"^error +memory: .*GiB \(expected [0-9.]+, training peak\) > 23\.5 GiB on RTX A5000", result.stdout, re.M)
    assert result.stderr.strip().startswith("error: doctor: memory: ")
    assert "fix: --set sequence_len=" in result.stderr


# ----------------------------------------------------------------------------- checks on given platforms

def test_old_driver_for_cu128_torch_fails_and_names_570():
    check = environment.check_driver(a5000("535.183.01"))
    assert not check.ok and check.level == "error"
    assert "570" in check.detail and "570" in check.fix
    assert "535.183.01" in check.detail


def test_driver_570_runs_cu128_but_not_cu130():
    assert environment.check_driver(a5000("570.124.06")).ok
    too_old = environment.check_driver(a5000("575.51.03", torch_cuda="13.0"))
    assert not too_old.ok and "580" in too_old.fix


def test_nvml_cuda_version_below_the_runtime_fails_even_for_unlisted_runtimes():
    check = environment.check_driver(a5000("999.0", torch_cuda="13.5", driver_cuda="13.0"))
    assert not check.ok


def test_checks_list_for_a_fake_a5000_includes_the_failing_driver():
    results = environment.checks(a5000("535.183.01"), deep=False)
    driver = named(results, "driver")
    assert driver.failed_error
    assert named(results, "flash-attn").level == "warning"  # sm_86 could use it; not installed here
    assert "flash-attn==2.8.3" in named(results, "flash-attn").fix


def test_cpu_torch_on_a_gpu_host_is_an_error_with_the_cu126_fix():
    found = Platform(kind="cpu", torch_version="2.13.0+cpu", torch_cuda=None, nvidia_gpus=["NVIDIA H100 80GB HBM3"],
                     driver_version="570.124.06")
    check = environment.check_torch_build(found)
    assert check.failed_error
    assert "download.pytorch.org/whl/cu126" in check.fix


@pytest.mark.parametrize("version", ["2.10.0+cpu", "2.13.1+cu130", "2.14.0", "2.11.0rc1", "not-a-version"])
def test_torch_outside_axolotls_supported_range_is_an_error(version):
    check = environment.check_torch(Platform(kind="cpu", torch_version=version), {"torch": "2.13.0"})
    assert check.failed_error and "outside Axolotl 0.19's supported range" in check.detail
    assert "pins 2.13.0" in check.detail and "torch==2.13.0" in check.fix


@pytest.mark.parametrize("version", ["2.11.0+cu130", "2.12.1+cpu", "2.13.0rc2"])
def test_torch_inside_axolotls_range_but_not_the_pin_is_a_warning_naming_the_pin(version):
    found = Platform(kind="cuda", torch_version=version, torch_cuda="13.0")
    check = environment.check_torch(found, {"torch": "2.13.0"})
    assert check.failed and not check.failed_error and check.level == "warning"
    assert "tested pin 2.13.0" in check.detail and version in check.detail


def test_the_pinned_torch_passes_whatever_its_build_tag():
    assert environment.check_torch(Platform(kind="cpu", torch_version="2.13.0+cpu"), {"torch": "2.13.0"}).ok


def test_the_torch_range_is_axolotls_own_requirement():
    """AXOLOTL_TORCH_RANGE is what the installed axolotl's metadata requires of torch, not a guess."""
    import importlib.metadata

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    torch_requirements = [Requirement(r) for r in importlib.metadata.requires("axolotl") or []]
    torch_requirements = [r for r in torch_requirements if r.name == "torch" and r.marker is None]
    assert len(torch_requirements) == 1
    assert torch_requirements[0].specifier == SpecifierSet(environment.AXOLOTL_TORCH_RANGE)


def test_pins_are_compared_with_a_requirements_file(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pins\ntorch==2.13.0\naxolotl==9.9.9\nrich==0.0.1  # wrong on purpose\n"
                            "PyYAML==6.0.3\nno-such-package-xyz==1.0\n")
    results = environment.checks(Platform(kind="cpu", torch_version="2.13.0+cpu"), gpu=False, probes=False, requirements=requirements)
    axolotl = named(results, "axolotl")
    assert axolotl.failed_error and "pins 9.9.9" in axolotl.detail
    pins = named(results, "pinned packages")
    assert pins.failed_error
    assert "rich 15.0.0 (pinned 0.0.1)" in pins.detail and "no-such-package-xyz missing" in pins.detail
    assert pins.fix.startswith("pip install rich==0.0.1 no-such-package-xyz==1.0")


def test_the_real_pins_match_this_environment():
    results = environment.checks(Platform(kind="cpu", torch_version="2.13.0+cpu"), gpu=False, probes=False)
    assert named(results, "axolotl").ok
    assert named(results, "pinned packages").ok


def test_python_other_than_311_is_a_warning():
    check = environment.check_python(Platform(kind="cpu", python_version="3.12.4"))
    assert not check.ok and check.level == "warning" and "3.11" in check.detail


def test_disk_check(tmp_path):
    assert environment.check_disk(tmp_path / "outputs", need_bytes=1).ok
    check = environment.check_disk(tmp_path, need_bytes=2**60)
    assert check.failed_error and "free space" in check.fix


def test_tracking_variable(monkeypatch):
    monkeypatch.setenv("AXOLOTL_DO_NOT_TRACK", "0")
    check = environment.check_tracking()
    assert not check.ok and "export AXOLOTL_DO_NOT_TRACK=1" in check.fix
    monkeypatch.setenv("AXOLOTL_DO_NOT_TRACK", "1")
    assert environment.check_tracking().ok


def test_mps_platform_checks():
    mac = Platform(kind="mps", system="Darwin", machine="arm64", torch_version="2.13.0", mps_built=True,
                   macos_version="15.1", ram_gib=32)
    results = environment.checks(mac, deep=False)
    assert named(results, "flash-attn").ok
    assert "8-bit optimizers have no MPS kernel" in named(results, "bitsandbytes").detail
    assert any(c.name == "PYTORCH_ENABLE_MPS_FALLBACK" for c in results)
    spec = machine.gpu_spec(mac)
    assert spec.kind == "mps" and spec.memory_gb == 32


# ----------------------------------------------------------------------------- recommendations

@pytest.mark.parametrize("found,config", [
    (a5000("570.124.06"), "configs/axolotl_config.yaml"),
    (Platform(kind="cuda", device_name="NVIDIA GeForce RTX 4090", total_memory_gib=23.5, compute_capability="8.9"),
     "configs/axolotl_config.yaml"),
    (Platform(kind="cuda", device_name="NVIDIA H100 80GB HBM3", total_memory_gib=79.1, compute_capability="9.0"),
     "configs/training_config_h100.yaml"),
    (Platform(kind="cuda", device_name="NVIDIA A100-SXM4-80GB", total_memory_gib=79.2, compute_capability="8.0"),
     "configs/training_config_h100.yaml"),
    (Platform(kind="cuda", device_name="NVIDIA H200", total_memory_gib=139.8, compute_capability="9.0"),
     "configs/training_config_h100.yaml"),
    (Platform(kind="mps", ram_gib=32), "configs/training_config_m4.yaml"),
    (Platform(kind="cpu"), "configs/axolotl_config.yaml"),
])
def test_recommend_config(found, config):
    assert machine.recommend_config(found) == config
    assert (REPO / config).is_file()


def test_gpu_spec_of_a_detected_a5000():
    spec = machine.gpu_spec(a5000("570.124.06"))
    assert spec.name == "RTX A5000" and spec.capacity_gib == pytest.approx(23.68)


def test_detect_here_is_cpu():
    found = machine.detect()
    assert found.kind == "cpu"
    assert found.torch_version.startswith("2.13.0")
    assert found.ram_gib > 0


def test_detect_here_initializes_no_cuda_in_its_process():
    script = textwrap.dedent("""
        import sys
        from cli_tuner.facts import machine
        found = machine.detect()
        import torch
        print(found.kind, torch.cuda.is_initialized())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["cpu", "False"]


# NVML's raw answers on the two pods, as nvidia-ml-py returns them (memory total in bytes)
MIB = 2**20
A5000_NVML = machine.NvmlReading(driver_version="570.124.06", cuda_driver_version=12080, names=("NVIDIA RTX A5000",),
                                 device_name="NVIDIA RTX A5000", total_bytes=24564 * MIB, capability=(8, 6))
H100_NVML = machine.NvmlReading(driver_version=b"570.124.06", cuda_driver_version=12080, names=(b"NVIDIA H100 80GB HBM3",),
                                device_name=b"NVIDIA H100 80GB HBM3", total_bytes=81559 * MIB, capability=(9, 0))


def _cuda_torch_machine(**fields) -> Platform:
    return Platform(kind="cpu", torch_version="2.13.0+cu128", torch_cuda="12.8", ram_gib=64, **fields)


def test_nvml_values_of_an_a5000_make_the_cuda_machine():
    found = machine.apply_nvml(_cuda_torch_machine(), A5000_NVML, cuda_count=1)
    assert (found.kind, found.device_name, found.compute_capability, found.bf16, found.device_count) == (
        "cuda", "NVIDIA RTX A5000", "8.6", True, 1)
    assert found.total_memory_gib == pytest.approx(23.99, abs=0.01)
    assert (found.driver_version, found.driver_cuda, found.nvidia_gpus) == ("570.124.06", "12.8", ["NVIDIA RTX A5000"])
    assert found.describe().startswith("CUDA: NVIDIA RTX A5000 (24.0 GiB, sm_86, driver 570.124.06, CUDA runtime 12.8)")
    assert found.as_record() == {"type": "cuda", "name": "NVIDIA RTX A5000", "cores": found.cpu_count, "ram_gib": 64,
                                 "torch": "2.13.0+cu128", "memory_gib": 24.0, "capability": "8.6", "cuda_runtime": "12.8",
                                 "driver": "570.124.06", "driver_cuda": "12.8", "count": 1}
    assert machine.recommend_config(found) == machine.CONFIG_CUDA_24GB
    assert machine.gpu_spec(found).name == "RTX A5000"
    assert environment.check_driver(found).ok


def test_nvml_values_of_an_h100_in_bytes_are_decoded():
    found = machine.apply_nvml(_cuda_torch_machine(), H100_NVML, cuda_count=1)
    assert (found.kind, found.device_name, found.compute_capability, found.bf16) == (
        "cuda", "NVIDIA H100 80GB HBM3", "9.0", True)
    assert found.total_memory_gib == pytest.approx(79.65, abs=0.01)
    assert found.nvidia_gpus == ["NVIDIA H100 80GB HBM3"] and found.driver_version == "570.124.06"
    assert found.as_record()["memory_gib"] == 79.6 and found.as_record()["count"] == 1
    assert machine.recommend_config(found) == machine.CONFIG_CUDA_80GB


def test_memory_the_driver_reserves_is_not_counted():
    # reserved_bytes (nvmlMemory_v2) is what CUDA cannot allocate; 316 MiB is an illustrative amount
    reading = dataclasses.replace(A5000_NVML, reserved_bytes=316 * MIB)
    found = machine.apply_nvml(_cuda_torch_machine(), reading, cuda_count=1)
    assert found.total_memory_gib == pytest.approx((24564 - 316) / 1024)


def test_pre_ampere_capability_has_no_native_bf16():
    reading = dataclasses.replace(A5000_NVML, device_name="Tesla T4", total_bytes=15360 * MIB, capability=(7, 5))
    found = machine.apply_nvml(_cuda_torch_machine(), reading, cuda_count=1)
    assert found.kind == "cuda" and found.compute_capability == "7.5" and not found.bf16


def test_a_gpu_torch_cannot_count_keeps_the_machine_cpu_with_the_driver_facts():
    found = machine.apply_nvml(_cuda_torch_machine(), A5000_NVML, cuda_count=0)
    assert found.kind == "cpu" and found.device_name is None
    assert found.nvidia_gpus == ["NVIDIA RTX A5000"] and found.driver_cuda == "12.8"
    assert environment.check_torch_build(found).failed_error


LINUX_ONLY = pytest.mark.skipif(sys.platform != "linux", reason="detect() asks NVML on Linux only")


@LINUX_ONLY
def test_detect_on_a_cuda_machine_reads_nvml_and_never_initializes_cuda(monkeypatch):
    """detect()'s CUDA path with NVML's A5000 answers and a CUDA torch's count: torch.cuda's lazy init
    (what creates the context) and the child-process fallback are never reached."""
    import torch

    def forbidden(*_args, **_kwargs):
        raise AssertionError("detect() initialized CUDA in the job's process")

    monkeypatch.setattr(machine, "read_nvml", lambda: A5000_NVML)
    monkeypatch.setattr(machine, "device_in_child", forbidden)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for name in ("_lazy_init", "init", "get_device_properties", "is_bf16_supported", "current_device", "is_available"):
        monkeypatch.setattr(torch.cuda, name, forbidden)
    found = machine.detect()
    assert (found.kind, found.device_name, found.compute_capability, found.device_count) == ("cuda", "NVIDIA RTX A5000", "8.6", 1)
    assert found.as_record()["driver"] == "570.124.06" and found.as_record()["cuda_runtime"] == "12.8"


@LINUX_ONLY
def test_without_nvml_device_facts_detect_asks_a_child(monkeypatch):
    import torch

    asked = []
    monkeypatch.setattr(machine, "read_nvml", lambda: None)
    monkeypatch.setattr(machine, "device_in_child", lambda: asked.append(1) or machine.parse_device_line(
        'noise\ncli-tuner-device: {"name": "NVIDIA RTX A5000", "total_memory": 25425608704, "capability": [8, 6], "count": 1}'))
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    found = machine.detect()
    assert asked == [1]
    assert (found.kind, found.device_name, found.compute_capability) == ("cuda", "NVIDIA RTX A5000", "8.6")
    assert found.total_memory_gib == pytest.approx(23.68, abs=0.01)


def test_the_device_child_on_this_cpu_machine_reports_no_device():
    done = subprocess.run([sys.executable, "-m", machine.MODULE, "device"], capture_output=True, text=True, cwd=REPO,
                          timeout=240)
    assert done.returncode == 1 and done.stdout.strip() == "cli-tuner-device: null"
    assert machine.parse_device_line(done.stdout) is None
    assert machine.parse_device_line("cli-tuner-device: {not json") is None


class FakeNvml:
    """The three pynvml calls `_first_visible` makes, over two GPUs."""
    UUIDS = ["GPU-1f2e3d4c-0000-0000-0000-000000000000", "GPU-9a8b7c6d-0000-0000-0000-000000000000"]

    def nvmlDeviceGetCount(self):
        return len(self.UUIDS)

    def nvmlDeviceGetHandleByIndex(self, index):
        if index >= len(self.UUIDS):
            raise IndexError(index)
        return ("handle", index)

    def nvmlDeviceGetUUID(self, handle):
        return self.UUIDS[handle[1]].encode()


@pytest.mark.parametrize("visible,handle", [
    (None, ("handle", 0)), ("1", ("handle", 1)), ("1,0", ("handle", 1)), ("GPU-9a8b", ("handle", 1)),
    ("MIG-5c4b3a29-0000", None), ("GPU-ffff", None),
])
def test_cuda_visible_devices_picks_the_nvml_device(monkeypatch, visible, handle):
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert machine._first_visible(FakeNvml()) == handle


# ----------------------------------------------------------------------------- preflight

def _preflight(mode: str, output_root):
    spec = {"smoke": smoke.SPEC, "rehearse": rehearse.SPEC}[mode]
    loaded = load(REPO / "configs" / "axolotl_config.yaml")
    results, _ = preflight.environment_checks(spec, machine.detect(), None, loaded, preflight.resolve_facts(loaded),
                                              output_root)
    preflight.raise_environment(f"{mode} preflight", results)


def test_preflight_smoke_on_cpu_stops_with_the_fix(tmp_path):
    with pytest.raises(EnvironmentProblem) as caught:
        _preflight("smoke", tmp_path / "outputs")
    assert caught.value.exit_code == 5
    assert "no CUDA or MPS device" in caught.value.message and "rehearse" in caught.value.message


def test_preflight_rehearse_passes_on_cpu(tmp_path):
    _preflight("rehearse", tmp_path / "outputs")


# ----------------------------------------------------------------------------- conda environment files

def _yml_pins(path: Path) -> tuple[dict[str, str], list[str], dict]:
    env = yaml.safe_load(path.read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict) and "pip" in item)
    pins, options = {}, []
    for line in pip_section:
        if line.startswith("-"):
            options.append(line)
            continue
        name, version = line.split("==")
        pins[name] = version
    return pins, options, env


@pytest.mark.parametrize("name", ["environment-remote.yml", "environment-m4.yml"])
def test_environment_files_pin_the_same_versions_as_requirements(name):
    pins, _, env = _yml_pins(REPO / name)
    expected = environment.read_pins(REPO / "requirements.txt")
    if name == "environment-remote.yml":  # a pod: the runpod extra too (the CUDA image installs it)
        expected |= environment.read_pins(REPO / "requirements-runpod.txt")
    assert pins == expected
    assert "python=3.11" in env["dependencies"]
    assert env["variables"]["AXOLOTL_DO_NOT_TRACK"] == "1"


def test_remote_environment_uses_the_image_torch_flavour_and_the_hub_kernel():
    _, options, _ = _yml_pins(REPO / "environment-remote.yml")
    # torch 2.13 has no cu128 build: the image's cu126 flavour (Dockerfile.cuda)
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cu126"]
    text = (REPO / "environment-remote.yml").read_text()
    post = re.findall(r"^# post-create: (.+)$", text, re.M)
    assert len(post) == 1 and post[0].startswith("python scripts/fetch_attention_kernel.py --dest ")
    assert "LOCAL_KERNELS=kernels-community/flash-attn2=" in post[0]
    assert "flash-attn" not in (REPO / "environment-m4.yml").read_text().split("name:")[1]


def test_flash_attn_pin_is_axolotls_extra():
    from importlib.metadata import requires

    extra = [r for r in requires("axolotl") if r.startswith("flash-attn") and 'extra == "flash-attn"' in r]
    assert extra and f"=={environment.FLASH_ATTN_PIN}" in extra[0]


def test_a_torch_inside_axolotls_range_passes_preflight_with_its_warning_in_the_plan(locked_data, tmp_path, monkeypatch):
    """A GPU machine's own torch (2.11.0 here) does not stop a training mode; the warning names the
    pin and rides in plan.findings, which the pipeline writes to provenance.json's preflight_warnings."""
    from conftest import data_sets

    monkeypatch.setenv("AXOLOTL_DO_NOT_TRACK", "1")
    monkeypatch.setattr(machine, "detect", lambda: Platform(kind="cpu", torch_version="2.11.0+cpu",
                                                            python_version="3.11.7"))
    loaded = load(REPO / "configs/axolotl_config.yaml", sets=[s for s in data_sets(locked_data) if s != "--set"])
    plan = preflight.prepare(rehearse.SPEC, loaded, output_root=tmp_path / "out")
    torch_findings = [c for c in plan.findings if c.name == "torch"]
    assert len(torch_findings) == 1 and torch_findings[0].level == "warning"
    assert "tested pin 2.13.0" in torch_findings[0].line()

    monkeypatch.setattr(machine, "detect", lambda: Platform(kind="cpu", torch_version="2.10.0+cpu",
                                                            python_version="3.11.7"))
    with pytest.raises(EnvironmentProblem) as raised:
        preflight.prepare(rehearse.SPEC, loaded, output_root=tmp_path / "out")
    assert raised.value.exit_code == 5 and "outside Axolotl 0.19's supported range" in str(raised.value)
