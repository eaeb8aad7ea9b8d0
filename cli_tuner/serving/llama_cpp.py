"""llama.cpp's own converters and quantizer, from one pinned llama-cpp-python release.

The converters (convert_hf_to_gguf.py, convert_lora_to_gguf.py, the conversion/ package and
gguf-py) ship only in llama-cpp-python's sdist, which vendors llama.cpp; the compiled package
(the `gguf` extra) binds llama_model_quantize and runs GGUF files. The sdist is fetched once with
pip (the ordinary client, hash-checked) or taken from CLI_TUNER_LLAMA_CPP_SDIST, and only the
converter files are unpacked into a cache folder.

The converters run under this job's own Python: they pin transformers 4.57.6 in their
requirements but convert Qwen2 and Mistral checkpoints under the job's transformers 5.16.1
(tests/test_gguf.py converts and loads a rehearsal's model with them). They run in a child
process with the Hub turned off, so a missing file fails instead of being downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..data import sha256_file
from ..errors import EnvironmentProblem

VERSION = "0.3.36"
SDIST = f"llama_cpp_python-{VERSION}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
# llama-cpp-python's CHANGELOG for 0.3.36: "update llama.cpp to ggml-org/llama.cpp@0c1e57098"
LLAMA_CPP_COMMIT = "0c1e57098"
SDIST_ENV = "CLI_TUNER_LLAMA_CPP_SDIST"
CONVERTER_FILES = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/", "requirements/", "LICENSE")
QUANT_TYPES = {  # llama.h's llama_ftype values for the types offered by --quant
    "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18, "Q8_0": 7, "Q4_0": 2, "Q3_K_M": 12,
}
DEFAULT_QUANT = "Q4_K_M"


def provenance() -> dict:
    return {"llama_cpp_python": VERSION, "sdist_sha256": SDIST_SHA256, "llama_cpp_commit": LLAMA_CPP_COMMIT,
            "source": f"https://github.com/ggml-org/llama.cpp/commit/{LLAMA_CPP_COMMIT}"}


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cli-tuner" / f"llama.cpp-{VERSION}"


def _sdist(folder: Path) -> Path:
    """The pinned sdist: CLI_TUNER_LLAMA_CPP_SDIST, a copy already in the cache, else `pip download`."""
    given = os.environ.get(SDIST_ENV)
    candidates = [Path(given)] if given else [folder / SDIST]
    for path in candidates:
        if path.is_file():
            if sha256_file(path) != SDIST_SHA256:
                raise EnvironmentProblem(f"{path}: sha256 is not llama-cpp-python {VERSION}'s ({SDIST_SHA256[:12]}...); "
                                         f"download {SDIST} again from PyPI")
            return path
    if given:
        raise EnvironmentProblem(f"{SDIST_ENV}={given}: file not found; point it at {SDIST} from PyPI")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                           "-d", str(folder), f"llama-cpp-python=={VERSION}"], capture_output=True, text=True)
    path = folder / SDIST
    if done.returncode != 0 or not path.is_file():
        detail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise EnvironmentProblem(f"cannot download llama-cpp-python {VERSION}'s sdist for llama.cpp's converters ({detail}); "
                                 f"download {SDIST} from PyPI and set {SDIST_ENV}=PATH")
    if sha256_file(path) != SDIST_SHA256:
        path.unlink()
        raise EnvironmentProblem(f"the downloaded {SDIST} does not match the pinned sha256; check pip's index settings")
    return path


def converters() -> Path:
    """The folder holding llama.cpp's converters (unpacked from the pinned sdist once)."""
    root = cache_root()
    target = root / "llama.cpp"
    if (target / "convert_lora_to_gguf.py").is_file():
        return target
    sdist = _sdist(root)
    root.mkdir(parents=True, exist_ok=True)   # an sdist given by CLI_TUNER_LLAMA_CPP_SDIST leaves it unmade
    prefix = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
    try:
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)
                       and any(m.name[len(prefix):].startswith(name) for name in CONVERTER_FILES)]
            # Extraction filters came with Python 3.11.4; Debian 12's python3 (3.11.2) has none. The
            # members are the converter files of an archive whose sha256 is pinned.
            safety = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(staging, members=members, **safety)
        shutil.rmtree(target, ignore_errors=True)
        (staging / prefix).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _run(args: list[str], log: list[str], what: str) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    log.append(f"$ {' '.join(args)}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()] or ["no message"]
        raise EnvironmentProblem(f"{what} failed (exit {done.returncode}: {lines[-1][:300]}); the full output is in "
                                 "the export's export.log")


def convert_model(model_dir: Path, outfile: Path, log: list[str], outtype: str = "f16") -> Path:
    """A Hugging Face model folder as one GGUF file (convert_hf_to_gguf.py)."""
    script = converters() / "convert_hf_to_gguf.py"
    _run([sys.executable, str(script), str(model_dir), "--outfile", str(outfile), "--outtype", outtype],
         log, f"llama.cpp's convert_hf_to_gguf.py on {model_dir}")
    return outfile


def convert_adapter(adapter_dir: Path, base_dir: Path, outfile: Path, log: list[str], outtype: str = "f16") -> Path:
    """A PEFT LoRA adapter as a GGUF adapter (convert_lora_to_gguf.py); base_dir needs only config.json."""
    script = converters() / "convert_lora_to_gguf.py"
    _run([sys.executable, str(script), str(adapter_dir), "--base", str(base_dir), "--outfile", str(outfile),
          "--outtype", outtype], log, f"llama.cpp's convert_lora_to_gguf.py on {adapter_dir}")
    return outfile


def quantize(source: Path, target: Path, quant: str, log: list[str]) -> Path:
    """llama_model_quantize through llama-cpp-python, in a child process (llama.cpp logs to stderr)."""
    if quant not in QUANT_TYPES:
        raise EnvironmentProblem(f"--quant {quant}: choose one of {', '.join(QUANT_TYPES)}")
    _run([sys.executable, "-m", "cli_tuner.serving.llama_cpp", "quantize", str(source), str(target), quant],
         log, f"llama.cpp's quantizer ({quant})")
    return target


def require_bindings() -> None:
    """llama-cpp-python's compiled package, or one line saying how to install it."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        raise EnvironmentProblem(f"llama-cpp-python is not installed ({exc}); install the gguf extra: "
                                 f"pip install -e '.[gguf]' (it compiles llama.cpp, minutes)") from exc


def _quantize_here(source: str, target: str, quant: str) -> int:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[quant]
    return int(llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params)))


def main(argv: list[str]) -> int:
    """`python -m cli_tuner.serving.llama_cpp quantize SOURCE TARGET QUANT`: 0 when llama.cpp wrote TARGET."""
    if len(argv) != 4 or argv[0] != "quantize":
        raise SystemExit("usage: python -m cli_tuner.serving.llama_cpp quantize SOURCE TARGET QUANT")
    status = _quantize_here(*argv[1:])
    if status != 0:
        raise SystemExit(f"llama_model_quantize returned {status}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
