"""Hardware targets the memory estimate and the checks know by name.

Peak numbers are the vendors' dense (no 2:4 sparsity) bf16 tensor-core figures with fp32
accumulate, the rate a training matmul runs at. Where a datasheet prints only the sparse figure,
the dense one is half of it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass

from ..errors import UsageError

# The CUDA driver and PyTorch keep some of the board's memory: torch reports ~98% of the
# marketed size as total_memory (e.g. 23.68 GiB of an A5000's 24 GiB).
CUDA_USABLE_FRACTION = 0.98
# macOS lets the GPU wire about two thirds of unified memory on 32 GB Macs (Metal's
# recommendedMaxWorkingSetSize); the OS and other programs keep the rest.
MPS_USABLE_FRACTION = 0.67
# The CUDA major a named target is estimated with unless told (--cuda-major, or the detected
# torch): Dockerfile.cuda's default torch flavour is cu126 (docker/torch_flavours.json).
IMAGE_CUDA_MAJOR = 12


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_gb: float              # board memory as marketed (NVIDIA "GB" = GiB of DRAM)
    bf16: bool
    flash_attention: bool         # flash-attn 2 kernels exist for this chip (CUDA sm_80+)
    bnb_4bit: bool                # bitsandbytes 4-bit training works here
    peak_bf16_tflops: float       # dense bf16 tensor TFLOP/s, 0 when unknown
    kind: str                     # "cuda", "mps" or "cpu"
    compute_capability: str = ""  # "8.6" for sm_86
    memory_bandwidth_gbs: float = 0.0
    usable_fraction: float = CUDA_USABLE_FRACTION
    source: str = ""              # where the numbers come from
    note: str = ""
    cuda_major: int = 0           # CUDA runtime major of the torch that runs on it; 0: the image's (IMAGE_CUDA_MAJOR)

    @property
    def cuda_runtime_major(self) -> int:
        return self.cuda_major or IMAGE_CUDA_MAJOR

    @property
    def generation(self) -> str:
        """The architecture family the compute capability names ("" when unknown or not CUDA)."""
        if self.kind != "cuda" or not self.compute_capability:
            return ""
        major, minor = (int(x) for x in self.compute_capability.split("."))
        if major == 8:
            return "ada" if minor == 9 else "ampere"
        return {7: "turing" if minor >= 5 else "volta", 9: "hopper", 10: "blackwell", 12: "blackwell"}.get(major, "")

    @property
    def capacity_gib(self) -> float:
        return self.memory_gb * self.usable_fraction

    @property
    def sm(self) -> int:
        """8.6 -> 86; 0 when not CUDA."""
        if not self.compute_capability:
            return 0
        major, minor = self.compute_capability.split(".")
        return int(major) * 10 + int(minor)


KNOWN_GPUS: dict[str, GpuSpec] = {
    "a5000": GpuSpec(
        "RTX A5000", 24, bf16=True, flash_attention=True, bnb_4bit=True, peak_bf16_tflops=111.1,
        kind="cuda", compute_capability="8.6", memory_bandwidth_gbs=768,
        source="NVIDIA RTX A5000 datasheet: 222.2 tensor TFLOPS with sparsity -> 111.1 dense; 768 GB/s GDDR6"),
    "rtx4090": GpuSpec(
        "GeForce RTX 4090", 24, bf16=True, flash_attention=True, bnb_4bit=True, peak_bf16_tflops=165.2,
        kind="cuda", compute_capability="8.9", memory_bandwidth_gbs=1008,
        source="NVIDIA Ada Lovelace architecture whitepaper v1.1, table 2: peak BF16 tensor TFLOPS "
               "with FP32 accumulate 165.2 (330.4 sparse); 1008 GB/s"),
    "rtx3090": GpuSpec(
        "GeForce RTX 3090", 24, bf16=True, flash_attention=True, bnb_4bit=True, peak_bf16_tflops=71.0,
        kind="cuda", compute_capability="8.6", memory_bandwidth_gbs=936,
        source="NVIDIA Ampere GA102 whitepaper, table 9: peak BF16 tensor TFLOPS with FP32 accumulate "
               "71 (142 sparse); 936 GB/s"),
    "l4": GpuSpec(
        "L4", 24, bf16=True, flash_attention=True, bnb_4bit=True, peak_bf16_tflops=121.0,
        kind="cuda", compute_capability="8.9", memory_bandwidth_gbs=300,
        source="NVIDIA L4 datasheet: BF16 tensor core 242 TFLOPS with sparsity -> 121 dense; 300 GB/s"),
    "a100-40": GpuSpec(
        "A100 40GB", 40, bf16=True, flash_attention=True, bnb_4bit=True, peak_bf16_tflops=312.0,
        kind="cuda", compute_capability="8.0", memory_bandwidth_gbs=1555,
        source="NVIDIA A100 datasheet: BF16 tensor core 312 TFLOPS (624 sparse); 1,555 GB/s (40GB)"),
    "a100-80": GpuSpec(
        "A100 80GB", 80, bf16=True, flash_attention=True, bnb_4bit=True, peak_bf16_tflops=312.0,
        kind="cuda", compute_capability="8.0", memory_bandwidth_gbs=2039,
        source="NVIDIA A100 datasheet: BF16 tensor core 312 TFLOPS (624 sparse); 2,039 GB/s (80GB SXM)"),
    "h100": GpuSpec(
        "H100 SXM 80GB", 80, bf16=True, flash_attention=True, bnb_4bit=True, peak_bf16_tflops=989.4,
        kind="cuda", compute_capability="9.0", memory_bandwidth_gbs=3350,
        source="NVIDIA H100 datasheet: BF16 tensor core 1,979 TFLOPS with sparsity -> 989.4 dense (SXM); 3.35 TB/s"),
    "h100-pcie": GpuSpec(
        "H100 PCIe 80GB", 80, bf16=True, flash_attention=True, bnb_4bit=True, peak_bf16_tflops=756.0,
        kind="cuda", compute_capability="9.0", memory_bandwidth_gbs=2000,
        source="NVIDIA H100 datasheet: BF16 tensor core 1,513 TFLOPS with sparsity -> 756 dense (PCIe); 2 TB/s"),
    "h200": GpuSpec(
        "H200 141GB", 141, bf16=True, flash_attention=True, bnb_4bit=True, peak_bf16_tflops=989.4,
        kind="cuda", compute_capability="9.0", memory_bandwidth_gbs=4800,
        source="NVIDIA H200 datasheet: BF16 tensor core 1,979 TFLOPS with sparsity -> 989.4 dense (SXM); 4.8 TB/s"),
    "t4": GpuSpec(
        "Tesla T4", 16, bf16=False, flash_attention=False, bnb_4bit=True, peak_bf16_tflops=0.0,
        kind="cuda", compute_capability="7.5", memory_bandwidth_gbs=320,
        source="NVIDIA T4 datasheet: 65 FP16 tensor TFLOPS, no bf16 (Turing, sm_75); 320 GB/s",
        note="Turing: no bf16 and no flash-attn 2; use fp16: true and attn_implementation: sdpa"),
    "m4": GpuSpec(
        "Apple M4 (32 GB unified)", 32, bf16=True, flash_attention=False, bnb_4bit=False, peak_bf16_tflops=4.3,
        kind="mps", memory_bandwidth_gbs=120, usable_fraction=MPS_USABLE_FRACTION,
        source="Apple M4: 120 GB/s unified memory (Apple spec). Apple publishes no TFLOPS; 4.3 is an "
               "estimate (10 GPU cores x 128 ALUs x 2 FLOP x ~1.7 GHz; bf16 runs at the fp32 rate on Apple GPUs)",
        note="no flash-attn (CUDA only); bitsandbytes 0.50.2 installs on macOS but runs 4-bit on MPS only "
             "through slow pure-PyTorch fallbacks and has no MPS kernel for 8-bit optimizers, so the m4 "
             "config trains a 16-bit base with a 32-bit optimizer"),
    "cpu": GpuSpec(
        "CPU", 0, bf16=True, flash_attention=False, bnb_4bit=True, peak_bf16_tflops=0.0,
        kind="cpu", usable_fraction=0.8,
        source="memory is this machine's RAM, read when the target is resolved",
        note="rehearsal only: a 7B model trains far too slowly on a CPU to be a target"),
}

ALIASES = {
    "rtx-a5000": "a5000", "rtxa5000": "a5000", "a5000-24": "a5000",
    "4090": "rtx4090", "rtx-4090": "rtx4090", "3090": "rtx3090", "rtx-3090": "rtx3090",
    "a100": "a100-80", "a100-80gb": "a100-80", "a100-40gb": "a100-40", "a100-sxm": "a100-80",
    "h100-sxm": "h100", "h100-80": "h100", "h200-141": "h200",
    "mps": "m4", "m4-32": "m4", "apple": "m4",
}


def _normalize(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def known_names() -> str:
    return ", ".join(KNOWN_GPUS)


def system_ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # not POSIX: fall back to a modest laptop
        return 16.0


def lookup(name: str) -> GpuSpec | None:
    key = _normalize(name)
    key = ALIASES.get(key, key)
    spec = KNOWN_GPUS.get(key)
    if spec is not None and spec.kind == "cpu":
        spec = dataclasses.replace(spec, memory_gb=round(system_ram_gib(), 1))
    return spec


def custom(name: str, memory_gb: float) -> GpuSpec:
    """An unlisted CUDA GPU: assume a modern (Ampere or newer) board of the given size."""
    return GpuSpec(name, memory_gb, bf16=True, flash_attention=True, bnb_4bit=True, peak_bf16_tflops=0.0,
                   kind="cuda", note="unlisted GPU: capabilities assumed (Ampere or newer); throughput unknown")


def resolve_target(name: str | None, gpu_memory_gb: float | None) -> GpuSpec:
    """A named target, optionally with its memory overridden; or an unlisted GPU of that size."""
    if gpu_memory_gb is not None and gpu_memory_gb <= 0:
        raise UsageError(f"--gpu-memory {gpu_memory_gb}: must be a positive number of GB")
    spec = lookup(name) if name else None
    if spec is not None:
        if gpu_memory_gb is not None:
            spec = dataclasses.replace(spec, name=f"{spec.name} ({gpu_memory_gb:g} GB)", memory_gb=gpu_memory_gb)
        return spec
    if gpu_memory_gb is not None:
        return custom(name or f"GPU with {gpu_memory_gb:g} GB", gpu_memory_gb)
    if name:
        raise UsageError(f"unknown target {name!r}; use one of {known_names()}, or give --gpu-memory GB")
    raise UsageError(f"no target: pass --target ({known_names()}) or --gpu-memory GB, "
                     "or set cli_tuner.target in the config")


def spec_for_device(device_name: str, total_memory_gib: float, compute_capability: str = "",
                    cuda_major: int = 0) -> GpuSpec:
    """The table entry for a detected CUDA device (by its marketing name), sized as torch reports it;
    `cuda_major`: the CUDA runtime of the torch that will train on it."""
    text = device_name.upper()
    key = None
    if "A5000" in text:
        key = "a5000"
    elif "4090" in text:
        key = "rtx4090"
    elif "3090" in text:
        key = "rtx3090"
    elif re.search(r"\bL4\b", text):
        key = "l4"
    elif "A100" in text:
        key = "a100-80" if total_memory_gib > 50 else "a100-40"
    elif "H100" in text:
        key = "h100-pcie" if "PCIE" in text else "h100"
    elif "H200" in text:
        key = "h200"
    if key is None:
        sm = compute_capability or "0.0"
        modern = float(sm) >= 8.0
        return GpuSpec(device_name, round(total_memory_gib, 1), bf16=modern, flash_attention=modern, bnb_4bit=True,
                       peak_bf16_tflops=0.0, kind="cuda", compute_capability=compute_capability, usable_fraction=1.0,
                       note="not in the table of known GPUs: throughput unknown", cuda_major=cuda_major)
    # torch's total_memory is already what is usable
    return dataclasses.replace(KNOWN_GPUS[key], memory_gb=round(total_memory_gib, 2), usable_fraction=1.0,
                               cuda_major=cuda_major)
