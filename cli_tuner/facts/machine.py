"""What machine this is: CPU, CUDA GPU or Apple MPS, its driver, and the config that suits it.

Detected once per command (the plan carries it); provenance records the same description and
evaluation picks its device from it. torch is imported inside `detect`, NVML through
nvidia-ml-py, so importing this module costs nothing.
"""

from __future__ import annotations

import dataclasses
import os
import platform as py_platform
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import gpus

GIB = 2**30

CONFIG_CUDA_24GB = "configs/axolotl_config.yaml"
CONFIG_CUDA_80GB = "configs/training_config_h100.yaml"
CONFIG_MPS = "configs/training_config_m4.yaml"


@dataclass
class Machine:
    kind: str                                 # "cuda", "mps" or "cpu"
    python_version: str = py_platform.python_version()
    system: str = py_platform.system()
    machine: str = py_platform.machine()
    cpu_count: int = os.cpu_count() or 1
    ram_gib: float = 0.0
    torch_version: str | None = None          # e.g. "2.13.0+cu128"
    torch_cuda: str | None = None             # CUDA runtime torch was built with, e.g. "12.8"
    mps_built: bool = False
    device_name: str | None = None
    total_memory_gib: float | None = None
    compute_capability: str | None = None     # "8.6"
    bf16: bool = False
    driver_version: str | None = None         # "570.124.06"
    driver_cuda: str | None = None            # newest CUDA the driver supports, from NVML: "12.8"
    nvidia_gpus: list[str] = field(default_factory=list)  # what the driver sees, even if torch cannot use it
    macos_version: str | None = None
    device_count: int = 0

    def describe(self) -> str:
        software = f"Python {self.python_version}, torch {self.torch_version or 'not installed'}"
        if self.kind == "cuda":
            driver = f", driver {self.driver_version}" if self.driver_version else ""
            return (f"CUDA: {self.device_name} ({self.total_memory_gib:.1f} GiB, sm_{(self.compute_capability or '').replace('.', '')}"
                    f"{driver}, CUDA runtime {self.torch_cuda}), {software}")
        if self.kind == "mps":
            return f"MPS: Apple {self.machine} ({self.ram_gib:.0f} GB unified memory, macOS {self.macos_version}), {software}"
        return f"CPU: {self.machine}, {self.cpu_count} cores, {self.ram_gib:.1f} GiB RAM, {self.system}, {software}, no GPU"


    def as_record(self) -> dict:
        """The description provenance keeps: what trained, on which driver and runtime."""
        record = {"type": self.kind, "name": self.device_name or self.machine, "cores": self.cpu_count,
                  "ram_gib": self.ram_gib, "torch": self.torch_version}
        if self.kind == "cuda":
            record.update(memory_gib=round(self.total_memory_gib or 0, 1), capability=self.compute_capability,
                          cuda_runtime=self.torch_cuda, driver=self.driver_version, driver_cuda=self.driver_cuda,
                          count=self.device_count)
        return record

    @property
    def torch_device(self) -> str:
        """The device string torch uses for this machine's accelerator."""
        return self.kind


def _nvml() -> tuple[str | None, str | None, list[str]]:
    """Driver version, the CUDA version it supports, and GPU names, from NVML (nvidia-ml-py)."""
    try:
        import pynvml
    except ImportError:
        return _proc_driver(), None, []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver or no device: NVML raises its own error classes
        return _proc_driver(), None, []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else driver
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()  # 12080 -> "12.8"
        names = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
            names.append(name.decode() if isinstance(name, bytes) else name)
        return driver, f"{cuda // 1000}.{cuda % 1000 // 10}", names
    except Exception:
        return _proc_driver(), None, []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _proc_driver() -> str | None:
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?([\d.]+)", text)
    return match.group(1) if match else None


def detect() -> Machine:
    """Inspect this machine: torch for CUDA/MPS, NVML for the driver."""
    found = Machine(kind="cpu", ram_gib=round(gpus.system_ram_gib(), 1))
    if found.system == "Darwin":
        found.macos_version = py_platform.mac_ver()[0] or None
    found.driver_version, found.driver_cuda, found.nvidia_gpus = _nvml() if found.system == "Linux" else (None, None, [])
    try:
        import torch
    except ImportError:
        return found
    found.torch_version = torch.__version__
    found.torch_cuda = torch.version.cuda
    found.mps_built = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_built())
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        found.kind = "cuda"
        found.device_name = props.name
        found.total_memory_gib = props.total_memory / GIB
        found.compute_capability = f"{props.major}.{props.minor}"
        found.bf16 = torch.cuda.is_bf16_supported()
        found.device_count = torch.cuda.device_count()
    elif found.mps_built and torch.backends.mps.is_available():
        found.kind = "mps"
        found.device_name = "Apple GPU (MPS)"
        found.total_memory_gib = found.ram_gib
        found.bf16 = version_tuple(found.macos_version or "0") >= (14,)
    return found


def gpu_spec(found: Machine) -> gpus.GpuSpec:
    """The memory-estimate target for the detected device."""
    if found.kind == "cuda":
        return gpus.spec_for_device(found.device_name or "CUDA GPU", found.total_memory_gib or 0, found.compute_capability or "")
    if found.kind == "mps":
        return dataclasses.replace(gpus.KNOWN_GPUS["m4"], name=f"Apple {found.machine} ({found.ram_gib:.0f} GB unified)",
                                   memory_gb=found.ram_gib)
    return gpus.lookup("cpu")


def recommend_config(found: Machine) -> str:
    if found.kind == "cuda":
        memory = found.total_memory_gib or 0
        name = (found.device_name or "").upper()
        if memory >= 70 or any(chip in name for chip in ("H100", "H200")):
            return CONFIG_CUDA_80GB
        return CONFIG_CUDA_24GB
    if found.kind == "mps":
        return CONFIG_MPS
    return CONFIG_CUDA_24GB


def recommendation(found: Machine) -> str:
    config = recommend_config(found)
    if found.kind == "cuda":
        memory = found.total_memory_gib or 0
        sizing = "80 GB class GPU" if config == CONFIG_CUDA_80GB else f"{memory:.0f} GiB GPU (the 24 GB A5000 config)"
        extra = "" if memory >= 20 else f"; {memory:.0f} GiB is below 24: check it with `python entrypoint.py estimate-memory --gpu-memory {memory:.0f}`"
        return f"{config} for this {sizing}: python entrypoint.py smoke --config {config}{extra}"
    if found.kind == "mps":
        return f"{config} (16-bit LoRA on MPS): python entrypoint.py smoke --config {config}"
    return (f"{config}, rehearsed: this CPU-only machine can validate and rehearse, not train a 7B model: "
            f"python entrypoint.py rehearse --config {config}")



def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:4])
