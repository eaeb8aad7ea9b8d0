"""Can this machine's software run the job: Python, torch and its build, the driver, the pinned
packages, bitsandbytes and flash-attn, disk and the environment. Each check returns a `Check`.

Versions come from importlib.metadata, so the CPU path never imports axolotl or bitsandbytes
(seconds each). On CUDA the deep checks run bitsandbytes' 4-bit kernels and flash-attn's compiled
extension in a child process (`gpu_probes`): the job's own process never creates a CUDA context
for them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..facts import attention as attention_facts
from ..facts.attention import AttentionSource
from ..facts.gpus import GpuSpec
from ..facts.machine import CONFIG_CUDA_80GB, CONFIG_MPS, Machine, installed_version, recommend_config, version_tuple
from ..findings import Check
from ..paths import REQUIREMENTS
from . import gpu_probes

GIB = 2**30
TORCH_INDEX = "https://download.pytorch.org/whl/cu126"  # the image's flavour (Dockerfile.cuda); torch 2.13 has no cu128 build
FLASH_ATTN_PIN = "2.8.3"   # axolotl 0.19.0's `flash-attn` extra
DISK_WARNING_GIB = 20      # a 7B base model download (~15 GB) plus checkpoints
# The torch versions Axolotl 0.19.0 supports: its wheel's METADATA says
# `Requires-Dist: torch<=2.13.0,>=2.11.0` (tests/test_platform.py reads it from the installed axolotl).
# Inside that range a torch other than the pin runs the job (a GPU machine's own CUDA build, say) untested:
# a warning. Outside it, an error.
AXOLOTL_TORCH_RANGE = ">=2.11.0,<=2.13.0"

# Oldest Linux driver for each CUDA toolkit (NVIDIA CUDA Toolkit release notes, table 3 "CUDA
# Toolkit and Corresponding Driver Versions", GA releases).
DRIVER_FOR_CUDA = {
    "11.8": "520.61.05", "12.0": "525.60.13", "12.1": "530.30.02", "12.2": "535.54.03",
    "12.3": "545.23.06", "12.4": "550.54.14", "12.5": "555.42.02", "12.6": "560.28.03",
    "12.8": "570.26", "12.9": "575.51.03", "13.0": "580.65.06",
}



def read_pins(path: Path | str = REQUIREMENTS) -> dict[str, str]:
    """name -> version of every `name==version` line of a requirements file."""
    pins = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)", line)
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def _torch_install(found: Machine) -> str:
    if found.kind == "cuda" or found.nvidia_gpus:
        return f"pip install torch==2.13.0 --extra-index-url {TORCH_INDEX}"
    return "pip install torch==2.13.0" + ("" if found.system == "Darwin" else " --extra-index-url https://download.pytorch.org/whl/cpu")


def check_python(found: Machine) -> Check:
    ok = found.python_version.startswith("3.11.")
    return Check("python", ok, "warning", f"Python {found.python_version}" + ("" if ok else ", the pins are tested on 3.11 only"),
                 "conda env create -f environment-remote.yml (CUDA) or environment-m4.yml (Mac), or bash scripts/setup.sh with python3.11")


def check_torch(found: Machine, pins: dict[str, str]) -> Check:
    wanted = pins.get("torch", "2.13.0")
    if found.torch_version is None:
        return Check("torch", False, "error", "torch is not installed", _torch_install(found))
    build = (f"CUDA {found.torch_cuda} build" if found.torch_cuda
             else ("MPS build" if found.mps_built else "CPU build"))
    if found.torch_version.split("+")[0] != wanted:
        if torch_in_axolotl_range(found.torch_version):
            return Check("torch", False, "warning",
                         f"torch {found.torch_version} ({build}) is inside Axolotl 0.19's supported range "
                         f"({AXOLOTL_TORCH_RANGE}) but not the tested pin {wanted} (requirements.txt)",
                         _torch_install(found))
        return Check("torch", False, "error", f"torch {found.torch_version} ({build}) is outside Axolotl 0.19's "
                     f"supported range ({AXOLOTL_TORCH_RANGE}); requirements.txt pins {wanted}",
                     _torch_install(found))
    return Check("torch", True, "error", f"torch {found.torch_version} ({build})")


def torch_in_axolotl_range(version: str) -> bool:
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        public = Version(version.split("+")[0])
    except InvalidVersion:
        return False
    return SpecifierSet(AXOLOTL_TORCH_RANGE).contains(public, prereleases=True)


def check_torch_build(found: Machine) -> Check:
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


def check_driver(found: Machine) -> Check | None:
    if not found.torch_cuda:
        return None
    runtime = ".".join(found.torch_cuda.split(".")[:2])
    needed = DRIVER_FOR_CUDA.get(runtime)
    if not (found.nvidia_gpus or found.kind == "cuda"):
        # A CUDA build of torch with no GPU: the CUDA image on a CPU machine. Say what the GPU host needs.
        return Check("driver", True, "info", f"no NVIDIA driver here; torch's CUDA {runtime} build needs driver "
                     + (f">= {needed.split('.')[0]} ({needed})" if needed else f"supporting CUDA {runtime}")
                     + " on the GPU host")
    if not found.driver_version:
        return Check("driver", False, "warning", "could not read the NVIDIA driver version (no NVML)",
                     "run `nvidia-smi` and compare with the CUDA version torch was built with")
    too_old = needed is not None and version_tuple(found.driver_version) < version_tuple(needed)
    if found.driver_cuda and version_tuple(found.driver_cuda) < version_tuple(runtime):
        too_old = True
    if too_old:
        needed_text = f">= {needed.split('.')[0]} ({needed})" if needed else f"supporting CUDA {runtime}"
        return Check("driver", False, "error",
                     f"driver {found.driver_version}" + (f" (CUDA {found.driver_cuda})" if found.driver_cuda else "")
                     + f" is older than torch's CUDA {runtime} runtime needs: driver {needed_text}; "
                       "minor-version compatibility may run some kernels, but PTX JIT (Triton, torch.compile) fails",
                     f"use a host or pod image with NVIDIA driver {needed_text}, or a torch 2.13.0 build for an older CUDA")
    return Check("driver", True, "error", f"driver {found.driver_version} supports CUDA {found.driver_cuda or runtime}")


def check_bitsandbytes(found: Machine, pins: dict[str, str], deep: bool) -> Check:
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
        return gpu_probes.as_check("bitsandbytes", gpu_probes.run("bnb4bit"), found, version)
    if found.kind == "mps":
        return Check("bitsandbytes", True, "info", f"bitsandbytes {version} is installed, but 4-bit runs on MPS only through "
                     "slow PyTorch fallbacks and 8-bit optimizers have no MPS kernel; the m4 config needs neither")
    if found.kind != "cuda":
        return Check("bitsandbytes", True, "info", f"bitsandbytes {version}; the 4-bit kernel probe is not applicable "
                     f"on {found.kind.upper()} (CUDA only)")
    return Check("bitsandbytes", True, "info", f"bitsandbytes {version} (its 4-bit kernels are probed by doctor, smoke and full)")


def check_flash_attn(found: Machine, deep: bool = False, source: AttentionSource | None = None) -> Check:
    """What flash_attention_2 would run on here (facts.attention: the flash_attn package, the hub kernel,
    or none); with `deep` on CUDA, that source loaded as training loads it and one attention call run,
    in a child process."""
    if found.kind != "cuda":
        if attention_facts.built_without_kernel():
            return Check("flash-attn", True, "info", f"{attention_facts.BUILT_WITHOUT}; configs use sdpa here, "
                         "and on a GPU too")
        return Check("flash-attn", True, "info", f"not applicable on {found.kind.upper()} (CUDA only); configs use sdpa here")
    capable = version_tuple(found.compute_capability or "0") >= (8,)
    if not capable:
        return Check("flash-attn", True, "info", f"sm_{found.compute_capability} has no Flash Attention 2; use attn_implementation: sdpa")
    source = attention_facts.detect() if source is None else source
    if not source.available:
        return Check("flash-attn", False, "warning", f"{source.detail}; a config asking for flash_attention_2 "
                     f"trains with sdpa here ({CONFIG_CUDA_80GB} does)", attention_facts.FIX)
    label = "flash-attn" if source.kind == attention_facts.PACKAGE else f"{attention_facts.KERNEL_REPO} hub kernel"
    if deep:
        # installed but broken is an error even for an sdpa config: libraries that find it installed may import it
        return gpu_probes.as_check("flash-attn", gpu_probes.run("flash-attn"), found,
                                   source.version if source.kind == attention_facts.PACKAGE else None)
    return Check("flash-attn", True, "info", f"{source.detail} (its kernels checked by doctor, smoke and full on a GPU)"
                 if source.kind == attention_facts.HUB_KERNEL else f"{label} {source.version} (its kernels checked by "
                 "doctor, smoke and full on a GPU)")


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


def check_mps_fallback(found: Machine) -> Check | None:
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


def checks(found: Machine, *, gpu: bool = True, probes: bool = True, requirements: Path | str = REQUIREMENTS,
           output_root: Path | str = "outputs", deep: bool = True, disk_need_bytes: int | None = None,
           bitsandbytes_needed: bool = True) -> list[Check]:
    """Every check the caller needs on this machine, in the order to fix them.

    `gpu`: the GPU stack too (torch's build, the driver, bitsandbytes, flash-attn, the HF cache's
    disk); a CPU rehearsal leaves it out. `probes` and `deep`: on CUDA, run the GPU probes
    (bitsandbytes only when the config needs it), each in its own process."""
    requirements = Path(requirements)
    pins = read_pins(requirements)
    results = [check_python(found), check_torch(found, pins)]
    if gpu:
        results.append(check_torch_build(found))
        driver = check_driver(found)
        if driver:
            results.append(driver)
        probe = deep and probes
        results.append(check_bitsandbytes(found, pins, deep=probe and bitsandbytes_needed))
        results.append(check_flash_attn(found, deep=probe))
    results += check_pins(pins, requirements)
    results.append(check_disk(output_root, disk_need_bytes, name="disk (outputs)"))
    if gpu:
        results.append(check_disk(hf_cache_dir(), name="disk (HF cache)"))
    results.append(check_tracking())
    fallback = check_mps_fallback(found)
    if fallback:
        results.append(fallback)
    return results



def needs_bitsandbytes(loaded) -> bool:
    if loaded is None:
        return True
    cfg = loaded.axolotl
    return bool(cfg.get("load_in_4bit") or cfg.get("load_in_8bit") or cfg.get("adapter") == "qlora"
                or "bnb" in str(cfg.get("optimizer") or "") or "8bit" in str(cfg.get("optimizer") or ""))


def device_checks(found: Machine, target: GpuSpec | None, loaded) -> list[Check]:
    results = []
    if found.kind == "cpu":
        results.append(Check("device", False, "error", "no CUDA or MPS device: smoke and full runs train a 7B model",
                             "run `python entrypoint.py rehearse` on CPU, or start the container with --gpus all on a GPU host"))
        return results
    if target is not None and target.kind != found.kind:
        results.append(Check("device", False, "warning", f"the config targets {target.name} ({target.kind}) but this is {found.kind.upper()}",
                             f"use {recommend_config(found)}"))
    if loaded is not None and found.kind == "mps" and needs_bitsandbytes(loaded):
        results.append(Check("device", False, "error", "the config loads a bitsandbytes 4/8-bit base or optimizer, which MPS cannot train",
                             f"use {CONFIG_MPS}"))
    return results