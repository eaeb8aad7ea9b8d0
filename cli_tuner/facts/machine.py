"""What machine this is: CPU, CUDA GPU or Apple MPS, its driver, and the config that suits it.

Detected once per command (the plan carries it); provenance records the same description and
evaluation picks its device from it. torch is imported inside `detect`, NVML through
nvidia-ml-py, so importing this module costs nothing.

The job's own process creates no CUDA context (hundreds of MiB the trainer would lack): the CUDA
device's name, memory and compute capability come from NVML, torch's device count from its
NVML-based count, and only where NVML cannot describe the device does a child process ask torch
(`python -m cli_tuner.facts.machine device`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform as py_platform
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import console
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


def cuda_version(code: int) -> str:
    """NVML's CUDA driver version number as text: 12080 -> "12.8"."""
    return f"{code // 1000}.{code % 1000 // 10}"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class NvmlReading:
    """What NVML answered, as its calls return the values (bytes or str, bytes of memory, a tuple)."""
    driver_version: str | bytes | None = None
    cuda_driver_version: int | None = None           # nvmlSystemGetCudaDriverVersion: 12080
    names: tuple = ()                                # every GPU the driver sees, in NVML's order
    device_name: str | bytes | None = None           # the GPU torch calls cuda:0
    total_bytes: int | None = None                   # nvmlDeviceGetMemoryInfo(...).total
    reserved_bytes: int = 0                          # memory the driver keeps (nvmlMemory_v2), 0 where unknown
    capability: tuple[int, int] | None = None        # nvmlDeviceGetCudaComputeCapability: (8, 6)

    @property
    def has_device(self) -> bool:
        return self.device_name is not None and self.total_bytes is not None and self.capability is not None


def apply_nvml(found: Machine, reading: NvmlReading | None, cuda_count: int) -> Machine:
    """Fill `found` from NVML's raw values; with `cuda_count` (torch's device count) > 0 it is a CUDA machine.

    total_memory_gib is what CUDA can use, as torch's total_memory reports it: NVML's total less the
    memory the driver reserves. bf16 is native bf16, compute capability 8.0 (Ampere) or newer."""
    if reading is not None:
        found.driver_version = _text(reading.driver_version) if reading.driver_version is not None else found.driver_version
        found.driver_cuda = cuda_version(reading.cuda_driver_version) if reading.cuda_driver_version else None
        found.nvidia_gpus = [_text(name) for name in reading.names]
    if cuda_count > 0 and reading is not None and reading.has_device:
        major, minor = reading.capability
        found.kind = "cuda"
        found.device_name = _text(reading.device_name)
        found.total_memory_gib = (reading.total_bytes - (reading.reserved_bytes or 0)) / GIB
        found.compute_capability = f"{major}.{minor}"
        found.bf16 = major >= 8
        found.device_count = cuda_count
    return found


def _first_visible(pynvml):
    """The NVML handle of torch's cuda:0, after CUDA_VISIBLE_DEVICES; None where it names a MIG instance
    or something NVML cannot resolve. NVML counts in PCI bus order, as torch's NVML-based count does."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    first = visible.split(",")[0].strip() if visible is not None else "0"
    if first.isdigit():
        return pynvml.nvmlDeviceGetHandleByIndex(int(first))
    if first.startswith("GPU-"):   # a UUID, or a unique prefix of one
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            if _text(pynvml.nvmlDeviceGetUUID(handle)).startswith(first):
                return handle
    return None


def read_nvml() -> NvmlReading | None:
    """Driver, CUDA driver version, the GPUs and cuda:0's name, memory and capability, from NVML
    (nvidia-ml-py). NVML creates no CUDA context. None without NVML (no driver, no pynvml)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver or no device: NVML raises its own error classes
        return None
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        names = tuple(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
                      for index in range(pynvml.nvmlDeviceGetCount()))
        reading = NvmlReading(driver, cuda, names)
        try:
            handle = _first_visible(pynvml)
            if handle is None:
                return reading
            try:
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
                reserved = memory.reserved
            except Exception:  # a driver without the v2 call: its total, nothing reserved known
                memory, reserved = pynvml.nvmlDeviceGetMemoryInfo(handle), 0
            return dataclasses.replace(reading, device_name=pynvml.nvmlDeviceGetName(handle), total_bytes=memory.total,
                                       reserved_bytes=reserved,
                                       capability=tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle)))
        except Exception:
            return reading
    except Exception:
        return None
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


# ----------------------------------------------------------------------------- the child process fallback

MODULE = "cli_tuner.facts.machine"
DEVICE_MARKER = "cli-tuner-device:"
DEVICE_TIMEOUT_S = 180.0
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _device_child_main() -> int:
    """Child side of `device_in_child`: torch's own view of cuda:0, one JSON line."""
    import torch

    if not torch.cuda.is_available():
        console.out(f"{DEVICE_MARKER} {json.dumps(None)}")
        return 1
    props = torch.cuda.get_device_properties(0)
    console.out(f"{DEVICE_MARKER} " + json.dumps({"name": props.name, "total_memory": props.total_memory,
                                                   "capability": [props.major, props.minor],
                                                   "count": torch.cuda.device_count()}))
    return 0


def device_in_child(timeout: float = DEVICE_TIMEOUT_S) -> NvmlReading | None:
    """Where NVML cannot say what cuda:0 is (no NVML library, a MIG instance) but torch sees a device:
    ask torch in a child process, so the CUDA context it creates dies with it. None if it cannot tell."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    try:
        done = subprocess.run([sys.executable, "-m", MODULE, "device"], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_device_line(done.stdout)


def parse_device_line(stdout: str) -> NvmlReading | None:
    lines = [line for line in stdout.splitlines() if line.startswith(DEVICE_MARKER)]
    try:
        fields = json.loads(lines[-1][len(DEVICE_MARKER):]) if lines else None
        if not fields:
            return None
        return NvmlReading(device_name=fields["name"], total_bytes=int(fields["total_memory"]),
                           capability=(int(fields["capability"][0]), int(fields["capability"][1])))
    except (ValueError, TypeError, KeyError, IndexError):
        return None


# ----------------------------------------------------------------------------- detection

def detect() -> Machine:
    """Inspect this machine: NVML for the driver and the CUDA device, torch for its build, CUDA
    device count and MPS. The job's process creates no CUDA context: torch.cuda.device_count()
    counts through NVML before CUDA is initialized, and nothing here calls torch.cuda's lazy init."""
    found = Machine(kind="cpu", ram_gib=round(gpus.system_ram_gib(), 1))
    if found.system == "Darwin":
        found.macos_version = py_platform.mac_ver()[0] or None
    reading = read_nvml() if found.system == "Linux" else None
    apply_nvml(found, reading, 0)
    if found.system == "Linux" and not found.driver_version:
        found.driver_version = _proc_driver()
    try:
        import torch
    except ImportError:
        return found
    found.torch_version = torch.__version__
    found.torch_cuda = torch.version.cuda
    found.mps_built = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_built())
    # 0 for a CPU build; NVML-based before CUDA is initialized (PYTORCH_NVML_BASED_CUDA_CHECK's
    # is_available() is exactly device_count() > 0), honouring CUDA_VISIBLE_DEVICES
    count = torch.cuda.device_count() if found.torch_cuda else 0
    if count > 0:
        if reading is None or not reading.has_device:
            device = device_in_child()
            reading = dataclasses.replace(reading or NvmlReading(), device_name=device.device_name,
                                          total_bytes=device.total_bytes, capability=device.capability) if device else reading
        apply_nvml(found, reading, count)
    if found.kind == "cpu" and found.mps_built and torch.backends.mps.is_available():
        found.kind = "mps"
        found.device_name = "Apple GPU (MPS)"
        found.total_memory_gib = found.ram_gib
        found.bf16 = version_tuple(found.macos_version or "0") >= (14,)
    return found


def gpu_spec(found: Machine) -> gpus.GpuSpec:
    """The memory-estimate target for the detected device."""
    if found.kind == "cuda":
        major = int(found.torch_cuda.split(".")[0]) if found.torch_cuda and found.torch_cuda.split(".")[0].isdigit() else 0
        return gpus.spec_for_device(found.device_name or "CUDA GPU", found.total_memory_gib or 0,
                                    found.compute_capability or "", cuda_major=major)
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


def installed_version(name: str) -> str | None:
    """The installed distribution's version, or None."""
    import importlib.metadata  # 30 ms at import time: only the commands that check versions pay it

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    if sys.argv[1:] != ["device"]:
        console.problem(f"usage: python -m {MODULE} device")
        raise SystemExit(2)
    raise SystemExit(_device_child_main())
