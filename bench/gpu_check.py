"""GPU check: the smoke path on a real CUDA GPU, measured against the estimate, per shipped config.

    .venv/bin/python -m bench.gpu_check                       # writes bench_results/gpu_check.json
    .venv/bin/python -m bench.gpu_check --layers 4 --out results.json --config configs/axolotl_config.yaml

For each shipped 4-bit config (the A5000 Qwen2.5-Coder-7B config and the H100 Mistral-7B config):

1. builds a random-weight model with the base model's exact shapes (hidden and intermediate
   size, heads, KV heads, vocabulary) but only `--layers` decoder layers (default 4 of 28/32, so
   two configs fit the time budget; the results say how many of how many), in bf16 on the GPU;
2. runs `entrypoint.py smoke` on it: the job's own preflight, the smoke overlay, the real
   `axolotl train` in 4-bit with the plugin, which writes `measurements.json`, then the table
   that compares measured and estimated and the saved `calibration.json`;
3. copies per config into the results JSON: measured peak memory (device, allocated, reserved),
   tokens/s (processed and real), step time and MFU, beside the estimate for the same model
   (the estimator reads the reduced model's config.json, so both sides have the same layers).

Design target: under 8 minutes on one H100 for both configs (model build and save ~1 min each,
smoke ~2 min each). It has not been run: no GPU was available where it was written.

The tokenizer is the base model's real one when `--tokenizer-dir` names a folder (or the Hugging
Face cache has it); otherwise the rehearsal's small local BPE tokenizer, so token counts differ
from the real run (the results say which). Flash Attention: when the `flash_attn` package is
missing, a config asking for it runs with sdpa instead, and the results say so.

Without CUDA it measures nothing: it prints one line saying so, writes a results JSON with
`"gpu": null` and the reason, and exits 0, so CI runs this path.

A GPU machine without internet: carry the pinned wheels. On a machine with internet:

    grep -v '^torch==' requirements-lock.txt > /tmp/pins.txt     # the GPU machine's CUDA torch stays
    pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        --platform manylinux_2_28_x86_64 -d .whl -r /tmp/pins.txt
    # the direct pins are: axolotl==0.19.0 bitsandbytes==0.50.2 transformers==5.16.1 peft==0.20.0
    # accelerate==1.13.0 datasets==4.8.4 trl==1.9.0 tokenizers==0.23.1 huggingface_hub==1.17.0 ...
    # (--python-version is the GPU machine's Python; this project's images use 3.11)

copy `.whl/`, the repository and `data/` across, then on the GPU machine:

    pip install --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:. HF_HUB_OFFLINE=1 python -m bench.gpu_check --out gpu_check.json
"""

from __future__ import annotations

if __package__ in (None, ""):  # `python bench/gpu_check.py`
    import sys
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))
    __package__ = "bench"

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ("configs/axolotl_config.yaml", "configs/training_config_h100.yaml")
DEFAULT_LAYERS = 4
DEFAULT_OUT = REPO / "bench_results" / "gpu_check.json"
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled",
               "AXOLOTL_DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
SMOKE_TIMEOUT_S = 420


def plan_for(config: str, layers: int) -> dict:
    """What will run for one config: its base model's shapes and the layers kept."""
    from cli_tuner import config as config_module
    from cli_tuner.facts import models

    loaded = config_module.load(REPO / config)
    facts = models.lookup(loaded.base_model)
    if facts is None:
        raise SystemExit(f"{config}: base_model {loaded.base_model!r} has no shipped facts; cannot build its shape")
    return {"config": config, "base_model": loaded.base_model, "model_type": facts.model_type,
            "layers": min(layers, facts.num_hidden_layers), "layers_of_base": facts.num_hidden_layers,
            "hidden_size": facts.hidden_size, "intermediate_size": facts.intermediate_size,
            "vocab_size": facts.vocab_size, "attn_implementation": loaded.axolotl.get("attn_implementation"),
            "sequence_len": loaded.axolotl.get("sequence_len"), "micro_batch_size": loaded.axolotl.get("micro_batch_size")}


def cuda_device() -> tuple[str | None, str]:
    """(device name, why not) for GPU 0."""
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} sees no CUDA device"
    return torch.cuda.get_device_name(0), ""


def choose_tokenizer(base_model: str, tokenizer_dirs: dict[str, str]):
    from cli_tuner import data, tokenizer as tokenizer_loader
    from cli_tuner.errors import ConfigError
    from cli_tuner.training import rehearsal

    for source in (tokenizer_dirs.get(base_model), base_model):
        if not source:
            continue
        try:
            return tokenizer_loader.load(source), f"real tokenizer from {source}"
        except ConfigError:
            continue
    texts = [" ".join(m["content"] for m in r.data.get("messages", []))
             for r in data.read_records(REPO / "data/processed/train.jsonl")]
    return rehearsal.local_tokenizer(texts), "small local BPE tokenizer (the real one was not found): token counts differ"


def build_model(plan: dict, facts, tokenizer, out_dir: Path) -> None:
    """Random bf16 weights of the base model's exact widths, `plan['layers']` layers, initialised on the GPU."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        facts.model_type, hidden_size=facts.hidden_size, intermediate_size=facts.intermediate_size,
        num_hidden_layers=plan["layers"], num_attention_heads=facts.num_attention_heads,
        num_key_value_heads=facts.num_key_value_heads, vocab_size=max(facts.vocab_size, len(tokenizer)),
        max_position_embeddings=facts.max_position_embeddings, tie_word_embeddings=facts.tie_word_embeddings,
        rope_theta=facts.rope_theta, rms_norm_eps=facts.rms_norm_eps, architectures=facts.architectures,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del model
    torch.cuda.empty_cache()


def has_flash_attn() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def run_config(plan: dict, work: Path, tokenizer_dirs: dict[str, str]) -> dict:
    from cli_tuner.facts import models

    started = time.monotonic()
    facts = models.lookup(plan["base_model"])
    tokenizer, tokenizer_note = choose_tokenizer(plan["base_model"], tokenizer_dirs)
    model_dir = work / f"model-{Path(plan['config']).stem}"
    build_model(plan, facts, tokenizer, model_dir)
    built = time.monotonic() - started
    output_root = work / f"out-{Path(plan['config']).stem}"
    sets = [f"base_model={model_dir}", f"tokenizer_config={model_dir}"]
    notes = [f"{plan['layers']} of {plan['layers_of_base']} decoder layers: memory and time are for this depth, "
             f"the estimate below is for the same depth", tokenizer_note]
    if "flash" in str(plan.get("attn_implementation") or "") and not has_flash_attn():
        sets.append("attn_implementation=sdpa")
        notes.append("flash_attn is not installed: ran with attn_implementation sdpa")
    command = [sys.executable, str(REPO / "entrypoint.py"), "smoke", "--config", str(REPO / plan["config"]),
               "--output-root", str(output_root), "--new-run"]
    for assignment in sets:
        command += ["--set", assignment]
    env = {**os.environ, **OFFLINE_ENV}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    (work / f"smoke-{Path(plan['config']).stem}.log").write_text(result.stdout + result.stderr)
    row = {**plan, "notes": notes, "build_seconds": round(built, 1), "smoke_exit": result.returncode,
           "seconds": round(time.monotonic() - started, 1)}
    if result.returncode != 0:
        row["error"] = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return row
    entries = json.loads((output_root / "calibration.json").read_text())
    entry = next(iter(entries.values()))
    run_dir = output_root / entry["smoke_run"]
    row.update(measured=entry["measured"], estimated=entry["estimated"], calibration_key=entry["key"],
               measurements=json.loads((run_dir / "measurements.json").read_text()))
    return row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON (default %(default)s)")
    parser.add_argument("--config", action="append", default=None, help="config to check (repeatable; default both 4-bit configs)")
    parser.add_argument("--layers", type=int, default=DEFAULT_LAYERS, help="decoder layers of each stand-in model")
    parser.add_argument("--tokenizer-dir", action="append", default=[], metavar="HUB_ID=DIR",
                        help="a local folder with the base model's tokenizer")
    parser.add_argument("--work-dir", type=Path, default=None, help="where models and runs go (default: a temp folder)")
    return parser


def write(out: Path, results: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a GPU box without internet must not wait on hub retries
    if args.layers < 1:
        raise SystemExit("--layers must be at least 1")
    tokenizer_dirs = dict(item.split("=", 1) for item in args.tokenizer_dir)
    plans = [plan_for(config, args.layers) for config in (args.config or CONFIGS)]
    results = {"schema": 1, "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "design_target": "both configs in under 8 minutes on one H100 (not yet measured)"}
    device, why = cuda_device()
    if device is None:
        results.update(gpu=None, reason=f"no CUDA device ({why}): nothing was measured", planned=plans)
        write(args.out, results)
        print(f"gpu_check: no CUDA device ({why}); nothing measured; wrote {args.out} with \"gpu\": null")
        return 0
    import torch

    started = time.monotonic()
    results.update(gpu=device, torch=torch.__version__, cuda=torch.version.cuda, configs=[])
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    try:
        for plan in plans:
            print(f"gpu_check: {plan['config']} ({plan['base_model']} shapes, {plan['layers']} of "
                  f"{plan['layers_of_base']} layers) on {device} ...", flush=True)
            row = run_config(plan, work, tokenizer_dirs)
            results["configs"].append(row)
            results["wall_seconds"] = round(time.monotonic() - started, 1)
            write(args.out, results)  # after each config, so a timeout keeps what finished
            measured = row.get("measured") or {}
            print(f"gpu_check: {plan['config']}: exit {row['smoke_exit']}, peak {measured.get('peak_device_gib')} GiB "
                  f"(estimated {(row.get('estimated') or {}).get('peak_gib')}), {measured.get('real_tokens_per_second')} "
                  f"real tok/s, MFU {measured.get('mfu')}, {row['seconds']} s", flush=True)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"gpu_check: wrote {args.out} ({results['wall_seconds']} s)")
    return 0 if all(row["smoke_exit"] == 0 for row in results["configs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
