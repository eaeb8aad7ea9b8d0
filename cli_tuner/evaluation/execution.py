"""Execution accuracy: a prediction is right when it does what the reference does on the fixture.

Both run in the sandbox, each on its own fresh copy of the fixture tree. They agree when
- exit status agrees: both succeed (0) or both fail (any other status);
- standard output agrees, by the first of these rules that holds (eval.json names it):
  "stdout identical"; "stdout equal but trailing spaces" (each line's trailing whitespace and
  trailing blank lines aside); "stdout same lines, another order" (lines sorted, a leading `./`
  aside) -- only when the reference's lines come from a walk of the file system (find, du, ls,
  grep -r: TRAVERSALS) and nothing in it sets an order (sort, head, tail, seq, tac, rev, printf,
  sed, awk...: ORDER_MATTERS; `ls` with a sorting option; what find -exec and xargs run);
- the resulting trees agree: the same paths, kinds, modes, sizes, content hashes and link
  targets, and the same files modified (a file's mtime moved or not; folder times are not
  compared, as adding a file moves them).

A reference that cannot tell right from wrong is "not executable on the fixture" and counts
neither way: it prints nothing and changes nothing, whether it fails (`ifconfig` is not there) or
succeeds (`find . -name aaa` finds nothing: any command that does nothing, `true` included, would
match it on exit status alone); or it times out (ignoring SIGTERM too: `timeout -k`'s 137), overflows its output,
is dangerous (never run), or the sandbox failed on it, or it starts a background job (`cmd &`): what a
background job has printed and written when the run ends is a race, so such a reference would judge the
same answer differently from one scoring to the next; it is never run. Predictions the risk rules call
dangerous are not run and count as wrong; so do empty ones, and for the same race, ones that start a
background job.

References run once per distinct text; predictions once per distinct text across models (the
same answer from two models gets the same verdict). Each usable reference runs twice: one
whose two runs disagree (`date`, `ps`, `mktemp`) is not executable either ("reference varies
between runs"). A prediction equal to its reference still runs on its own.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..shell import parse, risk
from .sandbox import Outcome, Sandbox

CORRECT, WRONG, NOT_EXECUTABLE = "correct", "wrong", "not executable"
ORDER_MATTERS = frozenset("sort head tail tac nl uniq sed awk gawk paste comm join diff cat shuf column pr fold "
                          "split csplit less more seq rev tsort printf echo".split())
# where lines come in the order a walk of the file system meets them, not an order the command sets
TRAVERSALS = frozenset("find du locate mlocate plocate ls tree rgrep".split())
GREPS = frozenset("grep egrep fgrep zgrep".split())
LS_SORTING = re.compile(r"^-[a-zA-Z]*[tSrcuUvXf]|^--(sort|reverse|time)\b")
BACKGROUND_REFERENCE = "reference starts a background job: what it leaves races the end of the run; not run"
BACKGROUND_ANSWER = "starts a background job: what it leaves races the end of the run; not run"


@dataclass(frozen=True)
class Verdict:
    verdict: str   # CORRECT, WRONG or NOT_EXECUTABLE
    why: str       # one line: the rule that matched, or the first difference

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "why": self.why}


def _commands(words: list[str]) -> list[list[str]]:
    """The command these words run, and those they run in turn (find -exec, xargs's command is already first)."""
    found = [words]
    for index, word in enumerate(words):
        if word in ("-exec", "-execdir", "-ok", "-okdir") and index + 1 < len(words):
            found.extend(_commands(parse.command_words(words[index + 1:])))
            break
    return found


def _sets_order(words: list[str]) -> bool:
    name = words[0].rsplit("/", 1)[-1]
    return name in ORDER_MATTERS or name == "ls" and any(LS_SORTING.match(w) for w in words[1:])


def _traverses(words: list[str]) -> bool:
    name = words[0].rsplit("/", 1)[-1]
    if name in GREPS:
        options, _ = parse.split_options(words[1:])
        return "--recursive" in options or parse.has_short_flag(options, "rR")
    return name in TRAVERSALS


def order_matters(reference: str) -> bool:
    """Whether the reference's output lines must come in its order: unless they come from a walk of the
    file system (find, du, ls, grep -r...) that nothing after it puts in an order (sort, head, seq, tac,
    ls -t...), the order is the command's and an answer must keep it."""
    traversal = False
    for segment in parse.split_commands(reference):
        words = parse.command_words(segment.words)
        if not words:
            continue
        for command in _commands(words):
            if command and _sets_order(command):
                return True
        traversal = traversal or _traverses(words)
    return not traversal


def starts_background_job(command: str) -> bool:
    """Whether any part of the command line runs asynchronously (the `&` control operator, not `&&`,
    `&>` or `2>&1`): its effects are unsettled when the sandbox takes the result."""
    stack = [parse.tree(command)]
    while stack:
        node = stack.pop()
        if node.type == "&" and not node.is_named:
            return True
        stack.extend(node.children)
    return False


def _lines(data: bytes) -> list[str]:
    text = data.decode("utf-8", errors="replace")
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _unordered(lines: list[str]) -> list[str]:
    return sorted(line[2:] if line.startswith("./") else line for line in lines)


def compare_stdout(reference: bytes, prediction: bytes, ordered: bool) -> tuple[bool, str]:
    if reference == prediction:
        return True, "stdout identical"
    ref_lines, pred_lines = _lines(reference), _lines(prediction)
    if ref_lines == pred_lines:
        return True, "stdout equal but trailing spaces"
    if not ordered and _unordered(ref_lines) == _unordered(pred_lines):
        return True, "stdout same lines, another order"
    if len(ref_lines) != len(pred_lines):
        return False, f"stdout differs: {len(pred_lines)} lines, the reference {len(ref_lines)}"
    at = next(i for i, (a, b) in enumerate(zip(ref_lines, pred_lines)) if a != b)
    return False, f"stdout differs at line {at + 1}: {pred_lines[at][:40]!r}, the reference {ref_lines[at][:40]!r}"


def effects(tree: dict[str, tuple], master: dict[str, tuple]) -> dict[str, tuple]:
    """What is compared of a resulting tree: per path its kind, mode, size, hash or target, and for
    files and links whether their modification time moved."""
    out = {}
    for path, (kind, mode, size, mtime, digest) in tree.items():
        before = master.get(path)
        moved = kind != "d" and (before is None or before[3] != mtime)
        out[path] = (kind, mode, size, digest, moved)
    return out


def compare_trees(reference: dict, prediction: dict) -> tuple[bool, str]:
    if reference == prediction:
        return True, ""
    added = sorted(set(prediction) - set(reference))
    missing = sorted(set(reference) - set(prediction))
    changed = sorted(p for p in set(reference) & set(prediction) if reference[p] != prediction[p])
    parts = []
    for label, paths in (("extra", added), ("missing", missing), ("different", changed)):
        if paths:
            parts.append(f"{len(paths)} {label} ({', '.join(paths[:2])}{', ...' if len(paths) > 2 else ''})")
    return False, "tree differs: " + "; ".join(parts)


def _unusable(reference: Outcome, master: dict) -> str | None:
    """Why a reference's run cannot judge a prediction, or None."""
    if reference.status is None:
        return "the sandbox failed on the reference: " + "; ".join(reference.notes)
    if reference.timed_out:
        return "reference times out"
    if reference.output_capped:
        return "reference output over the cap"
    if reference.tree_capped:
        return "reference leaves a tree too large to list"
    if not reference.stdout.strip() and effects(reference.tree, master) == effects(master, master):
        return ("reference fails, prints nothing and changes nothing on the fixture" if reference.status else
                "reference prints nothing and changes nothing on the fixture")
    return None


def judge(reference: Outcome, prediction: Outcome, master: dict, ordered: bool, seconds: float) -> Verdict:
    unusable = _unusable(reference, master)
    if unusable:
        return Verdict(NOT_EXECUTABLE, unusable)
    if prediction.status is None:
        return Verdict(WRONG, "the sandbox failed: " + "; ".join(prediction.notes))
    if prediction.timed_out:
        return Verdict(WRONG, f"timed out after {seconds:g} s")
    if prediction.output_capped:
        return Verdict(WRONG, "output over the cap")
    if prediction.tree_capped:
        return Verdict(WRONG, "leaves a tree too large to list")
    if (reference.status == 0) != (prediction.status == 0):
        first = prediction.stderr.decode(errors="replace").strip().splitlines()
        return Verdict(WRONG, f"exit status differs: {prediction.status}, the reference {reference.status}"
                              + (f" ({first[0][:60]})" if first and prediction.status else ""))
    same, rule = compare_stdout(reference.stdout, prediction.stdout, ordered)
    if not same:
        return Verdict(WRONG, rule)
    same_tree, difference = compare_trees(effects(reference.tree, master), effects(prediction.tree, master))
    if not same_tree:
        return Verdict(WRONG, difference)
    return Verdict(CORRECT, rule + (", same tree" if reference.tree != master else ""))


def run_all(sandbox: Sandbox, commands: list[str], workers: int | None = None) -> dict[str, Outcome]:
    """Each distinct command's outcome; dangerous, empty and background ones are never run and are left out."""
    runnable = list(dict.fromkeys(c for c in commands if c.strip() and not risk.is_dangerous(c)
                                  and not starts_background_job(c)))
    workers = workers or min(16, 4 * (os.cpu_count() or 1))  # most of a run is waiting on a child
    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(runnable, pool.map(sandbox.run, runnable)))


def score(sandbox: Sandbox, references: list[str], predictions: dict[str, list[str]],
          workers: int | None = None) -> dict[str, list[Verdict]]:
    """A verdict per example for each model's predictions (same length as references)."""
    for name, answers in predictions.items():
        if len(answers) != len(references):
            raise ValueError(f"{name}: {len(answers)} predictions for {len(references)} references")
    master = sandbox.master_tree
    seconds = sandbox.limits.seconds
    reference_runs = run_all(sandbox, references, workers)
    usable = {r for r, outcome in reference_runs.items() if _unusable(outcome, master) is None}
    # a second run of each usable reference finds the ones whose output varies (date, ps, mktemp)
    again = run_all(sandbox, sorted(usable), workers)
    unsteady = {r: judge(reference_runs[r], again[r], master, order_matters(r), seconds) for r in usable}
    unsteady = {r: v.why for r, v in unsteady.items() if v.verdict != CORRECT}
    judged = [i for i, r in enumerate(references) if r in usable and r not in unsteady]
    # predictions run only where the reference can judge them
    prediction_runs = run_all(sandbox, [answers[i] for answers in predictions.values() for i in judged], workers)
    verdicts: dict[str, list[Verdict]] = {}
    for name, answers in predictions.items():
        verdicts[name] = []
        for reference, answer in zip(references, answers):
            if reference in unsteady:
                verdicts[name].append(Verdict(NOT_EXECUTABLE, f"reference varies between runs ({unsteady[reference]})"))
            else:
                verdicts[name].append(_verdict(reference, answer, reference_runs, prediction_runs, master, seconds))
    return verdicts


def _verdict(reference: str, answer: str, reference_runs: dict, prediction_runs: dict, master: dict,
             seconds: float) -> Verdict:
    if not reference.strip():
        return Verdict(NOT_EXECUTABLE, "empty reference")
    if starts_background_job(reference):
        return Verdict(NOT_EXECUTABLE, BACKGROUND_REFERENCE)
    if reference not in reference_runs:
        return Verdict(NOT_EXECUTABLE, "reference is dangerous: not run")
    unusable = _unusable(reference_runs[reference], master)
    if unusable:
        return Verdict(NOT_EXECUTABLE, unusable)
    if not answer.strip():
        return Verdict(WRONG, "empty answer")
    if answer not in prediction_runs:  # never run: dangerous (the stronger reason, a fork bomb is both) or a background job
        return Verdict(WRONG, BACKGROUND_ANSWER if starts_background_job(answer) and not risk.is_dangerous(answer)
                       else "dangerous: not run")
    return judge(reference_runs[reference], prediction_runs[answer], master, order_matters(reference), seconds)


def accuracy(verdicts: list[Verdict]) -> dict:
    """Accuracy over the executable examples, and the executable share."""
    judged = [v for v in verdicts if v.verdict != NOT_EXECUTABLE]
    correct = sum(1 for v in judged if v.verdict == CORRECT)
    total = len(verdicts)
    return {"correct": correct, "judged": len(judged), "not_executable": total - len(judged),
            "executable_share": round(len(judged) / total, 4) if total else 0.0,
            "execution_accuracy": round(correct / len(judged), 4) if judged else 0.0}
