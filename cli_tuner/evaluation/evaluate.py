"""Evaluation of an adapter: generate Bash on the test split and score it.

Each test prompt goes through the tokenizer's chat template and greedy decoding; the first
command line of the reply is checked for Bash syntax, shellcheck findings, dangerous commands
and agreement with the reference command. `evaluate()` writes `eval.json` into the checkpoint
folder and returns an `EvalReport`; `EvalReport.gate()` says why it fails the quality gate.

Errors, and why these classes:
- the checkpoint folder, or a file it needs (adapter_config.json, adapter weights, tokenizer
  files, provenance.json), is missing: UsageError (exit 2) -- --checkpoint points at the wrong
  folder; the message names the file and where a complete checkpoint lives.
- such a file is present but unreadable (invalid JSON, truncated safetensors, provenance
  without a base model), or the test file differs from the one the run recorded: DataError
  (exit 3) -- an integrity problem, like a dataset that fails its manifest.
- the base model cannot be loaded (offline and not cached) or the adapter does not fit it:
  ConfigError (exit 4).
- the gate fails (too few answers parse, or a dangerous answer, or no margin over the base model):
  CheckpointGateFailed (exit 6).

Execution accuracy (execution_scoring) runs each answer in the sandbox against its reference;
where bubblewrap cannot start the report says so in one line and the static metrics decide.
"""

from __future__ import annotations

import time
from pathlib import Path

from .. import atomic
from ..errors import UsageError
from ..paths import EVAL_FILE
from ..settings import MAX_NEW_TOKENS
from .adapter_files import check_test_file_hash, resolve_base_model, resolve_test_file, verify_checkpoint
from .answers import extract_command
from .generation import BATCH_SIZE, generate, load_checkpoint_tokenizer, load_conversations, load_model
from .execution_scoring import add_execution
from .report import EvalReport, score
from .sandbox import Limits


def _scored(replies: list[str], conversations: list[dict]) -> tuple[dict, list[dict]]:
    report = score([extract_command(r) for r in replies], [c["reference"] for c in conversations],
                   [c["prompt"] for c in conversations])
    for example, reply, conversation in zip(report.examples, replies, conversations):
        example["where"] = conversation["where"]
        example["raw_output"] = reply
    return report.summary, report.examples


def evaluate(checkpoint_dir: Path, test_file: Path | None = None, sample_size: int | None = None,
             max_new_tokens: int = MAX_NEW_TOKENS, base_model: str | None = None, baseline: bool = False,
             device: str = "cpu", on_progress=None, execution: bool = True,
             sandbox_limits: Limits | None = None, record: Path | None = None,
             data_dir: Path | None = None) -> EvalReport:
    """Generate on the test split with the adapter (and, with baseline, without it), score, and write
    the report to `record` (default: eval.json in the checkpoint folder). `data_dir`: the locked folder
    the test split is read from and verified in (default: the run's recorded, hashed test file).

    With `execution`, the answers also run in the sandbox where it starts (`context["sandbox"]` says
    how, or why not, in one line); `score-execution` can add that later to the written eval.json.

    `device` is the torch device of the machine the plan detected (cuda, mps or cpu); `on_progress`,
    if given, is called with (prompts answered, prompts in all) after each batch."""
    checkpoint_dir = Path(checkpoint_dir)
    if sample_size is not None and sample_size < 1:
        raise UsageError(f"--sample-size {sample_size}: score at least one example")
    if max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens {max_new_tokens}: generate at least one token")
    files = verify_checkpoint(checkpoint_dir)
    base, base_source = resolve_base_model(files, base_model)
    test_path = resolve_test_file(files, test_file, data_dir)
    test_sha = check_test_file_hash(files, test_path)
    conversations = load_conversations(test_path, sample_size)
    tokenizer = load_checkpoint_tokenizer(checkpoint_dir)

    started = time.monotonic()
    model = load_model(base, checkpoint_dir, files.provenance.get("resolved_config") or {}, device)
    load_seconds = time.monotonic() - started
    started = time.monotonic()
    replies = generate(model, tokenizer, conversations, max_new_tokens, BATCH_SIZE[device], on_progress)
    generate_seconds = time.monotonic() - started
    summary, examples = _scored(replies, conversations)

    baseline_examples = None
    summary["baseline"] = None
    if baseline:
        with model.disable_adapter():
            base_replies = generate(model, tokenizer, conversations, max_new_tokens, BATCH_SIZE[device])
        baseline_summary, baseline_examples = _scored(base_replies, conversations)
        baseline_summary.pop("baseline", None)
        summary["baseline"] = baseline_summary

    data = files.provenance.get("data") or {}
    summary.update({
        "base_model": base,
        "data_sha256": data.get("data_sha256"),
        "test_file": str(test_path),
        "test_file_sha256": test_sha,
    })
    context = {
        "checkpoint": str(checkpoint_dir),
        "run_id": files.provenance.get("run_id"),
        "run_mode": files.provenance.get("mode"),
        "run_status": files.provenance.get("status"),
        "provenance": str(files.provenance_path),
        "base_model": base,
        "base_model_source": base_source,
        "requested_base_model": files.provenance.get("requested_base_model"),
        "data_sha256": data.get("data_sha256"),
        "test_file": str(test_path),
        "test_file_sha256": test_sha,
        "device": device,
        "generation": {"do_sample": False, "max_new_tokens": max_new_tokens, "batch_size": BATCH_SIZE[device]},
        "seconds": {"load": round(load_seconds, 1), "generate": round(generate_seconds, 1)},
    }
    report = EvalReport(summary, examples, baseline_examples, context)
    if execution:
        add_execution(report, sandbox_limits)
    else:
        report.context["sandbox"] = "execution not scored (turned off); score it later with score-execution"
    atomic.write_json(record or checkpoint_dir / EVAL_FILE, report.as_dict())
    return report
