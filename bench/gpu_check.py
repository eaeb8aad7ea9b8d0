"""GPU check: `entrypoint.py smoke` on a real CUDA GPU for every shipped config x overlay that runs
on CUDA, measured against the estimate.

    .venv/bin/python -m bench.gpu_check --out results.json --nl2bash DIR \\
        --tokenizer-dir Qwen/Qwen2.5-Coder-7B-Instruct=DIR --tokenizer-dir mistralai/Mistral-7B-Instruct-v0.2=DIR

On a GPU machine without internet whose torch stays its own, build the offline bundle where PyPI
is reachable and run its script from the repository root (the whole recipe, one command each):

    .venv/bin/python -m bench.gpu_bundle --python 3.12 --out gpu_bundle       # <= 48 MiB of wheels + run.sh
    bash gpu_bundle/run.sh --out results.json --nl2bash DIR --tokenizer-dir HUB_ID=DIR ...

What runs, in this order (the default config, then the H100 config whose first GPU smoke failed, the
packing overlay, the M4 config last), each as long as the
remaining `--budget-s` allows (default 540 s for the whole check; a case that would start with less
than MIN_START_S left is recorded as skipped):

| case | config | overlay | data |
|---|---|---|---|
| a5000 | configs/axolotl_config.yaml | - | the shipped sample data |
| h100 | configs/training_config_h100.yaml | - | NL2Bash (`--nl2bash DIR` with all.nl/all.cm) |
| a5000-packing | configs/axolotl_config.yaml | configs/overlays/packing.yaml | the shipped sample data |
| m4 | configs/training_config_m4.yaml | - | the shipped sample data |

The H100 config's one optimizer step is 16 packed rows of 4,096 tokens, more than the sample data
holds: its data is made with the job's own `convert-nl2bash` from `--nl2bash DIR`, cut to what one
optimizer step and one eval batch need (with a margin) and locked with `lock-data`. Each case's
smoke gets `cli_tuner.val_examples` large enough for one eval batch (the smoke overlay's 5 packed
validation examples make zero eval batches under the H100 config's batching). The M4 config's
16-bit LoRA path runs on CUDA as written (no 4-bit, adamw_torch, sdpa); only its memory target is
the GPU found here, not the M4's unified memory.

For each case: a random-weight model of the base model's exact widths (hidden and intermediate
size, heads, KV heads, vocabulary) with `--layers` decoder layers (default 4), built once per base
model on the GPU in a child process (this one holds no CUDA context: smoke charges everything on
the device beyond its own allocator to its context figure); then smoke (the job's preflight, the
smoke overlay, the real `axolotl train` with the measurement plugin, the saved `calibration.json`). Flash Attention: without the `flash_attn`
package a config asking for it runs with sdpa, and the row says so. Tokenizers: the real one from
`--tokenizer-dir HUB_ID=DIR` or the Hugging Face cache, else the rehearsal's small local BPE (the
row says which; token counts then differ from a real run).

Results: `--out` JSON, rewritten atomically after every case; one row per case with config,
overlay, data (source, examples, optimizer steps, eval batches), exit, error tail, measured and
estimated figures, wall time and the smoke log's path (logs beside `--out`). A failed, timed-out or
unmeasured case (no `calibration.json`) is an error row; the other cases still run.

Without CUDA it measures nothing: it writes the plan (every case with its data, examples,
optimizer steps and eval batches) with `"gpu": null` and exits 0; CI runs this path.
"""

from __future__ import annotations

if __package__ in (None, ""):  # `python bench/gpu_check.py`
    import sys
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))
    __package__ = "bench"

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import OFFLINE_ENV

REPO = Path(__file__).resolve().parent.parent
DEFAULT_LAYERS = 4
DEFAULT_BUDGET_S = 540
DEFAULT_OUT = REPO / "bench_results" / "gpu_check.json"
MIN_START_S = 60          # a smoke needs about this much just to load; less left: the case is skipped
STOP_MARGIN_S = 20       # what stopping a timed-out smoke's process group may take (SIGTERM, then SIGKILL)
SMOKE_STEPS = 10          # configs/axolotl_smoke_test.yaml's max_steps
DATA_MARGIN = 1.25        # cut NL2Bash data holds this much more than one step / one eval batch takes


@dataclass(frozen=True)
class Case:
    name: str
    config: str
    overlay: str | None
    data: str             # "sample" or "nl2bash"


# Priority order: the default config; the H100 config, whose smoke failed on the first GPU run (no eval
# batch); the packing overlay; the M4 config last (it targets Apple silicon; CUDA runs its path as written).
CASES = (
    Case("a5000", "configs/axolotl_config.yaml", None, "sample"),
    Case("h100", "configs/training_config_h100.yaml", None, "nl2bash"),
    Case("a5000-packing", "configs/axolotl_config.yaml", "configs/overlays/packing.yaml", "sample"),
    Case("m4", "configs/training_config_m4.yaml", None, "sample"),
)


# ------------------------------------------------------------------ batching arithmetic

def eval_batches(cfg: dict, lengths: list[int]) -> tuple[int, str]:
    """(eval batches, how it was computed) for validation examples of `lengths` under `cfg`: the
    job's own arithmetic, which matches Axolotl's MultipackBatchSampler."""
    from cli_tuner.batching import eval_batches as job

    return job.batches(cfg, lengths), "cli_tuner.batching.eval_batches"


def val_examples_for_one_eval_batch(cfg: dict, lengths: list[int]) -> int | None:
    """The fewest leading validation examples that make one eval batch, or None."""
    from cli_tuner.batching import eval_batches as job

    return job.examples_for_one_batch(cfg, [lengths])


# ------------------------------------------------------------------ configs, tokenizers, data

def load_case(case: Case, sets: list[str], data_overlay: Path | None = None):
    from cli_tuner import config as config_module
    from cli_tuner.paths import SMOKE_OVERLAY

    overlays = [REPO / case.overlay] if case.overlay else []
    if data_overlay is not None:
        overlays.append(data_overlay)
    return config_module.load(REPO / case.config, overlays=[*overlays, REPO / SMOKE_OVERLAY], sets=sets)


def attention_note() -> str:
    """Which attention smoke will get here. gpu_check sets none itself: smoke applies the job's own
    fallback (checks/attention.py) on a CUDA machine with no flash-attention source, as on a pod,
    and the plan uses the same rule so its step and eval-batch arithmetic match what smoke runs."""
    from cli_tuner.facts import attention as attention_facts

    source = attention_facts.detect()
    if source.available:
        return f"flash attention from {source.kind}"
    return (f"no flash-attention source here: smoke falls back to sdpa with the pod's batching "
            f"({source.detail})")


def with_machine_attention(cfg: dict) -> dict:
    """The config as smoke will run it on this machine: the job's sdpa rule where no source exists."""
    from cli_tuner.checks import attention
    from cli_tuner.facts import attention as attention_facts

    if not attention_facts.detect().available:
        attention.sdpa_instead(cfg, "no flash-attention source on this machine")
    return cfg


def choose_tokenizer(base_model: str, tokenizer_dirs: dict[str, str], cache: dict):
    """(tokenizer, note), once per base model."""
    if base_model in cache:
        return cache[base_model]
    from cli_tuner import data, tokenizer as tokenizer_loader
    from cli_tuner.errors import ConfigError, TokenizerNotFound
    from cli_tuner.training import rehearsal

    chosen = None
    for source in (tokenizer_dirs.get(base_model), base_model):
        if not source:
            continue
        try:
            chosen = tokenizer_loader.load(source), f"real tokenizer from {source}"
            break
        except (ConfigError, TokenizerNotFound):
            continue
    if chosen is None:
        texts = [" ".join(m["content"] for m in r.data.get("messages", []))
                 for r in data.read_records(REPO / "data/processed/train.jsonl")]
        chosen = (rehearsal.local_tokenizer(texts),
                  "small local BPE tokenizer (the real one was not found): token counts differ from a real run")
    cache[base_model] = chosen
    return chosen


def token_lengths(loaded, tokenizer) -> dict[str, list[int]]:
    """Tokens per example of the config's train and validation files, as the data checks count them."""
    from cli_tuner.checks import data_report

    problems = data_report.Problems()
    template = data_report.chat_template_for(loaded, tokenizer)
    lengths = {}
    for split, paths in loaded.split_files().items():
        if split not in ("train", "val"):
            continue
        examples = [e for path in paths for e in data_report.read_split(split, Path(path), problems)]
        lengths[split] = [m.total if m is not None else 0 for m in data_report.measure(tokenizer, template, examples, problems)]
    return lengths


def data_overlay_for(cfg: dict, data_dir: Path, into: Path) -> Path:
    """A YAML overlay that points the config's train and validation entries at `data_dir`."""
    import yaml

    overlay = {}
    for key, name in (("datasets", "train.jsonl"), ("test_datasets", "val.jsonl")):
        if cfg.get(key):
            overlay[key] = [{**entry, "path": str(data_dir / name)} for entry in cfg[key]]
    into.write_text(yaml.safe_dump(overlay, sort_keys=False))
    return into


def entrypoint(*args: str, timeout: float | None = None, log: Path | None = None) -> subprocess.CompletedProcess:
    """`entrypoint.py ARGS` in its own process group: on timeout the whole group (smoke's `axolotl
    train` and its workers too) is stopped, so nothing keeps the GPU busy for the next case."""
    process = subprocess.Popen([sys.executable, str(REPO / "entrypoint.py"), *args], cwd=REPO,
                               env={**os.environ, **OFFLINE_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(process)
        stdout, stderr = process.communicate()
        if log is not None:
            log.write_text(stdout + stderr)
        raise subprocess.TimeoutExpired(process.args, timeout, stdout, stderr) from None
    if log is not None:
        log.write_text(stdout + stderr)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def stop_group(process: subprocess.Popen, grace_s: float = 15) -> None:
    """SIGTERM to the process group (smoke saves its state and exits 130), SIGKILL after `grace_s`."""
    import signal

    for sent in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sent)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
            os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group (dataloader workers)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def convert_nl2bash(corpus: Path, into: Path, log: Path) -> Path:
    """The job's own `convert-nl2bash` over the corpus: leak-free train/val/test splits, locked."""
    nl, cm = corpus / "all.nl", corpus / "all.cm"
    if not (nl.is_file() and cm.is_file()):
        raise SystemExit(f"error: --nl2bash {corpus}: all.nl and all.cm not found there")
    result = entrypoint("convert-nl2bash", "--nl", str(nl), "--cm", str(cm), "--out", str(into), "--force", log=log)
    if result.returncode != 0:
        raise SystemExit(f"error: convert-nl2bash exit {result.returncode}: {tail(result)} (log {log})")
    return into


def cut_data(source: Path, train: int, val: int, into: Path, log: Path) -> Path:
    """The first `train` and `val` examples of source's splits, locked with the job's `lock-data`."""
    into.mkdir(parents=True, exist_ok=True)
    for name, count in (("train.jsonl", train), ("val.jsonl", val), ("test.jsonl", None)):
        lines = (source / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (into / name).write_text("".join(lines if count is None else lines[:count]), encoding="utf-8")
    result = entrypoint("lock-data", "--data-dir", str(into), "--force", log=log)
    if result.returncode != 0:
        raise SystemExit(f"error: lock-data exit {result.returncode}: {tail(result)} (log {log})")
    return into


def plan_case(case: Case, layers: int, tokenizer_dirs: dict[str, str], nl2bash: Path | None, work: Path,
              tokenizers: dict, logs: Path) -> dict:
    """What runs for one case: its model shape, its data and how many steps and eval batches it holds."""
    from cli_tuner.batching import steps
    from cli_tuner.facts import models

    sets: list[str] = []
    loaded = load_case(case, sets)
    facts = models.lookup(loaded.base_model)
    if facts is None:
        raise SystemExit(f"error: {case.config}: base_model {loaded.base_model!r} has no shipped facts; cannot build its shape")
    tokenizer, tokenizer_note = choose_tokenizer(loaded.base_model, tokenizer_dirs, tokenizers)
    row = {"case": case.name, "config": case.config, "overlay": case.overlay, "base_model": loaded.base_model,
           "model_type": facts.model_type, "layers": min(layers, facts.num_hidden_layers),
           "layers_of_base": facts.num_hidden_layers, "hidden_size": facts.hidden_size,
           "intermediate_size": facts.intermediate_size, "vocab_size": facts.vocab_size,
           "attn_implementation": loaded.axolotl.get("attn_implementation"),
           "sequence_len": loaded.axolotl.get("sequence_len"), "micro_batch_size": loaded.axolotl.get("micro_batch_size"),
           "sets": sets, "notes": [attention_note(), tokenizer_note], "data_overlay": None}
    cfg = with_machine_attention(loaded.axolotl)
    data = {"source": "data/processed (shipped sample)", "one_step": steps.need_for_one_step(cfg).describe()}
    if case.data == "nl2bash":
        if nl2bash is None:
            row["data"] = {**data, "source": None}
            row["skip"] = "needs NL2Bash-sized data: give --nl2bash DIR (all.nl, all.cm)"
            return row
        converted = work / "nl2bash-full"
        if not (converted / "train.jsonl").is_file():
            convert_nl2bash(nl2bash, converted, logs / "gpu_check-convert-nl2bash.log")
        full_overlay = data_overlay_for(cfg, converted, work / f"data-{case.name}-full.yaml")
        lengths = token_lengths(load_case(case, sets, full_overlay), tokenizer)
        train_needed = steps.examples_for_one_step(cfg, lengths["train"])
        val_needed = val_examples_for_one_eval_batch(cfg, lengths.get("val", []))
        if train_needed is None or val_needed is None:
            row["data"] = {**data, "source": str(nl2bash)}
            row["skip"] = f"NL2Bash from {nl2bash} holds less than one optimizer step or one eval batch"
            return row
        train_count = min(len(lengths["train"]), math.ceil(train_needed * DATA_MARGIN))
        val_count = min(len(lengths["val"]), math.ceil(val_needed * DATA_MARGIN))
        cut = cut_data(converted, train_count, val_count, work / f"nl2bash-{case.name}", logs / "gpu_check-lock-data.log")
        row["data_overlay"] = str(data_overlay_for(cfg, cut, work / f"data-{case.name}.yaml"))
        lengths = {"train": lengths["train"][:train_count], "val": lengths["val"][:val_count]}
        data["source"] = f"NL2Bash from {nl2bash} (convert-nl2bash, first {train_count} train / {val_count} val, lock-data)"
    else:
        lengths = token_lengths(loaded, tokenizer)
    train_needed = steps.examples_for_one_step(cfg, lengths["train"])
    smoke_train = loaded.settings.train_examples or 0
    smoke_val = loaded.settings.val_examples or 0
    val_lengths = lengths.get("val", [])
    val_needed = val_examples_for_one_eval_batch(cfg, val_lengths)
    val_used = min(len(val_lengths), max(smoke_val, math.ceil((val_needed or 0) * DATA_MARGIN)))
    batches, how = eval_batches(cfg, val_lengths[:val_used])
    if train_needed is None or not batches:
        row["data"] = data
        row["skip"] = (f"the data holds less than one optimizer step ({data['one_step']})" if train_needed is None
                       else "the validation data makes no eval batch")
        return row
    train_used = max(smoke_train, train_needed)
    if val_used != smoke_val:
        row["sets"] = [*row["sets"], f"cli_tuner.val_examples={val_used}"]
    data.update(train_examples=train_used, val_examples=val_used, examples_in_files=len(lengths["train"]),
                optimizer_steps=SMOKE_STEPS, eval_batches=batches, eval_batches_from=how)
    row["data"] = data
    return row


# ------------------------------------------------------------------ the GPU part

# This process never touches CUDA: smoke's measurement counts everything on the device beyond its own
# allocator as its context (measurements callback: device used - reserved), so a CUDA context or a
# cached model here would be charged to every smoke. Device facts and the model build run in children.

def in_child(function: str, *args) -> dict:
    """`function(*args)` of this module in a fresh Python process; its JSON result."""
    code = ("import json, sys; from bench import gpu_check; "
            "print(json.dumps(getattr(gpu_check, sys.argv[1])(*json.loads(sys.argv[2]))))")
    result = subprocess.run([sys.executable, "-c", code, function, json.dumps([str(a) if isinstance(a, Path) else a for a in args])],
                            cwd=REPO, env={**os.environ, **OFFLINE_ENV}, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{function} failed in its child process: {tail(result)}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def device_facts() -> dict:
    """(in a child) GPU 0's name, torch and its CUDA, or why there is none."""
    try:
        import torch
    except ImportError:
        return {"gpu": None, "why": "torch is not installed"}
    if not torch.cuda.is_available():
        return {"gpu": None, "why": f"torch {torch.__version__} sees no CUDA device"}
    return {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda}


def cuda_device() -> dict:
    return in_child("device_facts")


def build_model(base_model: str, layers: int, out_dir: str, device: str = "cuda") -> dict:
    """(in a child) random bf16 weights of the base model's exact widths and `layers` decoder layers,
    made on the GPU, saved beside the tokenizer already in `out_dir`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from cli_tuner import tokenizer as tokenizer_loader
    from cli_tuner.facts import models

    facts = models.lookup(base_model)
    tokenizer = tokenizer_loader.load(out_dir)
    config = AutoConfig.for_model(
        facts.model_type, hidden_size=facts.hidden_size, intermediate_size=facts.intermediate_size,
        num_hidden_layers=layers, num_attention_heads=facts.num_attention_heads,
        num_key_value_heads=facts.num_key_value_heads, vocab_size=max(facts.vocab_size, len(tokenizer)),
        max_position_embeddings=facts.max_position_embeddings, tie_word_embeddings=facts.tie_word_embeddings,
        rope_theta=facts.rope_theta, rms_norm_eps=facts.rms_norm_eps, architectures=facts.architectures,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        dtype="bfloat16")
    torch.manual_seed(0)
    started = time.monotonic()
    with torch.device(device):  # initialised on the GPU: seconds, not the CPU's minute for 7B widths
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out_dir)
    return {"seconds": round(time.monotonic() - started, 1)}


def tail(result: subprocess.CompletedProcess | None, text: str | None = None, lines: int = 5) -> str:
    text = text if text is not None else ((result.stderr or "") + (result.stdout or "") if result else "")
    kept = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in kept if line.startswith("error:") or "Error" in line]
    return "\n".join((errors[-2:] if errors else []) + kept[-lines:])[-1500:]


def run_case(row: dict, work: Path, models_built: dict, tokenizers: dict, timeout_s: float, logs: Path) -> dict:
    started = time.monotonic()
    key = (row["base_model"], row["layers"])
    model_dir = models_built.get(key)
    if model_dir is None:  # one stand-in per base model: two cases share each
        model_dir = work / f"model-{len(models_built)}"
        tokenizer, _ = tokenizers[row["base_model"]]
        tokenizer.save_pretrained(model_dir)
        in_child("build_model", row["base_model"], row["layers"], model_dir)
        models_built[key] = model_dir
    row["build_seconds"] = round(time.monotonic() - started, 1)
    output_root = work / f"out-{row['case']}"
    command = ["smoke", "--config", str(REPO / row["config"]), "--output-root", str(output_root), "--new-run"]
    if row["overlay"]:
        command += ["--overlay", str(REPO / row["overlay"])]
    if row["data_overlay"]:
        command += ["--overlay", row["data_overlay"]]
    for assignment in [f"base_model={model_dir}", f"tokenizer_config={model_dir}", *row["sets"]]:
        command += ["--set", assignment]
    if row["config"].endswith("training_config_m4.yaml"):
        # its target is the M4's unified memory (an MPS device): checked against the GPU found instead
        command += ["--set", "cli_tuner.target=null"]
    log = logs / f"gpu_check-{row['case']}.log"
    row["log"] = str(log)
    row["command"] = "entrypoint.py " + " ".join(command)
    try:
        result = entrypoint(*command, timeout=max(1.0, timeout_s - STOP_MARGIN_S - (time.monotonic() - started)), log=log)
        row["exit"] = result.returncode
        output = result.stdout + result.stderr
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or "") + (exc.stderr or "")
        row["exit"] = None
        row["error"] = f"timed out after {timeout_s:.0f} s (the budget left for it)\n" + tail(None, output)
    row["wall_seconds"] = round(time.monotonic() - started, 1)
    if row.get("exit") not in (0, None):
        row["error"] = tail(None, output)
    if row.get("exit") == 0:
        row.update(read_calibration(output_root))
    return row


def read_calibration(output_root: Path) -> dict:
    """measured/estimated from smoke's calibration.json; an error row when smoke measured no GPU memory."""
    path = output_root / "calibration.json"
    try:
        entries = json.loads(path.read_text())
        entry = next(iter(entries.values()))
        run_dir = output_root / entry["smoke_run"]
        measurements = json.loads((run_dir / "measurements.json").read_text())
    except (OSError, ValueError, StopIteration, KeyError, TypeError) as exc:
        return {"error": f"smoke exited 0 but {path} is missing or unreadable ({type(exc).__name__}): "
                         "no GPU memory was measured", "measured": None, "estimated": None}
    return {"measured": entry.get("measured"), "estimated": entry.get("estimated"),
            "calibration_key": entry.get("key"), "measurements": measurements}


# ------------------------------------------------------------------ command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON (default %(default)s)")
    parser.add_argument("--case", action="append", default=None, choices=[c.name for c in CASES],
                        help="run only these cases, in the order given (repeatable; default all, in the table's order)")
    parser.add_argument("--layers", type=int, default=DEFAULT_LAYERS, help="decoder layers of each stand-in model")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                        help="wall-clock seconds for the whole check (default %(default)s)")
    parser.add_argument("--nl2bash", type=Path, default=None, metavar="DIR",
                        help="NL2Bash corpus folder (all.nl, all.cm) for the configs the sample data is too small for")
    parser.add_argument("--tokenizer-dir", action="append", default=[], metavar="HUB_ID=DIR",
                        help="a local folder with a base model's tokenizer (repeatable)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where models and runs go (default: a temp folder)")
    return parser


def write(out: Path, results: dict) -> None:
    from cli_tuner import atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out, results)


def summary_line(row: dict) -> str:
    if row.get("skip"):
        return f"gpu_check: {row['case']}: skipped: {row['skip']}"
    measured, estimated = row.get("measured") or {}, row.get("estimated") or {}
    data = row.get("data") or {}
    return (f"gpu_check: {row['case']}: exit {row.get('exit')}, {data.get('train_examples')} train / "
            f"{data.get('val_examples')} val examples, peak {measured.get('peak_device_gib')} GiB (estimated "
            f"{estimated.get('peak_gib')}), {measured.get('real_tokens_per_second')} real tok/s, "
            f"{row.get('wall_seconds')} s" + (f"; error: {row['error'].splitlines()[0]}" if row.get("error") else ""))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.update(OFFLINE_ENV)  # a GPU box without internet must not wait on hub retries
    if args.layers < 1:
        raise SystemExit("error: --layers must be at least 1")
    if any("=" not in item for item in args.tokenizer_dir):
        raise SystemExit("error: --tokenizer-dir takes HUB_ID=DIR, e.g. Qwen/Qwen2.5-Coder-7B-Instruct=/data/qwen")
    started = time.monotonic()
    tokenizer_dirs = dict(item.split("=", 1) for item in args.tokenizer_dir)
    by_name = {c.name: c for c in CASES}
    cases = [by_name[name] for name in dict.fromkeys(args.case)] if args.case else list(CASES)  # --case: that order
    results = {"schema": 2, "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "budget_seconds": args.budget_s, "layers": args.layers}
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = args.out.resolve().parent
    logs.mkdir(parents=True, exist_ok=True)
    tokenizers: dict = {}
    try:
        plans = [plan_case(case, args.layers, tokenizer_dirs, args.nl2bash, work, tokenizers, logs) for case in cases]
        facts = cuda_device()
        device, why = facts["gpu"], facts.get("why")
        if device is None:
            results.update(gpu=None, reason=f"no CUDA device ({why}): nothing was measured", planned=plans)
            write(args.out, results)
            print(f"gpu_check: no CUDA device ({why}); nothing measured; wrote {args.out} with \"gpu\": null "
                  f"and the plan of {len(plans)} cases")
            return 0
        results.update(gpu=device, torch=facts["torch"], cuda=facts["cuda"], configs=[])
        models_built: dict = {}
        for row in plans:
            left = args.budget_s - (time.monotonic() - started)
            if not row.get("skip") and left < MIN_START_S:
                row["skip"] = f"budget: {left:.0f} s left of --budget-s {args.budget_s:.0f}, under {MIN_START_S} s"
            if not row.get("skip"):
                print(f"gpu_check: {row['case']} ({row['base_model']} shapes, {row['layers']} of "
                      f"{row['layers_of_base']} layers) on {device}, up to {left:.0f} s ...", flush=True)
                try:
                    run_case(row, work, models_built, tokenizers, left, logs)
                except Exception as exc:  # one broken case must not lose the others' rows
                    row.update(exit=None, error=f"{type(exc).__name__}: {exc}"[:1500])
            results["configs"].append(row)
            results["wall_seconds"] = round(time.monotonic() - started, 1)
            write(args.out, results)  # after each case, so a kill keeps what finished
            print(summary_line(row), flush=True)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    write(args.out, results)
    print(f"gpu_check: wrote {args.out} ({results['wall_seconds']} s)")
    ran = [row for row in results["configs"] if not row.get("skip")]
    return 0 if ran and all(row.get("exit") == 0 and not row.get("error") for row in ran) else 1


if __name__ == "__main__":
    raise SystemExit(main())
