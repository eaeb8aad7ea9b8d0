"""What machine this is, which config suits it, and whether its software can run the job.

`doctor` prints it all; `preflight` runs the checks a mode needs before training starts and
stops with the first failing check's fix. Versions come from importlib.metadata, so the CPU path
never imports axolotl or bitsandbytes (seconds each).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import platform as py_platform
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import gpus
from .errors import EnvironmentProblem

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "requirements.txt"
GIB = 2**30
TORCH_INDEX = "https://download.pytorch.org/whl/cu128"
FLASH_ATTN_PIN = "2.8.3"   # axolotl 0.19.0's `flash-attn` extra
DISK_WARNING_GIB = 20      # a 7B base model download (~15 GB) plus checkpoints

# Oldest Linux driver for each CUDA toolkit (NVIDIA CUDA Toolkit release notes, table 3 "CUDA
# Toolkit and Corresponding Driver Versions", GA releases).
DRIVER_FOR_CUDA = {
    "11.8": "520.61.05", "12.0": "525.60.13", "12.1": "530.30.02", "12.2": "535.54.03",
    "12.3": "545.23.06", "12.4": "550.54.14", "12.5": "555.42.02", "12.6": "560.28.03",
    "12.8": "570.26", "12.9": "575.51.03", "13.0": "580.65.06",
}

CONFIG_CUDA_24GB = "configs/axolotl_config.yaml"
CONFIG_CUDA_80GB = "configs/training_config_h100.yaml"
CONFIG_MPS = "configs/training_config_m4.yaml"


@dataclass
class Platform:
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

    def describe(self) -> str:
        software = f"Python {self.python_version}, torch {self.torch_version or 'not installed'}"
        if self.kind == "cuda":
            driver = f", driver {self.driver_version}" if self.driver_version else ""
            return (f"CUDA: {self.device_name} ({self.total_memory_gib:.1f} GiB, sm_{(self.compute_capability or '').replace('.', '')}"
                    f"{driver}, CUDA runtime {self.torch_cuda}), {software}")
        if self.kind == "mps":
            return f"MPS: Apple {self.machine} ({self.ram_gib:.0f} GB unified memory, macOS {self.macos_version}), {software}"
        return f"CPU: {self.machine}, {self.cpu_count} cores, {self.ram_gib:.1f} GiB RAM, {self.system}, {software}, no GPU"


@dataclass
class Check:
    name: str
    ok: bool
    level: str     # "error", "warning" or "info": how much a failure matters
    detail: str
    fix: str = ""

    @property
    def failed_error(self) -> bool:
        return not self.ok and self.level == "error"

    def line(self) -> str:
        return f"{self.name}: {self.detail}" + (f"; fix: {self.fix}" if self.fix and not self.ok else "")


# ----------------------------------------------------------------------------- detection

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


def detect() -> Platform:
    """Inspect this machine: torch for CUDA/MPS, NVML for the driver."""
    found = Platform(kind="cpu", ram_gib=round(gpus.system_ram_gib(), 1))
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
    elif found.mps_built and torch.backends.mps.is_available():
        found.kind = "mps"
        found.device_name = "Apple GPU (MPS)"
        found.total_memory_gib = found.ram_gib
        found.bf16 = _version_tuple(found.macos_version or "0") >= (14,)
    return found


def gpu_spec(found: Platform) -> gpus.GpuSpec:
    """The memory-estimate target for the detected device."""
    if found.kind == "cuda":
        return gpus.spec_for_device(found.device_name or "CUDA GPU", found.total_memory_gib or 0, found.compute_capability or "")
    if found.kind == "mps":
        return dataclasses.replace(gpus.KNOWN_GPUS["m4"], name=f"Apple {found.machine} ({found.ram_gib:.0f} GB unified)",
                                   memory_gb=found.ram_gib)
    return gpus.lookup("cpu")


def recommend_config(found: Platform) -> str:
    if found.kind == "cuda":
        memory = found.total_memory_gib or 0
        name = (found.device_name or "").upper()
        if memory >= 70 or any(chip in name for chip in ("H100", "H200")):
            return CONFIG_CUDA_80GB
        return CONFIG_CUDA_24GB
    if found.kind == "mps":
        return CONFIG_MPS
    return CONFIG_CUDA_24GB


def recommendation(found: Platform) -> str:
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


# ----------------------------------------------------------------------------- checks

def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:4])


def read_pins(path: Path | str = REQUIREMENTS) -> dict[str, str]:
    """name -> version of every `name==version` line of a requirements file."""
    pins = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)", line)
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch_install(found: Platform) -> str:
    if found.kind == "cuda" or found.nvidia_gpus:
        return f"pip install torch==2.13.0 --extra-index-url {TORCH_INDEX}"
    return "pip install torch==2.13.0" + ("" if found.system == "Darwin" else " --extra-index-url https://download.pytorch.org/whl/cpu")


def check_python(found: Platform) -> Check:
    ok = found.python_version.startswith("3.11.")
    return Check("python", ok, "warning", f"Python {found.python_version}" + ("" if ok else ", the pins are tested on 3.11 only"),
                 "conda env create -f environment-remote.yml (CUDA) or environment-m4.yml (Mac), or bash scripts/setup.sh with python3.11")


def check_torch(found: Platform, pins: dict[str, str]) -> Check:
    wanted = pins.get("torch", "2.13.0")
    if found.torch_version is None:
        return Check("torch", False, "error", "torch is not installed", _torch_install(found))
    build = (f"CUDA {found.torch_cuda} build" if found.torch_cuda
             else ("MPS build" if found.mps_built else "CPU build"))
    if found.torch_version.split("+")[0] != wanted:
        return Check("torch", False, "error", f"torch {found.torch_version} ({build}), requirements.txt pins {wanted}",
                     _torch_install(found))
    return Check("torch", True, "error", f"torch {found.torch_version} ({build})")


def check_torch_build(found: Platform) -> Check:
    if found.nvidia_gpus and not found.torch_cuda:
        return Check("torch build", False, "error",
                     f"torch {found.torch_version} is a CPU build but the driver sees {found.nvidia_gpus[0]}",
                     _torch_install(found).replace("--extra-index-url", "--force-reinstall --index-url"))
    if found.nvidia_gpus and found.kind != "cuda":
        return Check("torch build", False, "error",
                     f"torch (CUDA {found.torch_cuda}) cannot use {found.nvidia_gpus[0]}: CUDA failed to initialize",
                     "check `nvidia-smi` works in this container (docker run --gpus all) and the driver check below")
    if found.system == "Darwin" and found.kind != "mps":
        return Check("torch build", False, "error" if found.machine == "arm64" else "info",
                     "no MPS device: torch needs an arm64 build on Apple silicon with macOS 14 or newer",
                     "conda env create -f environment-m4.yml (a native arm64 Python, not Rosetta)")
    if found.kind == "cpu":
        return Check("torch build", True, "info", "no GPU: `validate` and `rehearse` run here; `smoke` and `full` need CUDA or MPS")
    if found.kind == "mps":
        return Check("torch build", True, "info", f"MPS available (macOS {found.macos_version})")
    return Check("torch build", True, "info", f"CUDA {found.torch_cuda} runtime on {found.device_name}")


def check_driver(found: Platform) -> Check | None:
    if not found.torch_cuda or not (found.nvidia_gpus or found.kind == "cuda"):
        return None
    if not found.driver_version:
        return Check("driver", False, "warning", "could not read the NVIDIA driver version (no NVML)",
                     "run `nvidia-smi` and compare with the CUDA version torch was built with")
    runtime = ".".join(found.torch_cuda.split(".")[:2])
    needed = DRIVER_FOR_CUDA.get(runtime)
    too_old = needed is not None and _version_tuple(found.driver_version) < _version_tuple(needed)
    if found.driver_cuda and _version_tuple(found.driver_cuda) < _version_tuple(runtime):
        too_old = True
    if too_old:
        needed_text = f">= {needed.split('.')[0]} ({needed})" if needed else f"supporting CUDA {runtime}"
        return Check("driver", False, "error",
                     f"driver {found.driver_version}" + (f" (CUDA {found.driver_cuda})" if found.driver_cuda else "")
                     + f" is older than torch's CUDA {runtime} runtime needs: driver {needed_text}; "
                       "minor-version compatibility may run some kernels, but PTX JIT (Triton, torch.compile) fails",
                     f"use a host or pod image with NVIDIA driver {needed_text}, or a torch 2.13.0 build for an older CUDA")
    return Check("driver", True, "error", f"driver {found.driver_version} supports CUDA {found.driver_cuda or runtime}")


def bitsandbytes_works() -> str | None:
    """Quantize and dequantize a small tensor in 4-bit on the GPU; None when it works, else why not."""
    try:
        import torch
        import bitsandbytes.functional as bnbf

        weights = torch.randn(128, 128, device="cuda", dtype=torch.bfloat16)
        packed, state = bnbf.quantize_4bit(weights, quant_type="nf4")
        restored = bnbf.dequantize_4bit(packed, state)
        error = (restored - weights).abs().mean().item()
        return None if error < 0.2 else f"4-bit round trip error {error:.3f} is far too large"
    except Exception as exc:  # a missing CUDA library shows up as any of several error classes
        return f"{type(exc).__name__}: {exc}"


def check_bitsandbytes(found: Platform, pins: dict[str, str], deep: bool) -> Check:
    wanted = pins.get("bitsandbytes", "0.50.2")
    version = installed_version("bitsandbytes")
    if version is None:
        level = "warning" if found.kind == "mps" else "error"
        return Check("bitsandbytes", False, level, "not installed: 4-bit QLoRA and 8-bit optimizers need it",
                     f"pip install bitsandbytes=={wanted}")
    if version != wanted:
        return Check("bitsandbytes", False, "error", f"bitsandbytes {version}, requirements.txt pins {wanted}",
                     f"pip install bitsandbytes=={wanted}")
    if found.kind == "cuda" and deep:
        problem = bitsandbytes_works()
        if problem:
            return Check("bitsandbytes", False, "error", f"bitsandbytes {version} cannot run 4-bit on {found.device_name}: {problem}",
                         "python -m bitsandbytes (prints what is missing); the CUDA torch build and driver must match")
        return Check("bitsandbytes", True, "error", f"bitsandbytes {version}: 4-bit NF4 round trip works on {found.device_name}")
    if found.kind == "mps":
        return Check("bitsandbytes", True, "info", f"bitsandbytes {version} is installed, but 4-bit runs on MPS only through "
                     "slow PyTorch fallbacks and 8-bit optimizers have no MPS kernel; the m4 config needs neither")
    return Check("bitsandbytes", True, "info", f"bitsandbytes {version} (4-bit kernels checked on a GPU only)")


def check_flash_attn(found: Platform) -> Check:
    version = installed_version("flash-attn") or installed_version("flash_attn")
    if found.kind != "cuda":
        return Check("flash-attn", True, "info", f"not applicable on {found.kind.upper()} (CUDA only); configs use sdpa here")
    capable = _version_tuple(found.compute_capability or "0") >= (8,)
    if not capable:
        return Check("flash-attn", True, "info", f"sm_{found.compute_capability} has no Flash Attention 2; use attn_implementation: sdpa")
    if version is None:
        return Check("flash-attn", False, "warning", f"not installed; {CONFIG_CUDA_80GB} uses attn_implementation: flash_attention_2",
                     f"pip install flash-attn=={FLASH_ATTN_PIN} --no-build-isolation (or --set attn_implementation=sdpa)")
    return Check("flash-attn", True, "info", f"flash-attn {version}")


def check_pins(pins: dict[str, str], requirements: Path) -> list[Check]:
    """axolotl on its own line, then every other pin of requirements.txt in one check."""
    results = []
    wrong, missing = [], []
    for name, wanted in pins.items():
        if name == "torch":
            continue  # check_torch compares it without the +cu128 build tag
        have = installed_version(name)
        if name == "axolotl":
            ok = have == wanted
            detail = f"axolotl {have}" if ok else (f"axolotl {have}, {requirements.name} pins {wanted}" if have else "axolotl is not installed")
            results.append(Check("axolotl", ok, "error", detail, f"pip install axolotl=={wanted} -c requirements-lock.txt"))
        elif have is None:
            missing.append(f"{name}=={wanted}")
        elif have != wanted:
            wrong.append((name, have, wanted))
    if wrong or missing:
        parts = [f"{n} {h} (pinned {w})" for n, h, w in wrong] + [f"{m.split('==')[0]} missing" for m in missing]
        fix = "pip install " + " ".join([f"{n}=={w}" for n, _, w in wrong] + missing)
        results.append(Check("pinned packages", False, "error", ", ".join(parts), fix + " (or: pip install -r requirements.txt -c requirements-lock.txt)"))
    else:
        results.append(Check("pinned packages", True, "error", f"{len(pins) - 2} other pins of {requirements.name} match"))
    return results


def check_disk(path: Path | str, need_bytes: int | None = None, name: str = "disk") -> Check:
    target = Path(path).expanduser().resolve()
    where = target
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if need_bytes is not None:
        ok = free >= need_bytes
        return Check(name, ok, "error", f"{free / GIB:.1f} GiB free at {where}, need ~{need_bytes / GIB:.1f} GiB",
                     "free space, or point --output-root / HF_HOME at a larger disk")
    ok = free >= DISK_WARNING_GIB * GIB
    return Check(name, ok, "warning", f"{free / GIB:.1f} GiB free at {where}"
                 + ("" if ok else f"; a 7B model download and checkpoints need ~{DISK_WARNING_GIB} GiB"),
                 "free space, or point --output-root / HF_HOME at a larger disk")


def check_tracking() -> Check:
    value = os.environ.get("AXOLOTL_DO_NOT_TRACK")
    ok = value == "1"
    return Check("AXOLOTL_DO_NOT_TRACK", ok, "warning",
                 "1: Axolotl's usage telemetry is off" if ok else f"is {value!r}: Axolotl may send usage telemetry",
                 "export AXOLOTL_DO_NOT_TRACK=1 (the images set it)")


def check_mps_fallback(found: Platform) -> Check | None:
    if found.kind != "mps":
        return None
    ok = os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK") == "1"
    return Check("PYTORCH_ENABLE_MPS_FALLBACK", ok, "warning",
                 "1: ops without an MPS kernel fall back to CPU" if ok else "unset: an op without an MPS kernel stops training",
                 "export PYTORCH_ENABLE_MPS_FALLBACK=1")


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))


def checks(found: Platform, mode: str = "doctor", requirements: Path | str = REQUIREMENTS,
           output_root: Path | str = "outputs", deep: bool = True, disk_need_bytes: int | None = None) -> list[Check]:
    """Every check relevant to `mode` (doctor, validate, rehearse, smoke, full), in the order to fix them."""
    requirements = Path(requirements)
    pins = read_pins(requirements)
    gpu_mode = mode in ("doctor", "validate", "smoke", "full")
    results = [check_python(found), check_torch(found, pins)]
    if gpu_mode:
        results.append(check_torch_build(found))
        driver = check_driver(found)
        if driver:
            results.append(driver)
        results.append(check_bitsandbytes(found, pins, deep=deep and mode in ("doctor", "smoke", "full")))
        results.append(check_flash_attn(found))
    results += check_pins(pins, requirements)
    results.append(check_disk(output_root, disk_need_bytes, name="disk (outputs)"))
    if gpu_mode:
        results.append(check_disk(hf_cache_dir(), name="disk (HF cache)"))
    results.append(check_tracking())
    fallback = check_mps_fallback(found)
    if fallback:
        results.append(fallback)
    return results


# ----------------------------------------------------------------------------- output

def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def print_checks(results: list[Check], console=None) -> None:
    from rich.markup import escape

    console = console or _console()
    for check in results:
        if check.ok:
            tag, style = "ok", "green"
        else:
            tag, style = {"error": ("error", "red"), "warning": ("warn", "yellow"), "info": ("info", "cyan")}[check.level]
        line = f"[{style}]{tag:<5}[/{style}] {escape(check.name)}: {escape(check.detail)}"
        if not check.ok and check.fix:
            line += f"\n      fix: {escape(check.fix)}"
        console.print(line)


def _first_error(results: list[Check]) -> Check | None:
    return next((c for c in results if c.failed_error), None)


def command(args) -> int:
    from rich.markup import escape

    console = _console()
    found = detect()
    console.print(f"platform: {escape(found.describe())}")
    console.print(f"recommended config: {escape(recommendation(found))}")
    loaded = None
    disk_need = None
    config_path = getattr(args, "config", None)
    if config_path:
        from . import memory
        from .config import load

        loaded = load(config_path)
        facts = memory._facts_for(loaded)
        disk_need = memory.estimate_checkpoint_disk(loaded.axolotl, facts)
    results = checks(found, "doctor", output_root=os.environ.get("OUTPUT_ROOT", "outputs"), disk_need_bytes=disk_need)
    if loaded is not None:
        results.append(_memory_check(loaded, found))
    console.print("checks:")
    print_checks(results, console)
    errors = [c for c in results if c.failed_error]
    warnings = [c for c in results if not c.ok and c.level == "warning"]
    console.print(f"doctor: {len(errors)} error(s), {len(warnings)} warning(s)")
    if errors:
        raise EnvironmentProblem(f"doctor: {errors[0].line()}" + (f" (and {len(errors) - 1} more above)" if len(errors) > 1 else ""))
    return 0


def _memory_check(loaded, found: Platform) -> Check:
    """The config's memory estimate on this machine's GPU, or on its target when there is none."""
    from . import memory

    if found.kind == "cpu":
        if not loaded.target:
            return Check("memory", True, "info", "no GPU here and no cli_tuner.target: nothing to estimate against")
        print(f"no GPU here: estimating {loaded.path} for its target {loaded.target}")
        spec = memory.resolve_target(loaded.target, loaded.gpu_memory_gb)
    else:
        spec = gpu_spec(found)
    try:
        est = memory.check_on(loaded, spec)
    except EnvironmentProblem as exc:
        return Check("memory", False, "error", exc.message.split("; try: ")[0],
                     exc.message.split("; try: ")[1] if "; try: " in exc.message else "")
    return Check("memory", True, "error", f"{loaded.path}: {est.summary()}")


def preflight(mode: str, target: gpus.GpuSpec | None = None, loaded=None, output_root: Path | str | None = None) -> None:
    """The checks `mode` needs on this machine; EnvironmentProblem (exit 5) with the first failing one's fix."""
    found = detect()
    disk_need = None
    if loaded is not None:
        from . import memory

        disk_need = memory.estimate_checkpoint_disk(loaded.axolotl, memory._facts_for(loaded))
    results = checks(found, mode, output_root=output_root or os.environ.get("OUTPUT_ROOT", "outputs"),
                     deep=_needs_bitsandbytes(loaded), disk_need_bytes=disk_need)
    if mode in ("smoke", "full"):
        results = _device_checks(found, target, loaded) + results
        if loaded is not None and found.kind in ("cuda", "mps"):
            results.append(_memory_check(loaded, found))
    problems = [c for c in results if not c.ok and c.level in ("error", "warning")]
    if problems:
        print_checks(problems, _console_err())
    first = _first_error(results)
    if first is not None:
        raise EnvironmentProblem(f"{mode} preflight: {first.line()}")


def _console_err():
    from rich.console import Console

    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def _needs_bitsandbytes(loaded) -> bool:
    if loaded is None:
        return True
    cfg = loaded.axolotl
    return bool(cfg.get("load_in_4bit") or cfg.get("load_in_8bit") or cfg.get("adapter") == "qlora"
                or "bnb" in str(cfg.get("optimizer") or "") or "8bit" in str(cfg.get("optimizer") or ""))


def _device_checks(found: Platform, target: gpus.GpuSpec | None, loaded) -> list[Check]:
    results = []
    if found.kind == "cpu":
        results.append(Check("device", False, "error", "no CUDA or MPS device: smoke and full runs train a 7B model",
                             "run `python entrypoint.py rehearse` on CPU, or start the container with --gpus all on a GPU host"))
        return results
    if target is not None and target.kind != found.kind:
        results.append(Check("device", False, "warning", f"the config targets {target.name} ({target.kind}) but this is {found.kind.upper()}",
                             f"use {recommend_config(found)}"))
    if loaded is not None and found.kind == "mps" and _needs_bitsandbytes(loaded):
        results.append(Check("device", False, "error", "the config loads a bitsandbytes 4/8-bit base or optimizer, which MPS cannot train",
                             f"use {CONFIG_MPS}"))
    return results
