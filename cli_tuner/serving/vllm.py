"""`export --format vllm`: the adapter checked against vLLM's LoRA limits, a folder, and the command.

vLLM never runs in this job's environment: the folder is served by the official vLLM image
(compose service `serve`) or any vLLM install, with the printed `vllm serve` command.

The limits, from vLLM's source (vllm/lora/peft_helper.py `PEFTHelper._validate_features` and
`validate_legal`, vllm/config/lora.py `MaxLoRARanks`, vllm/lora/utils.py `get_supported_lora_modules`
with the models' `packed_modules_mapping`), each checked before anything is written:
- modules_to_save must be empty (vLLM loads LoRA matrices only; classifier heads aside);
- no DoRA, no LoRA bias (`bias` "none", `lora_bias` false), no rank_pattern beyond the allowed ranks;
- the rank must fit `--max-lora-rank`, whose allowed values are 1, 8, 16, 32, 64, 128, 256, 320, 512
  (default 16): the command passes the smallest one that holds the adapter's rank;
- the target modules must be layers vLLM wraps with LoRA for the architecture: for Qwen2 and
  Mistral (served as Llama) the attention and MLP projections, which vLLM fuses into qkv_proj and
  gate_up_proj; embeddings and lm_head are not among them.
"""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import atomic
from ..errors import ConfigError
from ..paths import PROVENANCE_FILE
from ..training import export as hf_export
from ..training.provenance import utc_now

VLLM_DIR = "vllm"
ADAPTER_DIR = "adapter"
COMMAND_FILE = "serve-command.txt"
RECORD = "export.json"
ALLOWED_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DEFAULT_MAX_RANK = 16
PROJECTIONS = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
SUPPORTED_MODULES = {"Qwen2ForCausalLM": PROJECTIONS, "MistralForCausalLM": PROJECTIONS,
                     "LlamaForCausalLM": PROJECTIONS}
SERVED_NAME = "cli-tuner"
# The official image the compose service `serve` runs (docker.io/vllm/vllm-openai).
IMAGE = "vllm/vllm-openai:v0.11.0"


@dataclass(frozen=True)
class VllmOptions:
    output: Path | None = None
    base_model: str | None = None
    name: str = SERVED_NAME


def max_lora_rank(rank: int) -> int | None:
    """The smallest --max-lora-rank vLLM accepts that holds `rank`; None when none does."""
    return next((allowed for allowed in ALLOWED_RANKS if allowed >= rank), None)


def _module_names(target_modules) -> list[str]:
    if isinstance(target_modules, str):  # a regex: its alternatives, as vLLM reads them
        inner = target_modules.rsplit("(", 1)[-1].split(")", 1)[0]
        return [part for part in inner.split("|") if part]
    return [str(m).rsplit(".", 1)[-1] for m in target_modules or []]


def violations(adapter_config: dict, architecture: str | None) -> list[str]:
    """One line per limit the adapter breaks, each with its fix; empty when vLLM accepts it."""
    found = []
    saved = [m for m in adapter_config.get("modules_to_save") or [] if m not in ("classifier", "score")]
    if saved:
        found.append(f"modules_to_save {saved}: vLLM loads LoRA matrices only and refuses full copies of modules; "
                     "retrain with lora_modules_to_save unset (and no new tokens that need embed_tokens/lm_head)")
    if adapter_config.get("use_dora"):
        found.append("use_dora true: vLLM does not support DoRA; retrain with peft_use_dora unset")
    if adapter_config.get("bias", "none") != "none" or adapter_config.get("lora_bias"):
        found.append(f"bias {adapter_config.get('bias')!r}/lora_bias {adapter_config.get('lora_bias')}: vLLM refuses "
                     "adapter biases; retrain with bias none")
    ranks = [int(adapter_config.get("r") or 0), *(int(v) for v in (adapter_config.get("rank_pattern") or {}).values())]
    if max_lora_rank(max(ranks)) is None:
        found.append(f"rank {max(ranks)}: above vLLM's largest --max-lora-rank {ALLOWED_RANKS[-1]}; retrain with "
                     f"lora_r <= {ALLOWED_RANKS[-1]}")
    supported = SUPPORTED_MODULES.get(architecture or "")
    if supported is None:
        found.append(f"architecture {architecture!r}: not one this export knows vLLM's LoRA layers for "
                     f"({', '.join(SUPPORTED_MODULES)}); serve it by hand after checking vLLM's model page")
    else:
        unsupported = sorted(set(_module_names(adapter_config.get("target_modules"))) - supported)
        if unsupported:
            found.append(f"target modules {unsupported}: vLLM applies LoRA to {', '.join(sorted(supported))} of "
                         f"{architecture} only; retrain with lora_target_modules among those")
    return found


def architecture_of(base: str) -> str | None:
    """The base model's architecture from its config.json (a local folder or the Hugging Face cache)."""
    from transformers import AutoConfig

    try:
        return (AutoConfig.from_pretrained(base).architectures or [None])[0]
    except Exception as exc:  # offline and not cached, in many exception classes
        raise ConfigError(f"cannot read the config of base model {base!r} ({type(exc).__name__}); pass --base-model "
                          "with a local copy of the model the adapter was trained on") from exc


def serve_command(base: str, name: str, adapter_path: str, rank: int, max_model_len: int | None = None) -> list[str]:
    command = ["vllm", "serve", base, "--enable-lora", "--lora-modules", f"{name}={adapter_path}",
               "--max-lora-rank", str(max_lora_rank(rank))]
    if max_model_len:
        command += ["--max-model-len", str(max_model_len)]
    return command


def export(run: Path, options: VllmOptions, say=lambda _m: None) -> tuple[Path, str]:
    """Check the adapter, write the folder; (folder, the printed command)."""
    final, provenance = hf_export.find_final(run)
    base = options.base_model or provenance.get("base_model")
    if not base:
        raise ConfigError(f"{final / PROVENANCE_FILE}: no base_model recorded; pass --base-model")
    config = json.loads((final / "adapter_config.json").read_text(encoding="utf-8"))
    problems = violations(config, architecture_of(base))
    if problems:
        raise ConfigError(f"{final / 'adapter_config.json'}: vLLM would refuse this adapter ({len(problems)} "
                          "problem(s) above)", details=problems)
    folder = Path(options.output) if options.output else final.parent / VLLM_DIR
    rank = max([int(config["r"]), *(int(v) for v in (config.get("rank_pattern") or {}).values())])
    max_len = (provenance.get("resolved_config") or {}).get("sequence_len")
    command = serve_command(base, options.name, str((folder / ADAPTER_DIR).resolve()), rank, max_len)
    text = shlex.join(command)
    with atomic.folder(folder) as staging:
        adapter = staging / ADAPTER_DIR
        adapter.mkdir()
        for name in hf_export.ADAPTER_FILES + hf_export.TOKENIZER_FILES:
            if (final / name).is_file():
                shutil.copy2(final / name, adapter / name)
        atomic.write_text(staging / COMMAND_FILE, text + "\n")
        atomic.write_json(staging / RECORD, {
            "schema": 1, "format": "vllm", "run_id": provenance.get("run_id"), "source": str(final),
            "base_model": base, "served_name": options.name, "rank": rank, "max_lora_rank": max_lora_rank(rank),
            "command": command, "image": IMAGE, "created_utc": utc_now(), "gate": hf_export.gate_verdict(provenance)})
    say(f"vLLM export written: {folder}")
    return folder, text
