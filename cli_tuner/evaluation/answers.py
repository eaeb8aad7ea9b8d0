"""Scoring the commands an adapter wrote: no model, no torch, just the answers and the references.

Each answer is checked for Bash syntax, ShellCheck findings, dangerous commands and agreement
with the reference command (exact, normalized, same program), and judged by the command rules:
`bash -n` accepts prose ("Sure, here is the command you asked for:" parses), so an answer counts
as a command only when its first word runs something (shell.commands) and it does not read as a
sentence. Every rule's verdict is kept per example (eval.json).
"""

from __future__ import annotations

import re

from ..shell import commands as known, parse, risk, syntax as bash_checks
from . import nlc2cmd

SHELLCHECK_LEVELS = ("error", "warning", "info", "style")
WORST_SHOWN = 5


FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|$)", re.DOTALL)
PROMPT_MARK = re.compile(r"^(?:\$|#|>)\s+")


SINGLE_INLINE_CODE = re.compile(r"`([^`]+)`[.:]?")


def extract_command(text: str) -> str:
    """The command in a model reply: inside the first code fence if any, else the first non-blank line,
    without a `$ ` prompt. A line that is one backticked command gives the command; backticked code
    inside prose is left in the prose, so the command rules see the prose."""
    text = text.strip()
    fenced = FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    for line in text.splitlines():
        line = PROMPT_MARK.sub("", line.strip(), count=1).strip()
        if line:
            single = SINGLE_INLINE_CODE.fullmatch(line)
            return single.group(1).strip() if single else line
    return ""


# ------------------------------------------------------------------ is it a command?

# the command rules, in the order eval.json lists them; all must pass for an answer to count as a command
COMMAND_RULES = ("not_empty", "bash_syntax", "first_word_is_command", "no_sentence_punctuation",
                 "no_trailing_colon", "no_inline_code_in_prose")
RECORDED_RULES = ("parse_tree_clean", "not_dangerous")  # recorded for every example; gated separately or not
# words that make text around backticked code read as English, not as a command's arguments
PROSE_WORDS = frozenset("""a an the to you your use using can could will would should this that these is are was be
it its of for with and or but then here there which what how if so run runs command commands following follows as
below like""".split())


def _unquoted_words(node, out: list) -> None:
    """Top-level unquoted `word` nodes (not inside quotes or substitutions), in order."""
    for child in node.children:
        if child.type == "word":
            out.append(child)
        elif child.type not in ("string", "raw_string", "ansi_c_string", "command_substitution",
                                "process_substitution", "heredoc_body", "comment", "expansion"):
            _unquoted_words(child, out)


def command_verdicts(answer: str) -> dict[str, bool]:
    """The verdicts that need no external tool: every COMMAND_RULES rule but bash_syntax, and parse_tree_clean."""
    text = answer.strip()
    if not text:
        return {"not_empty": False, "first_word_is_command": False, "no_sentence_punctuation": True,
                "no_trailing_colon": True, "no_inline_code_in_prose": True, "parse_tree_clean": True}
    root = parse.tree(text)
    functions = {name for name, _ in parse.function_definitions(text)}
    first_ok = None
    for segment in parse.split_commands(text):
        if segment.parent is not None:
            continue
        words = parse.command_words(segment.words)
        if not words:
            continue
        name = words[0]
        if segment.name_type == "command_substitution" and name.startswith("`"):
            first_ok = False  # "`ls -la` lists the files": inline code opening a sentence
        elif segment.name_type in ("command_substitution", "simple_expansion", "expansion"):
            first_ok = True   # `$EDITOR file`, `$(which python) x.py`: decided when the shell runs it
        else:
            first_ok = known.is_command(name, functions)
        break
    if first_ok is None:  # only assignments (`x=1`) or keywords: nothing that could be prose
        first_ok = bool(parse.split_commands(text))
    words: list = []
    _unquoted_words(root, words)
    texts = [w.text.decode("utf-8", "replace") for w in words]
    last = texts[-1] if texts and words[-1].end_byte == len(text.encode("utf-8")) else ""
    prose_words = sum(1 for t in texts if t.lower().strip(".,:;!?") in PROSE_WORDS)
    # "Sure, ..." / "First, ..." opens a sentence; "... to list the files." closes one (`split f part.` does not)
    sentence = bool(texts and words[0].start_byte == 0 and re.fullmatch(r"[A-Za-z][a-z]*,", texts[0])) \
        or bool(re.fullmatch(r"[A-Za-z]*[a-z]{2}[.!?]", last)) and prose_words > 0
    has_inline_code = any(n.type == "command_substitution" and n.text.startswith(b"`") for n in _walk(root))
    return {
        "not_empty": True,
        "first_word_is_command": first_ok,
        "no_sentence_punctuation": not sentence,
        # `scp file host:` ends in a colon too; prose around it, or no command first, makes it an introduction
        "no_trailing_colon": not (last.endswith(":") and (prose_words or not first_ok)),
        "no_inline_code_in_prose": not (has_inline_code and prose_words >= 2),
        "parse_tree_clean": not root.has_error,
    }


def _walk(node):
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.children)


def normalize(command: str) -> str:
    """Equal for commands that differ only in spacing or quoting style: `normalized_match` scores an
    answer against its reference with it. The data's duplicate and leakage keys use the cheaper
    spacing-only normalize.normalize_command instead (its docstring says why)."""
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
        dangerous = bool(answer.strip()) and any(f.severity == risk.DANGEROUS for f in findings)
        rules = command_verdicts(answer)
        rules["bash_syntax"] = syntax_error is None
        rules["not_dangerous"] = not dangerous
        rules = {name: rules[name] for name in COMMAND_RULES + RECORDED_RULES}
        examples.append({
            "index": index,
            "answer": answer,
            "reference": reference,
            "syntax_ok": syntax_error is None,
            "syntax_error": syntax_error,
            "shellcheck": _shellcheck_dicts(lint[index]) if answer.strip() else [],
            "risks": _risk_dicts(findings),
            "dangerous": dangerous,
            "rules": rules,
            "command_ok": all(rules[name] for name in COMMAND_RULES),
            "reference_dangerous": risk.is_dangerous(reference),
            "exact_match": answer.strip() == reference.strip(),
            "normalized_match": normalize(answer) == normalize(reference),
            "first_word_match": reference_word is not None and first_word(answer) == reference_word,
            "nlc2cmd_score": round(nlc2cmd.score(answer, reference), 4),
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
    failed = [name for name in COMMAND_RULES if not example["rules"][name]]
    if failed:
        return "not a command: " + ", ".join(name.replace("_", " ") for name in failed)
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
        (e for e in examples if e["dangerous"] or not e["syntax_ok"] or not e["command_ok"]
         or any(f["level"] == "error" for f in e["shellcheck"])),
        key=lambda e: (not e["dangerous"], e["syntax_ok"], e["command_ok"], e["index"]),
    )
    return {
        "n": total,
        "syntax_valid": count("syntax_ok"),
        "syntax_valid_rate": _rate(count("syntax_ok"), total),
        "empty_answers": sum(1 for e in examples if not e["answer"].strip()),
        "commands": count("command_ok"),
        "command_rate": _rate(count("command_ok"), total),
        "rule_failures": {name: sum(1 for e in examples if not e["rules"][name]) for name in COMMAND_RULES + RECORDED_RULES},
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
        # NLC2CMD (Agarwal et al. 2021): mean over examples, in [-1, 1]; comparable with the competition's scores
        "nlc2cmd_score": round(sum(e["nlc2cmd_score"] for e in examples) / total, 4) if total else 0.0,
        "worst": [{"index": e["index"], "prompt": e.get("prompt"), "answer": e["answer"], "reference": e["reference"],
                   "why": _why_bad(e)} for e in ranked[:WORST_SHOWN]],
    }
