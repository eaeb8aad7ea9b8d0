#!/usr/bin/env python3
"""Resolve every package an image will install, for the image's platform, in about a minute.

A torch flavour PyTorch never published, a pin missing from PyPI or two pins that contradict each
other surface only deep into an image build. This script finds them first, without building anything:

  1. the torch build the Dockerfile installs (its TORCH_VERSION, TORCH_INDEX_URL and TORCH_CUDA ARG
     defaults) is a flavour docker/torch_flavours.json lists for requirements.txt's torch pin;
  2. pip resolves that build with its dependencies from the torch index (`pip install --dry-run`
     for Linux x86-64, CPython 3.11, wheels only), as the image's torch step does;
  3. pip resolves every pin of requirements-lock.txt from PyPI for the same platform (`--no-deps`,
     as the lock is complete; a package with no wheel for the platform resolves to its sdist);
  4. an image that fetches the flash-attn2 hub kernel (its FA2_KERNEL_REPO ARG) has the `kernels`
     package that loads it among the lock's pins (scripts/fetch_attention_kernel.py, at build time);
  5. what the image ends up with (the lock's pins, plus torch and those of its dependencies the lock
     does not pin) satisfies every package's Requires-Dist, as `pip check` will at the end of the
     build; a pin that contradicts torch's own (triton, say) fails here.

    python scripts/resolve_image_wheels.py                      # Dockerfile.cuda
    python scripts/resolve_image_wheels.py --dockerfile Dockerfile.cpu-validate
    python scripts/resolve_image_wheels.py --build-arg TORCH_CUDA=cu130   # as docker build would

Exit 0 when everything resolves; 1 with one line per problem otherwise. Needs network access to the
indexes and the `packaging` module. pip's own configuration (pip.conf, PIP_INDEX_URL,
PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_CONSTRAINT) is ignored so that only the indexes the image
uses are asked; PIP_CERT is kept for TLS-intercepting proxies.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
FLAVOURS = REPO / "docker" / "torch_flavours.json"
PYPI = "https://pypi.org/simple"
# The images are Ubuntu 22.04 (glibc 2.35) and Debian 12 (glibc 2.36) on x86-64 with CPython 3.11.
GLIBC_MINOR = 35
PYTHON = "3.11"
TARGET_ENV = {
    "implementation_name": "cpython",
    "implementation_version": f"{PYTHON}.0",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": f"{PYTHON}.0",
    "python_version": PYTHON,
    "sys_platform": "linux",
}


# --- the Dockerfile and the pin files, as data -----------------------------------------------------

def dockerfile_args(path: Path, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """First default of each ARG (or its --build-arg value), with ${NAME} references substituted."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found: dict[str, str] = dict(overrides or {})
    for line in text.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() != "ARG":
            continue
        for word in shlex.split(rest, comments=True):
            name, has_value, value = word.partition("=")
            if has_value and name not in found:
                found[name] = re.sub(r"\$\{(\w+)\}", lambda m: found.get(m.group(1), m.group(0)), value)
    return found


def pins(path: Path) -> dict[str, str]:
    result = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if match:
            result[canonicalize_name(match.group(1))] = match.group(2)
    return result


def torch_build(dockerfile: Path, flavours: dict, overrides: dict[str, str] | None = None) -> tuple[str, str, str, list[str]]:
    """(requirement, index URL, flavour, problems) for the torch the Dockerfile installs."""
    args = dockerfile_args(dockerfile, overrides)
    problems = []
    version, index = args.get("TORCH_VERSION", ""), args.get("TORCH_INDEX_URL", "")
    flavour = index.rstrip("/").rsplit("/", 1)[-1]
    if "TORCH_CUDA" in args and args["TORCH_CUDA"] != flavour:
        problems.append(f"{dockerfile.name}: TORCH_CUDA={args['TORCH_CUDA']} but TORCH_INDEX_URL={index}")
    pinned = pins(REPO / "requirements.txt").get("torch")
    if version != pinned:
        problems.append(f"{dockerfile.name}: TORCH_VERSION={version or '(none)'} but requirements.txt pins torch=={pinned}")
    if flavours.get("torch") != pinned:
        problems.append(f"{FLAVOURS.name} lists the flavours of torch {flavours.get('torch')}, "
                        f"requirements.txt pins {pinned}: update the table from its sources")
    entry = flavours.get("flavours", {}).get(flavour)
    if entry is None:
        problems.append(f"{dockerfile.name}: PyTorch publishes no {flavour} build of torch {version} "
                        f"(published: {', '.join(flavours.get('flavours', {}))}; {FLAVOURS.relative_to(REPO)})")
    elif "CLI_TUNER_MIN_DRIVER" in args and args["CLI_TUNER_MIN_DRIVER"] != str(entry.get("min_driver")):
        problems.append(f"{dockerfile.name}: CLI_TUNER_MIN_DRIVER={args['CLI_TUNER_MIN_DRIVER']}, but the {flavour} "
                        f"build needs driver {entry.get('min_driver')} ({FLAVOURS.relative_to(REPO)})")
    return f"torch=={version}+{flavour}", index, flavour, problems


# --- pip ---------------------------------------------------------------------------------------------

def platform_options() -> list[str]:
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC_MINOR, 4, -1)]
    tags += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
    options = []
    for tag in tags:
        options += ["--platform", tag]
    return options + ["--python-version", PYTHON, "--implementation", "cp", "--abi", f"cp{PYTHON.replace('.', '')}"]


def pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT",
                        "PIP_REQUIREMENT", "PIP_NO_INDEX")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def pip_resolve(requirements: list[str], index: str, *, deps: bool, work: Path, name: str) -> tuple[list[dict], str]:
    """pip install --dry-run --report for the target platform: (installed items, error text)."""
    report = work / f"{name}.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
               "--report", str(report), "--target", str(work / f"{name}-target"), "--index-url", index,
               *platform_options()]
    command += ["--only-binary=:all:"] if deps else ["--no-deps"]
    if len(requirements) > 20:
        listing = work / f"{name}.txt"
        listing.write_text("\n".join(requirements) + "\n")
        command += ["-r", str(listing)]
    else:
        command += requirements
    result = subprocess.run(command, capture_output=True, text=True, env=pip_env())
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.startswith("ERROR")]
        return [], "; ".join(lines) or result.stderr.strip()[-2000:]
    return json.loads(report.read_text())["install"], ""


def kernel_loader_pinned(docker_args: dict[str, str], lock: dict[str, str]) -> str:
    """'' unless the Dockerfile fetches a hub kernel and the lock does not pin `kernels` to load it."""
    if "FA2_KERNEL_REPO" in docker_args and "kernels" not in {canonicalize_name(n) for n in lock}:
        return (f"the image fetches the {docker_args['FA2_KERNEL_REPO']} hub kernel, but requirements-lock.txt "
                "pins no kernels package to load it")
    return ""


# --- what `pip check` will say, before anything is installed -------------------------------------

def consistency(items: list[dict], env: dict[str, str] = TARGET_ENV) -> list[str]:
    """Problems `pip check` would report for a set of installed distributions.

    items: entries of pip's installation report (each with metadata.name, .version, .requires_dist).
    Extras a requirement asks for (cuda-toolkit[cublas]) bring in that package's extra requirements.
    """
    installed = {canonicalize_name(i["metadata"]["name"]): i["metadata"] for i in items}
    extras: dict[str, set[str]] = {name: {""} for name in installed}
    requirements: list[tuple[str, Requirement]] = []
    for name, metadata in installed.items():
        for text in metadata.get("requires_dist") or []:
            requirements.append((name, Requirement(text)))
    # Extras first, so that a package's extra requirements are checked whoever asked for the extra.
    changed = True
    while changed:
        changed = False
        for owner, req in requirements:
            if any(_applies(req, dict(env, extra=extra)) for extra in extras[owner]):
                target = canonicalize_name(req.name)
                if target in extras and not set(req.extras) <= extras[target]:
                    extras[target] |= set(req.extras)
                    changed = True
    problems = []
    for owner, req in requirements:
        if not any(_applies(req, dict(env, extra=extra)) for extra in extras[owner]):
            continue
        target = canonicalize_name(req.name)
        owner_label = f"{installed[owner]['name']} {installed[owner]['version']}"
        if target not in installed:
            problems.append(f"{owner_label} requires {req}, which nothing installs")
        elif not req.specifier.contains(Version(installed[target]["version"]), prereleases=True):
            problems.append(f"{owner_label} requires {req}, but {installed[target]['name']} "
                            f"{installed[target]['version']} is pinned")
    return sorted(set(problems))


def _applies(req: Requirement, env: dict[str, str]) -> bool:
    return req.marker is None or Marker(str(req.marker)).evaluate(env)


def merge(torch_items: list[dict], lock_items: list[dict]) -> list[dict]:
    """The image's final set: the lock's pins win over what the torch step installed first."""
    locked = {canonicalize_name(i["metadata"]["name"]) for i in lock_items}
    return lock_items + [i for i in torch_items if canonicalize_name(i["metadata"]["name"]) not in locked]


# --- main --------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dockerfile", type=Path, default=REPO / "Dockerfile.cuda")
    parser.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="as docker build's: overrides that ARG's default (repeatable)")
    parser.add_argument("--torch-index", help="resolve torch from this index instead of the Dockerfile's "
                        "(with --torch-requirement: a rehearsal where the torch index is unreachable)")
    parser.add_argument("--torch-requirement", help="instead of torch==VERSION+FLAVOUR")
    parser.add_argument("--lock-index", default=PYPI, help="where the lock's pins come from (default PyPI)")
    args = parser.parse_args(argv)

    start = time.monotonic()
    dockerfile = args.dockerfile if args.dockerfile.is_absolute() else Path.cwd() / args.dockerfile
    flavours = json.loads(FLAVOURS.read_text())
    overrides = dict(arg.partition("=")[::2] for arg in args.build_arg)
    requirement, index, flavour, problems = torch_build(dockerfile, flavours, overrides)
    requirement, index = args.torch_requirement or requirement, args.torch_index or index
    lock = pins(REPO / "requirements-lock.txt")
    for pin_file in ("requirements.txt", "requirements-runpod.txt"):   # the runpod extra: the CUDA image's
        for name, version in pins(REPO / pin_file).items():
            if name != "torch" and lock.get(name) != version:
                problems.append(f"{pin_file} pins {name}=={version}, requirements-lock.txt {lock.get(name)}")
    problem = kernel_loader_pinned(dockerfile_args(dockerfile, overrides), lock)
    if problem:
        problems.append(problem)
    if problems:  # a flavour that does not exist: no need to ask any index
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 1

    print(f"[resolve] {dockerfile.name}: {requirement} from {index}; {len(lock)} lock pins from {args.lock_index}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch_items, error = pip_resolve([requirement], index, deps=True, work=work, name="torch")
        if error:
            problems.append(f"{requirement} does not resolve from {index}: {error}")
        lock_lines = [f"{name}=={version}" for name, version in lock.items() if name != "torch"]
        lock_items, error = pip_resolve(lock_lines, args.lock_index, deps=False, work=work, name="lock")
        if error:
            problems.append(f"requirements-lock.txt does not resolve from {args.lock_index}: {error}")
    if torch_items and lock_items:
        problems += consistency(merge(torch_items, lock_items))
        sdists = sorted(i["metadata"]["name"] for i in lock_items
                        if i["download_info"]["url"].endswith((".tar.gz", ".zip")))
        wheels = len(torch_items) + len(lock_items) - len(sdists)
        print(f"[resolve] {wheels} wheels and {len(sdists)} sdists (built in the image: {', '.join(sdists) or 'none'})")
    if problems:
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 1
    print(f"[resolve] OK: everything {dockerfile.name} installs resolves for Linux x86-64 / CPython {PYTHON} "
          f"({time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
