"""`check-checkpoint`: generate Bash with the trained adapter on the test split and score it.

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
- the gate fails (too few answers parse, or a dangerous answer): CheckpointGateFailed (exit 6).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic
from .errors import CheckpointGateFailed, ConfigError, DataError, EnvironmentProblem, UsageError

EVAL_FILE = "eval.json"
PROVENANCE_FILE = "provenance.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_VOCABS = ("tokenizer.json", "vocab.json", "tokenizer.model", "vocab.txt")
SHELLCHECK_LEVELS = ("error", "warning", "info", "style")
WORST_SHOWN = 5
BATCH_SIZE = {"cuda": 16, "mps": 8, "cpu": 4}
REPO_ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- checkpoint files

@dataclass(frozen=True)
class CheckpointFiles:
    folder: Path
    adapter_config: dict
    weights: Path
    provenance_path: Path
    provenance: dict


def _read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: {what} is not valid JSON ({exc}); the checkpoint is damaged, use another one") from exc
    if not isinstance(value, dict):
        raise DataError(f"{path}: {what} should hold a JSON object; the checkpoint is damaged, use another one")
    return value


def _check_safetensors(path: Path) -> None:
    """Reading the header and every tensor's byte range catches a file truncated by a kill."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            keys = list(handle.keys())
    except Exception as exc:  # safetensors raises its own error classes for each kind of damage
        raise DataError(f"{path}: unreadable adapter weights ({type(exc).__name__}: {exc}); "
                        "the file is truncated or damaged, use another checkpoint") from exc
    if not keys:
        raise DataError(f"{path}: adapter weights hold no tensors; the adapter was not saved, use another checkpoint")


def find_provenance(checkpoint_dir: Path) -> Path | None:
    """The checkpoint's own provenance.json (phase2-final, run root), else the run folder's."""
    for candidate in (checkpoint_dir / PROVENANCE_FILE, checkpoint_dir.parent / PROVENANCE_FILE):
        if candidate.is_file():
            return candidate
    return None


def verify_checkpoint(checkpoint_dir: Path | str) -> CheckpointFiles:
    """Every file a check needs, present and readable; raises UsageError/DataError naming the file."""
    folder = Path(checkpoint_dir)
    hint = "point --checkpoint at a checkpoint-N folder, phase2-final/ or the run folder"
    if not folder.is_dir():
        raise UsageError(f"{folder}: checkpoint folder not found; {hint}")
    if not (folder / ADAPTER_CONFIG).is_file():
        raise UsageError(f"{folder / ADAPTER_CONFIG}: not found, so {folder} holds no LoRA adapter; {hint}")
    adapter_config = _read_json(folder / ADAPTER_CONFIG, "adapter config")
    weights = next((folder / name for name in ADAPTER_WEIGHTS if (folder / name).is_file()), None)
    if weights is None:
        raise UsageError(f"{folder / ADAPTER_WEIGHTS[0]}: not found (nor {ADAPTER_WEIGHTS[1]}); the adapter weights "
                         f"were never saved here; {hint}")
    if weights.suffix == ".safetensors":
        _check_safetensors(weights)
    elif weights.stat().st_size == 0:
        raise DataError(f"{weights}: adapter weights are empty; the checkpoint is damaged, use another one")
    if not (folder / TOKENIZER_CONFIG).is_file():
        raise UsageError(f"{folder / TOKENIZER_CONFIG}: not found; the checkpoint carries no tokenizer; {hint}")
    _read_json(folder / TOKENIZER_CONFIG, "tokenizer config")
    if not any((folder / name).is_file() for name in TOKENIZER_VOCABS):
        raise UsageError(f"{folder / TOKENIZER_VOCABS[0]}: not found (nor {', '.join(TOKENIZER_VOCABS[1:])}); "
                         f"the tokenizer's vocabulary is missing; {hint}")
    provenance_path = find_provenance(folder)
    if provenance_path is None:
        raise UsageError(f"{folder / PROVENANCE_FILE}: not found (nor in {folder.parent}); a checkpoint is checked "
                         f"against the run that made it; {hint}")
    provenance = _read_json(provenance_path, "run provenance")
    return CheckpointFiles(folder, adapter_config, weights, provenance_path, provenance)


def resolve_base_model(files: CheckpointFiles, override: str | None) -> tuple[str, str]:
    """(base model, where the name came from): --base-model, provenance, then the adapter config."""
    if override:
        return override, "--base-model"
    if isinstance(files.provenance.get("base_model"), str) and files.provenance["base_model"]:
        return files.provenance["base_model"], str(files.provenance_path)
    from_adapter = files.adapter_config.get("base_model_name_or_path")
    if isinstance(from_adapter, str) and from_adapter:
        return from_adapter, str(files.folder / ADAPTER_CONFIG)
    raise DataError(f"{files.provenance_path}: no 'base_model' recorded (nor in {ADAPTER_CONFIG}); "
                    "pass --base-model with the model the adapter was trained on")


def _existing(path_text: str) -> Path:
    """A recorded relative path is relative to where the run started: the cwd, or the repo root."""
    path = Path(path_text).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return REPO_ROOT / path if (REPO_ROOT / path).exists() else path


def resolve_test_file(files: CheckpointFiles, explicit: Path | str | None) -> Path:
    if explicit:
        path = Path(explicit)
    else:
        recorded = (files.provenance.get("data") or {}).get("test_file")
        if not recorded:
            raise UsageError(f"{files.provenance_path}: the run recorded no test file; pass --test-file FILE (chat JSONL)")
        path = _existing(recorded)
    if not path.is_file():
        raise DataError(f"{path}: test file not found; pass --test-file with the held-out chat JSONL")
    return path


def check_test_file_hash(files: CheckpointFiles, test_file: Path) -> str:
    """The test file's SHA256; a file the run locked must still match, or the scores mean nothing."""
    from .data import sha256_file

    actual = sha256_file(test_file)
    recorded_files = (files.provenance.get("data") or {}).get("files") or {}
    for recorded_path, entry in recorded_files.items():
        if _existing(recorded_path).resolve() != test_file.resolve():
            continue
        expected = (entry or {}).get("sha256")
        if expected and expected != actual:
            raise DataError(f"{test_file}: SHA256 {actual[:16]}... differs from {expected[:16]}... recorded in "
                            f"{files.provenance_path}; restore the locked test split or pass another --test-file")
    return actual


# ---------------------------------------------------------------- answers and scoring

FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|$)", re.DOTALL)
PROMPT_MARK = re.compile(r"^(?:\$|#|>)\s+")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SUDO_OPTIONS_WITH_VALUE = {"-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-U"}


def extract_command(text: str) -> str:
    """The command in a model reply: inside the first code fence if any, first non-blank line, no `$ `."""
    text = text.strip()
    fenced = FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    for line in text.splitlines():
        line = line.strip()
        if line:
            return PROMPT_MARK.sub("", line, count=1).strip().strip("`").strip()
    return ""


def shell_tokens(command: str) -> list[str] | None:
    """Words and operators as Bash would split them (quotes removed); None when quotes do not close."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = False
    try:
        return list(lexer)
    except ValueError:
        return None


def normalize(command: str) -> str:
    """Equal for commands that differ only in spacing or quoting style (`'*.py'` vs `"*.py"`)."""
    tokens = shell_tokens(command)
    if tokens is None:
        return " ".join(command.split())
    return " ".join(tokens)


def first_word(command: str) -> str | None:
    """The program a command runs: past sudo/env, their options and VAR=value prefixes; basename only."""
    tokens = shell_tokens(command) or command.split()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if ASSIGNMENT.match(token):
            index += 1
        elif token in ("sudo", "env"):
            index += 1
            while index < len(tokens) and tokens[index].startswith("-"):
                takes_value = token == "sudo" and tokens[index] in SUDO_OPTIONS_WITH_VALUE
                index += 2 if takes_value else 1
        else:
            return os.path.basename(token) or token
    return None


def _shellcheck_dicts(findings) -> list[dict]:
    return [{"code": f.code, "level": f.level, "message": f.message} for f in findings]


def _risk_dicts(findings) -> list[dict]:
    return [{"rule": f.rule, "severity": f.severity, "message": f.message} for f in findings]


def score_examples(answers: list[str], references: list[str]) -> list[dict]:
    """One scored record per answer; answers are commands already extracted from the replies."""
    from . import bash_checks, risk

    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers for {len(references)} references")
    syntax = bash_checks.syntax_errors(answers)
    lint = bash_checks.shellcheck(answers)
    examples = []
    for index, (answer, reference) in enumerate(zip(answers, references)):
        syntax_error = "empty answer" if not answer.strip() else syntax[index]
        findings = risk.assess(answer) if answer.strip() else []
        reference_word = first_word(reference)
        examples.append({
            "index": index,
            "answer": answer,
            "reference": reference,
            "syntax_ok": syntax_error is None,
            "syntax_error": syntax_error,
            "shellcheck": _shellcheck_dicts(lint[index]) if answer.strip() else [],
            "risks": _risk_dicts(findings),
            "dangerous": bool(answer.strip()) and risk.is_dangerous(answer),
            "reference_dangerous": risk.is_dangerous(reference),
            "exact_match": answer.strip() == reference.strip(),
            "normalized_match": normalize(answer) == normalize(reference),
            "first_word_match": reference_word is not None and first_word(answer) == reference_word,
        })
    return examples


def _short(text: str, limit: int = 60) -> str:
    """A model's answer for one line of output: repr'd, cut at `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _rate(count: int, total: int) -> float:
    return round(count / total, 4) if total else 0.0


def _why_bad(example: dict) -> str:
    if example["dangerous"]:
        return "dangerous: " + "; ".join(r["message"] for r in example["risks"] if r["severity"] == "dangerous")
    if not example["syntax_ok"]:
        return f"syntax: {example['syntax_error']}"
    errors = [f"SC{f['code']}" if str(f["code"]).isdigit() else str(f["code"])
              for f in example["shellcheck"] if f["level"] == "error"]
    return f"shellcheck error {', '.join(errors)}"


def summarize(examples: list[dict]) -> dict:
    """Counts and rates over scored examples, and the worst few (dangerous first, then syntax errors)."""
    total = len(examples)
    count = lambda key: sum(1 for e in examples if e[key])  # noqa: E731 - a local shorthand
    shellcheck_counts = {level: sum(1 for e in examples for f in e["shellcheck"] if f["level"] == level)
                         for level in SHELLCHECK_LEVELS}
    ranked = sorted(
        (e for e in examples if e["dangerous"] or not e["syntax_ok"]
         or any(f["level"] == "error" for f in e["shellcheck"])),
        key=lambda e: (not e["dangerous"], e["syntax_ok"], e["index"]),
    )
    return {
        "n": total,
        "syntax_valid": count("syntax_ok"),
        "syntax_valid_rate": _rate(count("syntax_ok"), total),
        "empty_answers": sum(1 for e in examples if not e["answer"].strip()),
        "shellcheck": shellcheck_counts,
        "shellcheck_clean_rate": _rate(sum(1 for e in examples if e["syntax_ok"] and not e["shellcheck"]), total),
        "dangerous": count("dangerous"),
        "caution": sum(1 for e in examples if not e["dangerous"] and any(r["severity"] == "caution" for r in e["risks"])),
        "reference_dangerous": count("reference_dangerous"),
        "exact_match": count("exact_match"),
        "exact_match_rate": _rate(count("exact_match"), total),
        "normalized_match": count("normalized_match"),
        "normalized_match_rate": _rate(count("normalized_match"), total),
        "first_word_match": count("first_word_match"),
        "first_word_match_rate": _rate(count("first_word_match"), total),
        "worst": [{"index": e["index"], "prompt": e.get("prompt"), "answer": e["answer"], "reference": e["reference"],
                   "why": _why_bad(e)} for e in ranked[:WORST_SHOWN]],
    }


# ---------------------------------------------------------------- report

ROWS = (
    ("examples", lambda s: str(s["n"])),
    ("parses as Bash", lambda s: f"{s['syntax_valid_rate']:.1%} ({s['syntax_valid']})"),
    ("shellcheck error/warning", lambda s: f"{s['shellcheck']['error']}/{s['shellcheck']['warning']}"),
    ("shellcheck info/style", lambda s: f"{s['shellcheck']['info']}/{s['shellcheck']['style']}"),
    ("dangerous / caution", lambda s: f"{s['dangerous']} / {s['caution']}"),
    ("exact match", lambda s: f"{s['exact_match_rate']:.1%}"),
    ("normalized match", lambda s: f"{s['normalized_match_rate']:.1%}"),
    ("first word match", lambda s: f"{s['first_word_match_rate']:.1%}"),
)


@dataclass
class EvalReport:
    summary: dict
    examples: list[dict]
    baseline_examples: list[dict] | None = None
    context: dict = field(default_factory=dict)  # checkpoint, base model, data hash, timings

    def as_dict(self) -> dict:
        return {"schema": 1, **self.context, "summary": self.summary, "examples": self.examples,
                "baseline_examples": self.baseline_examples}

    def gate(self, min_syntax_rate: float, allow_dangerous: bool) -> list[str]:
        """Why the adapter fails the quality gate; empty when it passes. Only the adapter is gated."""
        reasons = []
        summary = self.summary
        if summary["n"] == 0:
            return ["no test examples were scored"]
        if summary["syntax_valid_rate"] < min_syntax_rate:
            reasons.append(f"{summary['syntax_valid_rate']:.1%} of answers parse as Bash "
                           f"({summary['syntax_valid']}/{summary['n']}), below the minimum {min_syntax_rate:.1%}")
        if summary["dangerous"] and not allow_dangerous:
            first = next(e for e in self.examples if e["dangerous"])
            reasons.append(f"{summary['dangerous']} dangerous answer(s), e.g. {_short(first['answer'])} "
                           "(pass --allow-dangerous to accept them)")
        return reasons

    def render(self, file=None) -> None:
        """A short table; box lines and colour only on a terminal, so logs stay plain."""
        from rich import box
        from rich.console import Console
        from rich.table import Table

        console = Console(file=file or sys.stdout)
        baseline = self.summary.get("baseline")
        if self.context:
            console.print(f"checkpoint check: {self.context['checkpoint']} (base {self.context['base_model']}, "
                          f"{self.context['device']}, greedy, {self.context['generation']['max_new_tokens']} new tokens)",
                          markup=False, highlight=False, soft_wrap=True)
        table = Table(box=box.SIMPLE if console.is_terminal else None, show_edge=False)
        table.add_column("metric")
        table.add_column("adapter", justify="right")
        if baseline:
            table.add_column("base model", justify="right")
        for label, value in ROWS:
            table.add_row(label, value(self.summary), *([value(baseline)] if baseline else []))
        console.print(table)
        for bad in self.summary["worst"]:
            console.print(f"  #{bad['index']} {bad['why']}: {_short(bad['answer'])} (reference {bad['reference']!r})",
                          markup=False, highlight=False, soft_wrap=True)


def score(answers: list[str], references: list[str], prompts: list[str] | None = None) -> EvalReport:
    """Score extracted commands against references, without a model; evaluate() uses the same path."""
    examples = score_examples(answers, references)
    for example, prompt in zip(examples, prompts or []):
        example["prompt"] = prompt
    return EvalReport(summarize(examples), examples)


def enforce_gate(report: EvalReport, min_syntax_rate: float, allow_dangerous: bool) -> None:
    reasons = report.gate(min_syntax_rate, allow_dangerous)
    if reasons:
        where = report.context.get("checkpoint", "checkpoint")
        raise CheckpointGateFailed(f"{where}: checkpoint check failed: {'; '.join(reasons)}")


# ---------------------------------------------------------------- model and generation

def load_conversations(test_file: Path, sample_size: int | None) -> list[dict]:
    """(messages before the last assistant turn, reference command, where) for each chat example."""
    from .data import CHAT_FORMAT, chat_pairs, read_records, record_format

    records = read_records(test_file)
    if sample_size is not None:
        records = records[:sample_size]
    conversations = []
    for record, prompt, reference in chat_pairs(records):
        if record_format(record) != CHAT_FORMAT:
            raise DataError(f"{record.where}: check-checkpoint needs chat examples ('messages'); this one is plain text")
        messages = record.data["messages"]
        last_answer = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        conversations.append({"messages": messages[:last_answer], "prompt": prompt, "reference": reference.strip(),
                              "where": record.where})
    return conversations


def pick_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _wants_half(value) -> bool:
    return value is True or value == "auto"


def model_load_kwargs(device: str, resolved_config: dict) -> dict:
    """Load the base model the way it was trained where the hardware allows it.

    CUDA: 4-bit NF4 (or 8-bit) with the run's bitsandbytes settings and Axolotl's defaults under
    them; CPU: float32 (half precision matmuls are slow or missing there); MPS: float16 when the
    run trained in half precision.
    """
    import torch

    cfg = resolved_config or {}
    if device == "cuda":
        bf16 = cfg.get("bf16") is True or (cfg.get("bf16") == "auto" and torch.cuda.is_bf16_supported())
        dtype = torch.bfloat16 if bf16 else torch.float16
        kwargs = {"dtype": dtype, "device_map": {"": 0}}
        if cfg.get("load_in_4bit"):
            from transformers import BitsAndBytesConfig

            bnb = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                   "bnb_4bit_compute_dtype": dtype}
            bnb.update(cfg.get("bnb_config_kwargs") or {})
            kwargs["quantization_config"] = BitsAndBytesConfig(**bnb)
        elif cfg.get("load_in_8bit"):
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        return kwargs
    if device == "mps":
        half = _wants_half(cfg.get("bf16")) or _wants_half(cfg.get("fp16"))
        return {"dtype": torch.float16 if half else torch.float32}
    return {"dtype": torch.float32}


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def load_model(base_model: str, checkpoint_dir: Path, resolved_config: dict, device: str):
    """The base model with the LoRA adapter attached, in eval mode; ConfigError when it cannot load."""
    from transformers import AutoModelForCausalLM

    kwargs = model_load_kwargs(device, resolved_config)
    try:
        base = AutoModelForCausalLM.from_pretrained(base_model, **kwargs)
    except ImportError as exc:  # bitsandbytes or accelerate missing for the 4-bit path
        raise EnvironmentProblem(f"cannot load {base_model} in 4-bit: {_one_line(exc)}; install the pinned "
                                 "requirements (bitsandbytes, accelerate)") from exc
    except Exception as exc:  # hub, file and config errors come in many classes; all mean "not loadable here"
        where = "folder" if Path(base_model).exists() else "hub id"
        raise ConfigError(f"cannot load base model from {where} {base_model!r} ({_one_line(exc)}); offline, pass "
                          "--base-model with a local copy of the model the adapter was trained on") from exc
    if device == "mps":
        base = base.to("mps")
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(base, str(checkpoint_dir), is_trainable=False)
    except Exception as exc:  # shape mismatches and missing modules: the adapter belongs to another model
        raise ConfigError(f"{checkpoint_dir}: adapter does not fit base model {base_model!r} ({_one_line(exc)}); "
                          "pass the --base-model it was trained on") from exc
    model.eval()
    return model


def load_checkpoint_tokenizer(checkpoint_dir: Path):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_dir))
    except Exception as exc:  # tokenizers raise many classes for a damaged file
        raise DataError(f"{checkpoint_dir}: tokenizer files do not load ({_one_line(exc)}); "
                        "the checkpoint is damaged, use another one") from exc
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"{checkpoint_dir / TOKENIZER_CONFIG}: the tokenizer has no chat template, so prompts cannot "
                        "be built as in training; use a checkpoint saved with the chat tokenizer")
    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _eos_ids(model, tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(i for i in ids if i is not None)


def generate(model, tokenizer, conversations: list[dict], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy replies, in the order of `conversations`; prompts of similar length share a batch."""
    import torch
    from transformers import GenerationConfig

    prompts = [tokenizer.apply_chat_template(c["messages"], tokenize=False, add_generation_prompt=True)
               for c in conversations]
    config = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=_eos_ids(model, tokenizer),
                              pad_token_id=tokenizer.pad_token_id)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    replies: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        inputs = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                           add_special_tokens=False).to(device)
        with torch.inference_mode():
            output = model.generate(**inputs, generation_config=config)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        for i, text in zip(batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
            replies[i] = text
    return replies


def _scored(replies: list[str], conversations: list[dict]) -> tuple[dict, list[dict]]:
    report = score([extract_command(r) for r in replies], [c["reference"] for c in conversations],
                   [c["prompt"] for c in conversations])
    for example, reply, conversation in zip(report.examples, replies, conversations):
        example["where"] = conversation["where"]
        example["raw_output"] = reply
    return report.summary, report.examples


def evaluate(checkpoint_dir: Path, test_file: Path | None = None, sample_size: int | None = None,
             max_new_tokens: int = 64, base_model: str | None = None, baseline: bool = False) -> EvalReport:
    """Generate on the test split with the adapter (and, with baseline, without it), score, write eval.json."""
    checkpoint_dir = Path(checkpoint_dir)
    if sample_size is not None and sample_size < 1:
        raise UsageError(f"--sample-size {sample_size}: score at least one example")
    if max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens {max_new_tokens}: generate at least one token")
    files = verify_checkpoint(checkpoint_dir)
    base, base_source = resolve_base_model(files, base_model)
    test_path = resolve_test_file(files, test_file)
    test_sha = check_test_file_hash(files, test_path)
    conversations = load_conversations(test_path, sample_size)
    tokenizer = load_checkpoint_tokenizer(checkpoint_dir)

    device = pick_device()
    started = time.monotonic()
    model = load_model(base, checkpoint_dir, files.provenance.get("resolved_config") or {}, device)
    load_seconds = time.monotonic() - started
    started = time.monotonic()
    replies = generate(model, tokenizer, conversations, max_new_tokens, BATCH_SIZE[device])
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
    atomic.write_json(checkpoint_dir / EVAL_FILE, report.as_dict())
    return report


def command(args) -> int:
    if not 0.0 <= args.min_syntax_rate <= 1.0:
        raise UsageError(f"--min-syntax-rate {args.min_syntax_rate}: give a fraction between 0 and 1")
    report = evaluate(Path(args.checkpoint), test_file=Path(args.test_file) if args.test_file else None,
                      sample_size=args.sample_size, max_new_tokens=args.max_new_tokens,
                      base_model=args.base_model, baseline=args.baseline)
    report.render()
    print(f"wrote {Path(args.checkpoint) / EVAL_FILE}")
    enforce_gate(report, args.min_syntax_rate, args.allow_dangerous)
    return 0
