"""An offline bundle for the GPU check on a CUDA machine that keeps its own torch.

    .venv/bin/python -m bench.gpu_bundle --python 3.12 --out gpu_bundle     # on a machine with PyPI
    bash gpu_bundle/run.sh --out results.json --nl2bash DIR \\
        --tokenizer-dir mistralai/Mistral-7B-Instruct-v0.2=DIR ...        # on the GPU machine, repo root

What goes in (at most 48 MiB, checked here; the build fails above that):
- the requirements-lock.txt version of every distribution the job imports at run time that a CUDA
  PyTorch machine image does not already carry, plus every direct pin of requirements.txt (preflight
  compares them all) except torch. The list was traced from a real run (a `sys.modules` dump of
  every process of `entrypoint.py rehearse`, mapped to distributions), then cut to what a run cannot
  do without (each cut checked by re-running with the cut packages made unimportable);
- `axolotl-contribs-lgpl` and `axolotl-contribs-mit`, which PyPI has as sdists only, built into wheels;
- bitsandbytes reduced to the CUDA 13.0 library (torch 2.11+cu130 loads that one) and the CPU one,
  and wandb to its Python part (`WANDB_MODE=disabled` never starts its wandb-core binary): each
  re-zipped as a valid wheel with its RECORD rewritten;
- a wheel of this repository's package (cli_tuner), and `run.sh`.

`run.sh` installs the wheels with `pip install --no-index --no-deps --target`, puts the target's
`bin/` (shellcheck) on PATH, sets the offline environment and runs `python -m bench.gpu_check` from
the repository (the current folder, or CLI_TUNER_REPO), passing its arguments through.

The machine's own packages stay as they are: torch, triton, numpy, pandas, pyarrow, scipy and the
rest of `MACHINE_PROVIDES` are not carried (the list is what the CUDA image the check was written
for holds; another machine needs them installed).
"""

from __future__ import annotations

if __package__ in (None, ""):  # `python bench/gpu_bundle.py`
    import sys
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))
    __package__ = "bench"

import argparse
import base64
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements-lock.txt"
REQUIREMENTS = REPO / "requirements.txt"
MIB = 2**20
LIMIT_MIB = 48
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64", "any")

# Imported at run time (traced, see the docstring) and not part of a CUDA PyTorch machine image.
# Conditionally imported extras that a run does without are left out: boto3/botocore (accelerate's
# SageMaker menu), google-cloud-*, cryptography/pyOpenSSL/bcrypt (urllib3's optional
# TLS), brotli/zstandard/h2 (httpx's optional codecs), chardet, aiodns, torchao, liger_kernel and
# mistral_common (transformers/axolotl import them only when present or configured), pycountry.
RUNTIME = (
    "axolotl", "transformers", "peft", "accelerate", "tokenizers", "huggingface_hub", "datasets", "trl",
    "bitsandbytes", "safetensors", "fsspec", "dill", "multiprocess", "xxhash",
    "pydantic", "pydantic_core", "annotated-types", "typing-inspection",
    "evaluate", "posthog", "backoff", "distro", "fastcore", "addict", "fire", "termcolor",
    "kernels", "kernels-data", "platformdirs", "sniffio", "wcwidth", "defusedxml", "pytz",
    # wandb 0.31 imports its OpenTelemetry proxy whenever axolotl imports wandb, disabled or not
    "opentelemetry-api", "opentelemetry-sdk", "opentelemetry-semantic-conventions", "opentelemetry-proto",
    "opentelemetry-exporter-otlp-proto-http", "opentelemetry-exporter-otlp-proto-common",
    "opentelemetry-exporter-http-transport", "opentelemetry-exporter-otlp-common", "googleapis-common-protos",
)
# PyPI has sdists only: built into wheels here (pure Python).
SDIST_ONLY = ("axolotl-contribs-lgpl", "axolotl-contribs-mit")
NEVER_CARRIED = ("torch",)  # the machine's own CUDA build stays

# Distributions a CUDA PyTorch image carries (the device image's package list, KINDS.md); never bundled
# unless requirements.txt pins them (preflight compares those pins).
MACHINE_PROVIDES = frozenset("""
absl-py aiohappyeyeballs aiohttp aiosignal attrs certifi charset-normalizer click cloudpickle colorama
filelock frozenlist fsspec h11 httpcore httpx idna jinja2 joblib llvmlite markupsafe mpmath multidict
networkx numba numpy packaging pandas pillow propcache protobuf psutil pyarrow pygments python-dateutil
regex requests safetensors scikit-learn scipy sentencepiece setuptools six sympy tabulate threadpoolctl
torch tqdm triton typing-extensions urllib3 wrapt xxhash yarl anyio grpcio hf-xet markdown markdown-it-py mdurl
werkzeug tensorboard-data-server
""".split())

# What a run loads of the two big wheels.
BITSANDBYTES_KEEP_LIBS = ("libbitsandbytes_cuda130.so", "libbitsandbytes_cpu.so")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", raw.split("#", 1)[0].strip())
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins


def wanted() -> dict[str, str]:
    """name -> version: the traced run-time set plus every direct pin, at the lock's versions."""
    lock = read_pins(LOCK)
    direct = read_pins(REQUIREMENTS)
    names = {normalize(n) for n in RUNTIME} | {n for n in direct if n not in NEVER_CARRIED}
    names -= {n for n in MACHINE_PROVIDES if n not in direct and n not in {normalize(r) for r in RUNTIME}}
    missing = sorted(n for n in names | {normalize(n) for n in SDIST_ONLY} if n not in lock)
    if missing:
        raise SystemExit(f"error: {LOCK.name} has no pin for {', '.join(missing)}")
    return {n: lock[n] for n in sorted(names)}


def pip(*args: str) -> None:
    """pip quietly; its output only when it fails (one line naming what failed, then pip's own tail)."""
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-3000:])
        raise SystemExit(f"error: pip {args[0]} failed (exit {result.returncode}): see pip's message above")


def download(pins: dict[str, str], python: str, into: Path) -> None:
    """Binary wheels for the GPU machine's Python and platform; the sdist-only packages and this repo built."""
    binary = [f"{n}=={v}" for n, v in pins.items() if n not in {normalize(s) for s in SDIST_ONLY}]
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    pip("download", "--no-deps", "--only-binary=:all:", "--python-version", python,
        "--implementation", "cp", *platform_args, "-d", str(into), *binary)
    lock = read_pins(LOCK)
    for name in SDIST_ONLY:
        pip("wheel", "--no-deps", "-w", str(into), f"{name}=={lock[normalize(name)]}")
    source = into / "cli-tuner-source"  # a copy: building in the checkout leaves build/ and egg-info there
    shutil.copytree(REPO / "cli_tuner", source / "cli_tuner", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "requirements.txt", "requirements-dev.txt"):
        shutil.copy2(REPO / name, source / name)
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(into), str(source))


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def trim_wheel(wheel: Path, keep) -> tuple[int, int]:
    """Rewrite `wheel` with only the members `keep(name)` accepts; RECORD lists exactly what stays."""
    before = wheel.stat().st_size
    trimmed = wheel.with_suffix(".trimmed")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(trimmed, "w", zipfile.ZIP_DEFLATED) as target:
        record_name = next(n for n in source.namelist() if n.endswith(".dist-info/RECORD"))
        lines = []
        for info in source.infolist():
            if info.filename == record_name or not keep(info.filename):
                continue
            data = source.read(info)
            target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
            lines.append(record_line(info.filename, data))
        lines.append(f"{record_name},,")
        target.writestr(record_name, "\n".join(lines) + "\n")
    trimmed.replace(wheel)
    return before, wheel.stat().st_size


def keep_bitsandbytes(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not (base.startswith("libbitsandbytes_") and base not in BITSANDBYTES_KEEP_LIBS)


def keep_wandb(name: str) -> bool:
    # wandb-core and the GPU stats reader are Go/Rust binaries started only when wandb runs
    return not name.startswith("wandb/bin/")


def trim(into: Path) -> list[str]:
    notes = []
    for pattern, keep in (("bitsandbytes-*.whl", keep_bitsandbytes), ("wandb-*.whl", keep_wandb)):
        for wheel in into.glob(pattern):
            before, after = trim_wheel(wheel, keep)
            notes.append(f"{wheel.name}: {before / MIB:.1f} -> {after / MIB:.1f} MiB")
    for wheel in into.glob("bitsandbytes-*.whl"):
        with zipfile.ZipFile(wheel) as z:
            if not any(n.endswith("/libbitsandbytes_cuda130.so") for n in z.namelist()):
                raise SystemExit(f"error: {wheel.name} has no libbitsandbytes_cuda130.so; torch+cu130 needs it")
    return notes


RUN_SH = r"""#!/usr/bin/env bash
# The GPU check, offline: install this bundle's wheels beside the machine's own torch, then run
# `python -m bench.gpu_check` from the cli-tuner repository with the given arguments.
#   bash gpu_bundle/run.sh --out results.json [--nl2bash DIR] [--tokenizer-dir HUB_ID=DIR ...]
# Environment: PYTHON (default python3), CLI_TUNER_REPO (default: the current folder),
# GPU_BUNDLE_SITE (the --target folder, default /tmp/cli-tuner-site).
set -euo pipefail
bundle="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="${CLI_TUNER_REPO:-$PWD}"
site="${GPU_BUNDLE_SITE:-/tmp/cli-tuner-site}"
python="${PYTHON:-python3}"
if [ ! -f "$repo/bench/gpu_check.py" ]; then
    echo "error: $repo is not the cli-tuner repository (no bench/gpu_check.py); cd there or set CLI_TUNER_REPO" >&2
    exit 2
fi
"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --ignore-requires-python \
    --disable-pip-version-check --target "$site" "$bundle"/wheels/*.whl
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PATH="$site/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled AXOLOTL_DO_NOT_TRACK=1 PYTHONUNBUFFERED=1
cd "$repo"
exec "$python" -m bench.gpu_check "$@"
"""


def build(out: Path, python: str) -> dict:
    pins = wanted()
    wheels = out / "wheels"
    if out.exists():
        shutil.rmtree(out)
    wheels.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="gpu_bundle-") as scratch:
        download(pins, python, Path(scratch))
        for wheel in Path(scratch).glob("*.whl"):
            shutil.move(str(wheel), wheels / wheel.name)
    notes = trim(wheels)
    run_sh = out / "run.sh"
    run_sh.write_text(RUN_SH)
    run_sh.chmod(0o755)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    return {"wheels": len(list(wheels.glob("*.whl"))), "bytes": total, "notes": notes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_bundle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python, major.minor (default %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder (replaced)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python):
        parser.error("--python takes major.minor, e.g. 3.12")
    summary = build(args.out, args.python)
    for note in summary["notes"]:
        print(f"gpu_bundle: trimmed {note}")
    size = summary["bytes"] / MIB
    print(f"gpu_bundle: {summary['wheels']} wheels and run.sh in {args.out}: {size:.1f} MiB (limit {LIMIT_MIB} MiB)")
    if size > LIMIT_MIB:
        print(f"error: the bundle is {size:.1f} MiB, over the {LIMIT_MIB} MiB limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
