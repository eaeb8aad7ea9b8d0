#!/usr/bin/env python3
"""Fetch the flash-attn2 hub kernel's build for this machine's torch into a folder, once, with network.

Without the flash_attn package, transformers 5.16 serves `attn_implementation: flash_attention_2`
from the `kernels-community/flash-attn2` hub kernel, at the major version Axolotl 0.19 pins (2), through
`kernels.get_kernel`. That looks in LOCAL_KERNELS (`repo=folder`) before it asks the Hub. This script
puts the kernel in such a folder, so a pod loads it with no Hub access and always the same commit:

  1. the commit: --revision when given, else the commit the Hub's `v<version>` branch points at now;
  2. the build: the one kernels' own variant rules pick for this torch (version, C++ ABI, CUDA
     version from torch.version.cuda; no GPU is needed), from the builds that commit has;
  3. only that build is downloaded (huggingface_hub, repo type "kernel") into DEST/build/<build>/,
     and DEST/kernel.json records repo, version, commit and build (provenance reports the commit).

    python scripts/fetch_attention_kernel.py --dest /opt/cli-tuner/kernels/flash-attn2
    export LOCAL_KERNELS=kernels-community/flash-attn2=/opt/cli-tuner/kernels/flash-attn2

Dockerfile.cuda runs it at build time. Exit 0 with one line saying what it fetched; 1 with one
`error:` line (no such branch, no build for this torch, a failed download).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = "kernels-community/flash-attn2"
VERSION = 2        # axolotl 0.19.0's FA2_HUB_KERNEL_VERSION (tests/test_docker.py holds the Dockerfile to it)
RECORD = "kernel.json"
IGNORE = ["*.pyc", "**/__pycache__/**"]   # kernels never downloads bytecode either


class FetchError(RuntimeError):
    pass


def branch_commit(branches, version: int) -> str:
    """The commit the `v<version>` branch points at, from huggingface_hub's GitRefInfo list."""
    for branch in branches:
        if branch.name == f"v{version}":
            return branch.target_commit
    names = sorted(b.name for b in branches if b.name.startswith("v"))
    raise FetchError(f"no branch v{version}; the repo has {', '.join(names) or 'no version branches'}")


def pick_build(names: list[str]) -> str:
    """The build folder kernels would load on this machine, among `names` (kernels' variant rules)."""
    from kernels.variants import parse_variant, resolve_variant, variants_trace_str

    variants = []
    for name in names:
        try:
            variants.append(parse_variant(name))
        except ValueError:
            continue
    chosen, trace = resolve_variant(variants)
    if chosen is None:
        import torch

        raise FetchError(f"no build for torch {torch.__version__} (CUDA {torch.version.cuda}): "
                         + " / ".join(line.strip() for line in variants_trace_str(trace).splitlines() if line.strip()))
    return chosen.variant_str


def write_record(dest: Path, repo: str, version: int, commit: str, build: str) -> Path:
    path = dest / RECORD
    path.write_text(json.dumps({"repo": repo, "version": version, "commit": commit, "build": build}, indent=2) + "\n",
                    encoding="utf-8")
    return path


def check_fetched(dest: Path, build: str) -> None:
    """The fetched build is the one this torch resolves to from the folder itself, as kernels' loader will."""
    found = sorted(p.name for p in (dest / "build").iterdir() if p.is_dir()) if (dest / "build").is_dir() else []
    if not (dest / "build" / build / "__init__.py").is_file() and not any((dest / "build" / build).glob("*/__init__.py")):
        raise FetchError(f"{dest / 'build' / build} has no kernel module after the download")
    if pick_build(found) != build:
        raise FetchError(f"{dest} resolves to {pick_build(found)}, not the fetched {build}")


def fetch(repo: str, version: int, revision: str | None, dest: Path) -> dict:
    from huggingface_hub import HfApi
    from kernels.variants import get_variants

    api = HfApi()
    commit = revision or branch_commit(api.list_repo_refs(repo, repo_type="kernel").branches, version)
    names = [v.variant_str for v in get_variants(api, repo_id=repo, revision=commit)]
    build = pick_build(names)
    dest.mkdir(parents=True, exist_ok=True)
    api.snapshot_download(repo, repo_type="kernel", revision=commit, allow_patterns=[f"build/{build}/*"],
                          ignore_patterns=IGNORE, local_dir=str(dest))
    check_fetched(dest, build)
    write_record(dest, repo, version, commit, build)
    return {"repo": repo, "version": version, "commit": commit, "build": build, "dest": str(dest)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=REPO)
    parser.add_argument("--version", type=int, default=VERSION, help="the kernel's major version (its v<N> branch)")
    parser.add_argument("--revision", default="", help="a commit to fetch instead of the branch's current one")
    parser.add_argument("--dest", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        done = fetch(args.repo, args.version, args.revision or None, args.dest)
    except Exception as exc:  # one line for the build log, whatever failed
        print(f"error: {args.repo} v{args.version}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 1
    print(f"fetched {done['repo']} v{done['version']} at {done['commit']}: build/{done['build']} into {done['dest']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
