"""`export --format gguf`: the adapter and the merged model as GGUF files, with an Ollama Modelfile.

The folder (default `<run>/gguf/`) holds
- `adapter-f16.gguf`: the LoRA adapter, for llama.cpp's `--lora` or Ollama's `ADAPTER` on its own base;
- `model-f16.gguf`: the base model with the adapter merged in (PEFT's merge, then llama.cpp's converter);
- `model-<QUANT>.gguf`: that file quantized by llama.cpp (Q4_K_M unless --quant says otherwise);
- `Modelfile` (FROM the quantized file) and `Modelfile.adapter` (FROM the base model's GGUF, which
  the user names, ADAPTER the adapter), both with the trained chat template and its stop tokens;
- `export.json`: each file's size and sha256, the llama.cpp release and commit the converter came
  from, and how long each step took; `export.log`: the converters' own output.
The merged Hugging Face folder is an intermediate and is not kept. The folder is written through
`atomic.folder`: a killed export leaves the previous one or none.

Errors: not enough free disk for the merged model and its GGUF files is an EnvironmentProblem
(exit 5) raised before anything is written, naming the need; a converter or quantizer that fails is
one too, with its last line (the full output goes to the staging folder's export.log).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .. import atomic
from ..data import sha256_file
from ..checks.environment import check_disk
from ..errors import ConfigError, EnvironmentProblem
from ..paths import PROVENANCE_FILE
from ..training import export as hf_export
from ..training.provenance import utc_now
from . import llama_cpp, modelfile

GGUF_DIR = "gguf"
ADAPTER_FILE = "adapter-f16.gguf"
F16_FILE = "model-f16.gguf"
MODELFILE = "Modelfile"
ADAPTER_MODELFILE = "Modelfile.adapter"
RECORD = "export.json"
LOG = "export.log"
# Free disk the export needs, as a multiple of the base model's weights in 16-bit: the merged
# safetensors (kept until converted; up to 2x in float32), the f16 GGUF (1x) and the quantized one
# (Q4_K_M ~0.3x), with room to spare.
DISK_FACTOR = 3.5
# Ollama's names for the shipped configs' base models (FROM in Modelfile.adapter).
OLLAMA_BASES = {"Qwen/Qwen2.5-Coder-7B-Instruct": "qwen2.5-coder:7b-instruct",
                "mistralai/Mistral-7B-Instruct-v0.2": "mistral:7b-instruct-v0.2-fp16"}


@dataclass(frozen=True)
class GgufOptions:
    output: Path | None = None
    base_model: str | None = None
    quant: str = llama_cpp.DEFAULT_QUANT


def file_entry(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def base_weight_bytes(base: str) -> int | None:
    """Bytes of the base model's weight files (a local folder or the Hugging Face cache); None when unknown."""
    folder = Path(base)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(base, local_files_only=True, allow_patterns=["*.json", "*.safetensors"]))
        except Exception:  # not cached: the merge reports it in one line
            return None
    files = list(folder.glob("*.safetensors")) or list(folder.glob("*.bin"))
    return sum(p.stat().st_size for p in files) or None


def preflight_disk(base: str, folder: Path) -> int | None:
    """Stop before any work when the disk cannot hold the export; the bytes needed (None: not known)."""
    weights = base_weight_bytes(base)
    if weights is None:
        return None
    need = int(weights * DISK_FACTOR)
    check = check_disk(folder.parent, need, "disk for the GGUF export")
    if not check.ok:
        raise EnvironmentProblem(f"not enough disk for the GGUF export of {base}: {check.detail}; free space, or "
                                 "pass --output on a larger disk")
    return need


def _tokenizer(final: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(final))
    except Exception as exc:  # a damaged or missing tokenizer file, in many exception classes
        raise ConfigError(f"{final}: the tokenizer saved with the adapter does not load ({exc}); export a run "
                          "whose phase2-final/ holds its tokenizer") from exc


def export(run: Path, options: GgufOptions, say=lambda _m: None) -> Path:
    """Write the GGUF folder; its path."""
    if options.quant not in llama_cpp.QUANT_TYPES:
        raise ConfigError(f"--quant {options.quant}: choose one of {', '.join(llama_cpp.QUANT_TYPES)}")
    final, provenance = hf_export.find_final(run)
    base = options.base_model or provenance.get("base_model")
    if not base:
        raise ConfigError(f"{final / PROVENANCE_FILE}: no base_model recorded; pass --base-model")
    folder = Path(options.output) if options.output else final.parent / GGUF_DIR
    need = preflight_disk(base, folder)
    llama_cpp.require_bindings()
    tokenizer = _tokenizer(final)
    template = modelfile.chat_template(tokenizer)
    log: list[str] = []
    seconds: dict[str, float] = {}
    quant_file = f"model-{options.quant}.gguf"
    with atomic.folder(folder) as staging:
        try:
            start = time.monotonic()
            say("unpacking llama.cpp's converters" if not (llama_cpp.cache_root() / "llama.cpp").is_dir() else
                f"llama.cpp converters from llama-cpp-python {llama_cpp.VERSION}")
            llama_cpp.converters()
            seconds["converters"] = time.monotonic() - start

            start = time.monotonic()
            merged = staging / "merged-hf"
            say(f"merging the adapter into {base} on CPU")
            dtype = hf_export.merge(base, final, merged)
            for name in hf_export.TOKENIZER_FILES:
                if (final / name).is_file():
                    shutil.copy2(final / name, merged / name)
            seconds["merge"] = time.monotonic() - start

            start = time.monotonic()
            say("converting the adapter to GGUF")
            llama_cpp.convert_adapter(final, merged, staging / ADAPTER_FILE, log)
            seconds["adapter_gguf"] = time.monotonic() - start

            start = time.monotonic()
            say("converting the merged model to GGUF f16")
            llama_cpp.convert_model(merged, staging / F16_FILE, log)
            shutil.rmtree(merged)
            seconds["f16_gguf"] = time.monotonic() - start

            start = time.monotonic()
            say(f"quantizing to {options.quant}")
            llama_cpp.quantize(staging / F16_FILE, staging / quant_file, options.quant, log)
            seconds["quantize"] = time.monotonic() - start
        finally:
            atomic.write_text(staging / LOG, "\n".join(log) + "\n")
        atomic.write_text(staging / MODELFILE, modelfile.modelfile(f"./{quant_file}", template))
        ollama_base = OLLAMA_BASES.get(provenance.get("requested_base_model") or "", "BASE_MODEL_GGUF_OR_OLLAMA_NAME")
        atomic.write_text(staging / ADAPTER_MODELFILE, modelfile.modelfile(ollama_base, template, f"./{ADAPTER_FILE}"))
        files = {name: file_entry(staging / name) for name in (ADAPTER_FILE, F16_FILE, quant_file, MODELFILE,
                                                               ADAPTER_MODELFILE)}
        record = {"schema": 1, "format": "gguf", "run_id": provenance.get("run_id"), "source": str(final),
                  "base_model": base, "merged_dtype": dtype, "quant": options.quant, "created_utc": utc_now(),
                  "gate": hf_export.gate_verdict(provenance), "converter": llama_cpp.provenance(),
                  "chat_template": {"stops": list(template.stops), "bos_left_to_tokenizer": template.bos,
                                    "system_prompt_slot": template.with_system is not None},
                  "disk_needed_bytes": need, "seconds": {k: round(v, 2) for k, v in seconds.items()},
                  "files": files}
        atomic.write_json(staging / RECORD, record)
    say(f"GGUF export written: {folder}")
    return folder


def read_record(folder: Path) -> dict:
    return json.loads((folder / RECORD).read_text(encoding="utf-8"))
