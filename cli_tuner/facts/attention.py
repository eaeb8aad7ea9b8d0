"""Which flash-attention source this machine has for `attn_implementation: flash_attention_2`:
the flash_attn package, the Hugging Face hub kernel, or none. Found from files only: no network,
no CUDA context (the kernel is loaded and run by the `flash-attn` GPU probe, in a child process).

transformers 5.16 serves flash_attention_2 from the flash_attn package when it is installed, and
otherwise from the `kernels-community/flash-attn2` hub kernel through the `kernels` package
(modeling_utils `_check_and_adjust_attn_implementation`, FLASH_ATTN_KERNEL_FALLBACK). Axolotl 0.19
pins that kernel's major version to 2, because v3's stable-ABI builds fail the backward pass for
GQA models (axolotl/monkeypatch/attention/fa2_hub_kernel.py). `kernels.get_kernel` looks first in
LOCAL_KERNELS (`repo=path` pairs separated by `:`; the CUDA image sets it), else in the Hugging Face
cache (KERNELS_CACHE, else HF_HUB_CACHE), where `refs/v2` names the commit of the version-2 branch
and `snapshots/<commit>/build/<variant>/` holds one build per torch, CUDA and platform.

    python -m cli_tuner.facts.attention     # prints the source as JSON; exit 0 unless it is none
                                            # (an image built with FLASH_ATTENTION=none: exit 0)
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import console
from .machine import installed_version

PACKAGE, HUB_KERNEL, NONE = "package", "hub-kernel", "none"
KERNEL_REPO = "kernels-community/flash-attn2"
KERNEL_VERSION = 2   # axolotl 0.19.0's FA2_HUB_KERNEL_VERSION (tests/test_attention.py holds them equal)
LOCAL_KERNELS_ENV = "LOCAL_KERNELS"
# Dockerfile.cuda's FLASH_ATTENTION build argument, kept in the image: "none" where it was built without
# the hub kernel (no Hub access at build time), so the image says so instead of looking for one.
IMAGE_CHOICE_ENV = "CLI_TUNER_FLASH_ATTENTION"
BUILT_WITHOUT = "no flash-attention source in this image (built without the hub kernel)"
FIX = ("rebuild the image (Dockerfile.cuda fetches the flash-attn2 hub kernel), or run "
       "`python scripts/fetch_attention_kernel.py` once with network, or pip install flash-attn==2.8.3 "
       "--no-build-isolation; until then the job trains with attn_implementation: sdpa")


@dataclass(frozen=True)
class AttentionSource:
    kind: str                      # package, hub-kernel or none
    detail: str                    # one line: what was found, or why nothing was
    version: str | None = None     # the flash_attn package's version, or the kernels package's
    kernel_path: str | None = None  # the build folder the hub kernel loads from
    revision: str | None = None    # the hub kernel's commit, when it came from the HF cache

    @property
    def available(self) -> bool:
        return self.kind != NONE

    def as_record(self) -> dict:
        return asdict(self)


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def local_overrides(environ: dict) -> dict[str, Path]:
    """LOCAL_KERNELS as kernels parses it: `repo=path` entries separated by `:`."""
    overrides = {}
    for entry in (environ.get(LOCAL_KERNELS_ENV) or "").split(":"):
        repo, sep, path = entry.partition("=")
        if sep and repo.strip():
            overrides[repo.strip()] = Path(path)
    return overrides


def cache_dir(environ: dict) -> Path:
    """Where kernels keeps hub kernels: KERNELS_CACHE, else huggingface_hub's cache."""
    if environ.get("KERNELS_CACHE"):
        return Path(environ["KERNELS_CACHE"])
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"])
    home = environ.get("HF_HOME") or os.path.join(environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                                  "huggingface")
    return Path(home) / "hub"


def cached_snapshot(cache: Path, repo: str = KERNEL_REPO, version: int = KERNEL_VERSION) -> tuple[Path | None, str | None]:
    """(snapshot folder, commit) of `repo`'s version branch in the cache, as kernels reads it offline:
    refs/v<version> under the "kernel" repo type, or the legacy "model" one."""
    for repo_type in ("kernels", "models"):
        folder = cache / f"{repo_type}--{repo.replace('/', '--')}"
        ref = folder / "refs" / f"v{version}"
        try:
            commit = ref.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if commit:
            return folder / "snapshots" / commit, commit
    return None, None


def build_for_this_torch(repo_path: Path) -> tuple[Path | None, str]:
    """The build folder kernels would load from `repo_path` on this machine (its own variant rules:
    torch version, C++ ABI, CUDA or CPU, platform), and a reason when there is none."""
    from kernels.variants import get_variants_local, resolve_variant

    for base in (repo_path, repo_path / "build"):
        variant, _trace = resolve_variant(get_variants_local(base))
        if variant is not None and (base / variant.variant_str).is_dir():
            return base / variant.variant_str, ""
    import torch

    builds = sorted(p.name for p in (repo_path / "build").glob("*") if p.is_dir()) if (repo_path / "build").is_dir() else []
    return None, (f"{repo_path} has no build for torch {torch.__version__} (CUDA {torch.version.cuda})"
                  + (f"; it has {', '.join(builds[:4])}" if builds else ""))


def hub_kernel(environ: dict) -> tuple[AttentionSource | None, str]:
    """The pinned hub kernel when `kernels` is importable and its files are here; else why not."""
    kernels_version = installed_version("kernels")
    if kernels_version is None or not _importable("kernels"):
        return None, "the kernels package is not installed"
    override = local_overrides(environ).get(KERNEL_REPO)
    if override is not None:
        if not override.is_dir():
            return None, f"{LOCAL_KERNELS_ENV} points {KERNEL_REPO} at {override}, which does not exist"
        build, why = build_for_this_torch(override)
        if build is None:
            return None, why
        return AttentionSource(HUB_KERNEL, f"{KERNEL_REPO} hub kernel from {LOCAL_KERNELS_ENV} ({build}), kernels "
                               f"{kernels_version}", kernels_version, str(build), _commit_of(override)), ""
    cache = cache_dir(environ)
    snapshot, commit = cached_snapshot(cache)
    if snapshot is None:
        return None, f"{KERNEL_REPO} v{KERNEL_VERSION} is not in the kernel cache {cache}"
    build, why = build_for_this_torch(snapshot)
    if build is None:
        return None, why
    offline = environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    note = "" if offline else "; kernels asks the Hub which commit v2 is unless HF_HUB_OFFLINE=1"
    return AttentionSource(HUB_KERNEL, f"{KERNEL_REPO} v{KERNEL_VERSION} hub kernel at commit {commit[:12]} in {cache}, "
                           f"kernels {kernels_version}{note}", kernels_version, str(build), commit), ""


def _commit_of(path: Path) -> str | None:
    """The commit of a kernel folder fetched by scripts/fetch_attention_kernel.py (its `kernel.json`)."""
    try:
        return json.loads((path / "kernel.json").read_text(encoding="utf-8")).get("commit")
    except (OSError, ValueError, AttributeError):
        return None


def built_without_kernel(environ: dict | None = None) -> bool:
    """Whether this is an image built with FLASH_ATTENTION=none."""
    environ = os.environ if environ is None else environ
    return (environ.get(IMAGE_CHOICE_ENV) or "").strip().lower() == NONE


def detect(environ: dict | None = None) -> AttentionSource:
    """The source transformers would use for flash_attention_2 here, in its own order of preference."""
    environ = dict(os.environ if environ is None else environ)
    package_version = installed_version("flash-attn") or installed_version("flash_attn")
    if package_version is not None and _importable("flash_attn"):
        return AttentionSource(PACKAGE, f"flash-attn {package_version} (the package)", package_version)
    if built_without_kernel(environ):
        return AttentionSource(NONE, BUILT_WITHOUT)
    found, why_not = hub_kernel(environ)
    if found is not None:
        return found
    return AttentionSource(NONE, f"no flash-attention source: the flash_attn package is not installed, and {why_not}")


def main() -> int:
    source = detect()
    console.out(json.dumps(source.as_record(), sort_keys=True))
    return 0 if source.available or built_without_kernel() else 1


if __name__ == "__main__":
    sys.exit(main())
