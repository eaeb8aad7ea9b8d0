"""Scoring the commands an adapter wrote: no model, no torch, just the answers and the references.

Each answer is checked for Bash syntax, ShellCheck findings, dangerous commands and agreement
with the reference command (exact, normalized, same program).
"""

from __future__ import annotations

import re

from ..shell import parse, risk, syntax as bash_checks

SHELLCHECK_LEVELS = ("error", "warning", "info", "style")
WORST_SHOWN = 5


FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|$)", re.DOTALL)
PROMPT_MARK = re.compile(r"^(?:\$|#|>)\s+")


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


def normalize(command: str) -> str:
    """Equal for commands that differ only in spacing or quoting style."""
    return parse.normalize(command)


def first_word(command: str) -> str | None:
    """The program a command runs, past sudo/env, their options and VAR=value prefixes."""
    return parse.program(command)


def _shellcheck_dicts(findings) -> list[dict]:
    return [{"code": f.code, "level": f.level, "message": f.message} for f in findings]


def _risk_dicts(findings) -> list[dict]:
    return [{"rule": f.rule, "severity": f.severity, "message": f.message} for f in findings]


def score_examples(answers: list[str], references: list[str]) -> list[dict]:
    """One scored record per answer; answers are commands already extracted from the replies."""
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


def short(text: str, limit: int = 60) -> str:
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
