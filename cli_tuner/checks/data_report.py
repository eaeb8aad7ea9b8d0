"""`data-report`: the training data as the model will see it, checked before a GPU is rented.

Token lengths come from the config's own tokenizer and chat template, rendered the way
Axolotl's `chat_template` strategy renders them, so "this answer would be cut at
sequence_len" is a fact, not a guess. Beside lengths: duplicates, prompts leaking from
val/test into train, malformed records (all of them, with file:line, not just the first),
and the commands themselves: bash -n, ShellCheck and the risk rules.
"""

from __future__ import annotations

import bisect
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic, console, data, tokenizer as tokenizer_module
from ..errors import ConfigError, DataError, EnvironmentProblem
from ..normalize import normalize_command, normalize_prompt
from ..paths import DATA_REPORT_FILE as REPORT_NAME
from ..settings import MAX_NEW_TOKENS
from ..shell import risk, syntax as bash_checks
from . import near_duplicates

TRAINED_SPLITS = ("train", "val")  # the model learns from (or is tuned on) these; test is only prompted
MAX_LINE_CHARS = 2000  # a message line longer than this is a pasted file or log, not a prompt or command
SHOWN = 20             # errors (and warnings) printed one by one; the JSON has all
SHOWN_BEFORE_TRAINING = 3  # the training modes keep their console short: the first few, then where the rest are


@dataclass
class Example:
    split: str
    where: str                     # file:line
    messages: list[dict] | None    # chat examples
    text: str | None = None        # text examples
    prompt: str = ""
    answer: str = ""


@dataclass
class DataReport:
    config: str
    tokenizer: str
    sequence_len: int
    files: dict[str, list[str]]
    splits: dict[str, dict] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    seconds: float = 0.0
    json_path: str | None = None
    notes: list[str] = field(default_factory=list)
    train_lengths: list[int] = field(default_factory=list)  # tokens per train example, in file order
    val_lengths: list[list[int]] = field(default_factory=list)  # tokens per val example, one list per file

    def as_dict(self) -> dict:
        return {
            "schema": 1, "config": self.config, "tokenizer": self.tokenizer, "sequence_len": self.sequence_len,
            "files": self.files, "splits": self.splits, "errors": self.errors, "warnings": self.warnings,
            "details": self.details, "seconds": self.seconds,
        }

    def rows(self) -> list[tuple[str, ...]]:
        header = ("split", "examples", "tokens min/med/p95/max", f"> {self.sequence_len}", "answer cut",
                  "duplicates exact/near", "leaked prompts exact/near", "bash errors", "shellcheck E/W/I/S", "dangerous")
        rows = [header]
        for name, s in self.splits.items():
            tokens = s.get("tokens") or {}
            lengths = "/".join(str(tokens.get(k, "-")) for k in ("min", "median", "p95", "max"))
            levels = s.get("shellcheck", {})
            rows.append((
                name, str(s.get("examples", 0)), lengths, str(s.get("over_sequence_len", 0)),
                str(s.get("answer_cut", 0)), f"{s.get('exact_duplicates', 0)}/{s.get('near_duplicates', 0)}",
                f"{s['leaked_prompts']}/{s.get('near_leaked_prompts', 0)}" if "leaked_prompts" in s else "-", str(s.get("bash_syntax_errors", 0)),
                "/".join(str(levels.get(level, 0)) for level in ("error", "warning", "info", "style")),
                str(s.get("dangerous", 0)),
            ))
        return rows

    def summary_lines(self, shown: int = SHOWN) -> list[str]:
        lines = []
        for name, stats in self.splits.items():
            if stats.get("tokens_per_epoch"):
                how = f"rows padded to {self.sequence_len}" if stats.get("padded") else "without padding"
                epochs = f"; max_steps covers {stats['epochs_at_max_steps']} epochs" if "epochs_at_max_steps" in stats else ""
                lines.append(f"{name}: {stats['tokens_per_epoch']:,} tokens per epoch ({how}){epochs}")
        for level, messages in (("error", self.errors), ("warning", self.warnings)):
            lines += [f"{level}: {m}" for m in messages[:shown]]
            if len(messages) > shown:
                lines.append(f"{level}: ... and {len(messages) - shown} more (see {self.json_path or REPORT_NAME})")
        status = f"{len(self.errors)} errors, {len(self.warnings)} warnings" if self.errors or self.warnings else "no problems"
        lines.append(f"data report: {status} ({self.seconds:.1f} s; tokenizer {self.tokenizer})"
                     + (f"; details in {self.json_path}" if self.json_path else ""))
        return lines

    def render(self, shown: int = SHOWN) -> str:
        """The plain-text table and findings, for logs and terminals without colour."""
        rows = self.rows()
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        table = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        return "\n".join(table + self.summary_lines(shown))

    def renderable(self, terminal: bool, shown: int = SHOWN):
        """A rich table on a terminal; the plain-text table elsewhere, so logs stay readable."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        if not terminal:
            return Text(self.render(shown))
        rows = self.rows()
        table = Table(title=f"data report: {self.config} (sequence_len {self.sequence_len})")
        for column in rows[0]:
            table.add_column(column, justify="left" if column == "split" else "right")
        for row in rows[1:]:
            table.add_row(*row)
        styled = [Text(line, style="red" if line.startswith("error") else "yellow" if line.startswith("warning") else "")
                  for line in self.summary_lines(shown)]
        return Group(table, *styled)


# ------------------------------------------------------------------ reading, leniently

class Problems:
    """Collects per-record messages by kind, so one bad file gives one readable list."""

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def add(self, kind: str, message: str) -> None:
        self.items.setdefault(kind, []).append(message)


def read_split(split: str, path: Path, problems: Problems) -> list[Example]:
    """Every readable example of a file; each unreadable line is recorded, not fatal."""
    if not path.is_file():
        problems.add("missing_file", f"{path}: {split} file not found; check the dataset path in the config")
        return []
    examples = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                record = data.parse_line(path, number, raw)
                if record is None:
                    continue
                kind = data.record_format(record)
            except DataError as exc:
                problems.add("invalid_record", exc.message)
                continue
            if kind == data.CHAT_FORMAT:
                _, prompt, answer = next(data.chat_pairs([record]))
                example = Example(split, where, record.data["messages"], prompt=prompt, answer=answer)
            else:
                example = Example(split, where, None, text=record.data["text"], answer=record.data["text"])
            for content in _contents(example):
                longest = max((len(line) for line in content.splitlines()), default=0)
                if longest > MAX_LINE_CHARS:
                    problems.add("long_line", f"{where}: a line of {longest} characters (limit {MAX_LINE_CHARS}); "
                                              "split it or drop the example")
                    break
            examples.append(example)
    if not examples:
        problems.add("empty_file", f"{path}: no usable examples in the {split} file")
    elif len({e.messages is None for e in examples}) > 1:
        problems.add("mixed_formats", f"{path}: mixes chat ('messages') and text examples; keep one format per file")
    return examples


def _contents(example: Example) -> list[str]:
    if example.messages is None:
        return [example.text or ""]
    return [str(m.get("content", "")) for m in example.messages]


# ------------------------------------------------------------------ tokens

def chat_template_for(loaded, tokenizer) -> str | None:
    """The template Axolotl would use: the tokenizer's own by default (chat_template: tokenizer_default)."""
    datasets = loaded.axolotl.get("datasets") or [{}]
    choice = (datasets[0] or {}).get("chat_template") or loaded.axolotl.get("chat_template") or "tokenizer_default"
    own = getattr(tokenizer, "chat_template", None)
    if choice == "tokenizer_default" or (choice.startswith("tokenizer_default_fallback_") and own):
        if not own:
            raise ConfigError(f"{loaded.path}: chat_template: tokenizer_default, but tokenizer "
                              f"{loaded.tokenizer_source!r} has no chat template; use an Instruct model or name a template")
        return own
    jinja = loaded.axolotl.get("chat_template_jinja")
    if choice == "jinja" and jinja:
        return Path(jinja).read_text(encoding="utf-8") if Path(jinja).is_file() else jinja
    try:
        from axolotl.utils.chat_templates import get_chat_template  # ~3 s import: only for named templates
    except ImportError as exc:
        raise ConfigError(f"{loaded.path}: chat_template {choice!r} needs axolotl installed to resolve") from exc
    try:
        return get_chat_template(choice, jinja_template=jinja, tokenizer=tokenizer)
    except ValueError as exc:
        raise ConfigError(f"{loaded.path}: chat_template {choice!r}: {exc}") from exc


@dataclass
class Lengths:
    total: int          # tokens of the whole rendered example
    prompt: int         # tokens before the answer starts
    answer_end: int     # tokens up to and including the end-of-turn token after the answer


def measure(tokenizer, template: str | None, examples: list[Example], problems: Problems) -> list[Lengths | None]:
    """Token counts per example; None where the chat template rejects the conversation."""
    full_texts: list[str] = []
    prompt_texts: list[str] = []
    rendered: list[int] = []
    for index, example in enumerate(examples):
        if example.messages is None:
            full_texts.append(example.text or "")
            prompt_texts.append("")
            rendered.append(index)
            continue
        last_answer = max(i for i, m in enumerate(example.messages) if m["role"] == "assistant")
        try:
            full_texts.append(tokenizer.apply_chat_template(example.messages, chat_template=template, tokenize=False))
            prompt_texts.append(tokenizer.apply_chat_template(
                example.messages[:last_answer], chat_template=template, tokenize=False, add_generation_prompt=True
            ) if last_answer else "")
            rendered.append(index)
        except Exception as exc:  # jinja raises TemplateError for e.g. a system turn the template refuses
            problems.add("template_rejects", f"{example.where}: the chat template rejects this conversation "
                                             f"({str(exc).splitlines()[0][:160]}); fix the roles or the template")
    # Axolotl tokenizes the rendered text without adding special tokens again (the template has them).
    full = tokenizer(full_texts, add_special_tokens=False, return_offsets_mapping=True) if full_texts else {"input_ids": []}
    prompts = tokenizer(prompt_texts, add_special_tokens=False)["input_ids"] if prompt_texts else []
    results: list[Lengths | None] = [None] * len(examples)
    for position, index in enumerate(rendered):
        example, text = examples[index], full_texts[position]
        ids = full["input_ids"][position]
        starts = [start for start, _ in full["offset_mapping"][position]]
        at = text.rfind(example.answer) if example.messages is not None else -1
        if at < 0:
            answer_end = len(ids)
        else:  # tokens that start inside the answer, plus the end-of-turn token the model must learn
            answer_end = min(len(ids), bisect.bisect_left(starts, at + len(example.answer)) + 1)
        results[index] = Lengths(len(ids), len(prompts[position]) if prompts else 0, answer_end)
    return results


def length_stats(values: list[int]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    return {"min": ordered[0], "median": int(statistics.median(ordered)),
            "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], "max": ordered[-1]}


# ------------------------------------------------------------------ the report

def build(loaded, tokenizer_override: str | None = None, allow_dangerous: bool = False,
          tokenizer=None, tokenizer_name: str | None = None) -> DataReport:
    """`tokenizer`: an already loaded tokenizer (the rehearsal's local one), named `tokenizer_name`."""
    started = time.monotonic()
    files = {name: [Path(p) for p in paths] for name, paths in loaded.split_files().items() if paths}
    if not files.get("train"):
        raise ConfigError(f"{loaded.path}: no `datasets:` train file; add one (see configs/axolotl_config.yaml)")
    problems = Problems()
    examples: dict[str, list[Example]] = {name: [] for name in files}
    per_file: dict[str, list[int]] = {name: [] for name in files}  # examples read from each file, in order
    for name, paths in files.items():
        for path in paths:
            read = read_split(name, path, problems)
            examples[name].extend(read)
            per_file[name].append(len(read))
    everything = [e for name in files for e in examples[name]]
    answers = sorted({e.answer for e in everything if e.messages is not None})

    # The Bash checks run in the background while the tokenizer loads and counts.
    with ThreadPoolExecutor(max_workers=2) as pool:
        syntax_job = pool.submit(bash_checks.syntax_errors, answers)
        lint_job = pool.submit(bash_checks.shellcheck, answers)
        source = tokenizer_name or tokenizer_override or loaded.tokenizer_source
        if tokenizer is None:
            tokenizer = tokenizer_module.load(tokenizer_override or source)
            source = tokenizer.name_or_path or source  # the folder it was found in, when it came from one
        template = chat_template_for(loaded, tokenizer) if any(e.messages for e in everything) else None
        lengths = {name: measure(tokenizer, template, examples[name], problems) for name in files}
        dangerous = {answer: [f for f in risk.assess(answer) if f.severity == risk.DANGEROUS] for answer in answers}
        syntax = dict(zip(answers, syntax_job.result()))
        lint = dict(zip(answers, lint_job.result()))

    report = DataReport(
        config=str(loaded.path), tokenizer=str(source), sequence_len=loaded.shape.sequence_len,
        files={name: [str(p) for p in paths] for name, paths in files.items()},
    )
    report.train_lengths = [m.total if m is not None else 0 for m in lengths.get("train", [])]
    val = [m.total if m is not None else 0 for m in lengths.get("val", [])]
    starts = [sum(per_file.get("val", [])[:i]) for i in range(len(per_file.get("val", [])))]
    report.val_lengths = [val[start:start + count] for start, count in zip(starts, per_file.get("val", []))]
    _record_problems(report, problems)
    _check_lengths(report, loaded, examples, lengths)
    _check_duplicates(report, examples)
    _check_leakage(report, examples)
    _check_commands(report, examples, syntax, lint, dangerous, allow_dangerous)
    _check_manifest(report, files)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _listed(report: DataReport, level: str, messages: list[str]) -> None:
    (report.errors if level == "error" else report.warnings).extend(messages)


PROBLEM_LEVELS = {
    "missing_file": "error", "invalid_record": "error",
    "template_rejects": "error", "empty_file": "error", "mixed_formats": "error", "long_line": "warning",
}


def _record_problems(report: DataReport, problems: Problems) -> None:
    for kind, messages in problems.items.items():
        _listed(report, PROBLEM_LEVELS[kind], messages)
        report.details[kind] = messages


def _check_lengths(report: DataReport, loaded, examples: dict, lengths: dict) -> None:
    limit = report.sequence_len
    strategy = str(loaded.axolotl.get("excess_length_strategy") or "drop").lower()
    padded = loaded.shape.pad_to_sequence_len and not loaded.shape.sample_packing
    over_items: list[dict] = []
    for name, measured in lengths.items():
        pairs = [(e, m) for e, m in zip(examples[name], measured) if m is not None]
        totals = [m.total for _, m in pairs]
        over = [(e, m) for e, m in pairs if m.total > limit]
        cut = [(e, m) for e, m in over if m.answer_end > limit]
        stats = report.splits.setdefault(name, {})
        stats.update({"examples": len(examples[name]), "tokens": length_stats(totals),
                      "over_sequence_len": len(over), "answer_cut": len(cut) if name in TRAINED_SPLITS else 0})
        if name in TRAINED_SPLITS:
            stats["tokens_per_epoch"] = len(totals) * limit if padded else sum(totals)
            stats["padded"] = padded
            stats["answer_tokens"] = sum(max(0, m.answer_end - m.prompt) for _, m in pairs)
        for example, m in over:
            over_items.append({"where": example.where, "split": name, "tokens": m.total, "prompt_tokens": m.prompt,
                               "answer_end": m.answer_end})
        if name not in TRAINED_SPLITS:
            long_prompts = [f"{e.where}: prompt of {m.prompt} tokens + {MAX_NEW_TOKENS} new tokens exceeds "
                            f"sequence_len {limit}, longer than anything trained" for e, m in pairs
                            if m.prompt + MAX_NEW_TOKENS > limit]
            _listed(report, "warning", long_prompts)
            continue
        if strategy == "drop":
            _listed(report, "warning", [f"{e.where}: {m.total} tokens > sequence_len {limit}; Axolotl drops this "
                                        "example (excess_length_strategy: drop)" for e, m in over])
            continue
        level = "error" if cut or strategy == "raise" else "warning"
        _listed(report, "error", [f"{e.where}: {m.total} tokens > sequence_len {limit}; the answer would be cut "
                                  f"at token {limit} (it ends at token {m.answer_end}); raise sequence_len or shorten it"
                                  for e, m in cut])
        _listed(report, level, [f"{e.where}: {m.total} tokens > sequence_len {limit}; only the template's closing "
                                "tokens after the answer are cut" for e, m in over if m.answer_end <= limit])
    report.details["over_sequence_len"] = over_items
    if "train" in report.splits:
        train = report.splits["train"]
        steps, per_step = loaded.shape.max_steps, loaded.shape.examples_per_step
        if steps and train["examples"]:
            train["epochs_at_max_steps"] = round(steps * per_step / train["examples"], 2)


def _check_duplicates(report: DataReport, examples: dict) -> None:
    listing: dict[str, dict] = {}
    for name, members in examples.items():
        exact: dict[tuple, list[str]] = {}
        for e in members:
            exact.setdefault((normalize_prompt(e.prompt), normalize_command(e.answer)), []).append(e.where)
        exact_groups = [w for w in exact.values() if len(w) > 1]
        # near: the same command under a prompt worded almost the same (near_duplicates.near_pairs), not exact;
        # each distinct phrasing counts once, so an exact duplicate is not counted again here
        prompted = [e for e in members if e.prompt]
        near_groups, seen = [], set()
        for pair in near_duplicates.near_pairs([e.prompt for e in prompted]):
            a, b = prompted[pair.first], prompted[pair.second]
            phrasings = frozenset((normalize_prompt(a.prompt), normalize_prompt(b.prompt)))
            if normalize_command(a.answer) == normalize_command(b.answer) and len(phrasings) == 2 \
                    and (phrasings, normalize_command(a.answer)) not in seen:
                seen.add((phrasings, normalize_command(a.answer)))
                near_groups.append([a.where, b.where])
        stats = report.splits.setdefault(name, {})
        stats["exact_duplicates"] = sum(len(w) - 1 for w in exact_groups)
        stats["near_duplicates"] = len(near_groups)
        listing[name] = {"exact": exact_groups, "near": near_groups}
        if exact_groups:
            first = exact_groups[0]
            report.warnings.append(f"{name}: {stats['exact_duplicates']} exact duplicate examples "
                                   f"(e.g. {first[1]} repeats {first[0]}); they weigh double in training")
        if near_groups:
            first = near_groups[0]
            report.warnings.append(f"{name}: {stats['near_duplicates']} near-duplicate examples: same command, "
                                   f"prompt worded almost the same (e.g. {first[1]} and {first[0]})")
    report.details["duplicates"] = listing


def _check_leakage(report: DataReport, examples: dict) -> None:
    train = examples.get("train", [])
    train_prompts: dict[str, str] = {}
    train_commands: dict[str, str] = {}
    for e in train:
        train_prompts.setdefault(normalize_prompt(e.prompt), e.where)
        train_commands.setdefault(normalize_command(e.answer), e.where)
    leaks: dict[str, dict] = {}
    for name in ("val", "test"):
        if name not in examples:
            continue
        prompts = [f"{e.where}: prompt also in train at {train_prompts[normalize_prompt(e.prompt)]}"
                   for e in examples[name] if e.prompt and normalize_prompt(e.prompt) in train_prompts]
        commands = [f"{e.where}: command also in train at {train_commands[normalize_command(e.answer)]}"
                    for e in examples[name] if normalize_command(e.answer) in train_commands]
        held_out = [e for e in examples[name] if e.prompt]
        near = []
        for pair in near_duplicates.near_pairs([e.prompt for e in held_out], [e.prompt for e in train]):
            e, t = held_out[pair.first], train[pair.second]
            if normalize_prompt(e.prompt) != normalize_prompt(t.prompt):
                near.append({"where": e.where, "train": t.where, "score": pair.score, "prompt": e.prompt,
                             "train_prompt": t.prompt, "same_command": normalize_command(e.answer) == normalize_command(t.answer)})
        report.splits.setdefault(name, {})["leaked_prompts"] = len(prompts)
        report.splits[name]["leaked_commands"] = len(commands)
        report.splits[name]["near_leaked_prompts"] = len(near)
        leaks[name] = {"prompts": prompts, "commands": commands, "near_prompts": near}
        _listed(report, "warning", [
            f"{n['where']}: prompt is a near duplicate of train {n['train']} (similarity {n['score']:.0f}"
            f"{', same command' if n['same_command'] else ''}): {n['prompt']!r} ~ {n['train_prompt']!r}" for n in near])
        _listed(report, "error", [f"{m}; {name} must not repeat train or its scores mean nothing" for m in prompts])
        if commands:
            report.warnings.append(f"{name}: {len(commands)} answers are also train answers (first: {commands[0]})")
    report.details["leakage"] = leaks


def _check_commands(report: DataReport, examples: dict, syntax: dict, lint: dict, dangerous: dict,
                    allow_dangerous: bool) -> None:
    items: dict[str, list] = {"bash_syntax_errors": [], "dangerous": []}
    for name, members in examples.items():
        chat = [e for e in members if e.messages is not None]
        broken = [e for e in chat if syntax.get(e.answer)]
        risky = [e for e in chat if dangerous.get(e.answer)]
        levels = {level: 0 for level in ("error", "warning", "info", "style")}
        codes: dict[str, int] = {}
        for e in chat:
            for finding in lint.get(e.answer, []):
                levels[finding.level] = levels.get(finding.level, 0) + 1
                codes[finding.ref] = codes.get(finding.ref, 0) + 1
        stats = report.splits.setdefault(name, {})
        stats.update({"bash_syntax_errors": len(broken), "shellcheck": levels, "dangerous": len(risky),
                      "shellcheck_top_codes": dict(sorted(codes.items(), key=lambda kv: -kv[1])[:10]),
                      "multi_line_answers": sum(1 for e in chat if "\n" in e.answer.strip())})
        items["bash_syntax_errors"] += [{"where": e.where, "command": e.answer, "error": syntax[e.answer]} for e in broken]
        items["dangerous"] += [{"where": e.where, "command": e.answer, "findings": [
            {"rule": f.rule, "message": f.message} for f in dangerous[e.answer]]} for e in risky]
        trained = name in TRAINED_SPLITS
        _listed(report, "error" if trained else "warning",
                [f"{e.where}: answer is not valid Bash ({syntax[e.answer]})" for e in broken])
        level = "error" if trained and not allow_dangerous else "warning"
        hint = "; remove it or pass --allow-dangerous-data" if level == "error" else ""
        _listed(report, level, [f"{e.where}: dangerous command ({dangerous[e.answer][0].message}){hint}" for e in risky])
        if trained and levels["error"]:
            report.warnings.append(f"{name}: {levels['error']} ShellCheck error-level findings in the answers "
                                   f"(see {REPORT_NAME})")
    report.details.update(items)


def _check_manifest(report: DataReport, files: dict) -> None:
    paths = [p for name in files for p in files[name] if p.is_file()]
    try:
        verified = data.verify(paths)
        report.details["manifest"] = {"ok": True, "data_sha256": verified.data_sha256}
    except DataError as exc:
        report.details["manifest"] = {"ok": False, "problem": exc.message}
        report.warnings.append(f"manifest: {exc.message}")


# ------------------------------------------------------------------ entry points

def report_path(loaded) -> Path:
    train = loaded.split_files()["train"]
    return (train[0].parent if train else data.DEFAULT_DATA_DIR) / REPORT_NAME


def check(loaded, tokenizer_override: str | None = None, allow_dangerous: bool = False,
          write_json: bool = True, tokenizer=None, tokenizer_name: str | None = None) -> DataReport:
    """Build the report and write its JSON beside the data; the caller shows it and decides what errors mean."""
    report = build(loaded, tokenizer_override=tokenizer_override, allow_dangerous=allow_dangerous,
                   tokenizer=tokenizer, tokenizer_name=tokenizer_name)
    if write_json:
        try:
            report.json_path = str(atomic.write_json(report_path(loaded), report.as_dict()))
        except EnvironmentProblem as exc:
            # A read-only data mount (compose mounts data/ so) must not fail a check that passed.
            report.notes.append(f"data report not saved ({exc.message})")
    return report


def from_dict(record: dict, train_lengths: list[int], val_lengths: list[list[int]] | None = None) -> DataReport:
    """A report saved by `as_dict` (the training modes' cache), with the train and val lengths beside it."""
    fields = {k: record[k] for k in ("config", "tokenizer", "sequence_len", "files", "splits", "errors",
                                     "warnings", "details", "seconds")}
    return DataReport(**fields, train_lengths=list(train_lengths), val_lengths=[list(v) for v in val_lengths or []])


def show_findings(report: DataReport, shown: int) -> None:
    """The findings without the table: the first `shown` of each level, the count and where the rest are."""
    for note in report.notes:
        console.problem(f"note: {note}")
    for line in report.summary_lines(shown):
        if line.startswith(("error", "warning", "data report")):
            console.out(line)


def show(report: DataReport, shown: int = SHOWN) -> None:
    """The report on the console: its table and the first `shown` errors and warnings of each level."""
    for note in report.notes:
        console.problem(f"note: {note}")
    console.show(report.renderable(console.is_terminal(), shown))


def raise_for_errors(report: DataReport) -> None:
    if report.errors:
        more = f" (and {len(report.errors) - 1} more above)" if len(report.errors) > 1 else ""
        raise DataError(f"data report: {report.errors[0]}{more}")
