"""Planted wrong commands: each reference turned into a command that does something else.

Four kinds, taken in turn (a reference that has nothing for a kind gets the next one that
applies): an off-by-one `head`/`tail` count, a wrong path (the search root or a file operand
moved elsewhere), a wrong flag (one that changes what the utility does), a wrong utility (the
program swapped for another). Execution accuracy on these must be near zero; used by
tests/test_execution.py and bench/bench_execution.py.
"""

from __future__ import annotations

import re

KINDS = ("off-by-one", "wrong path", "wrong flag", "wrong utility")
COUNT = re.compile(r"\b(head|tail)(\s+-n\s*|\s+-)(\d+)")
FIND_ROOT = re.compile(r"\bfind(\s+)(\.|\./|~|\$HOME|/\S*)(?=\s|$)")
FLAG_SWAPS = (  # each changes the output even on empty input where it can (`wc` alone prints three counts)
    (re.compile(r"-type\s+f\b"), "-type d"), (re.compile(r"-type\s+d\b"), "-type f"),
    (re.compile(r"\bwc\s+-[lcwm]\b"), "wc"), (re.compile(r"\bgrep\s"), "grep -c "), (re.compile(r"\bls\b"), "ls -s"),
    (re.compile(r"\bdu\b"), "du -a"), (re.compile(r"-i?name\s"), "-name x"), (re.compile(r"\bsort\s+-r\b"), "sort"),
    (re.compile(r"\bsort\b"), "sort -r"), (re.compile(r"-mtime\s+([+-]?)(\d+)"), r"-mtime \g<1>1\2"),
)


def off_by_one(command: str) -> str | None:
    found = COUNT.search(command)
    if not found:
        return None
    return command[:found.start(3)] + str(int(found.group(3)) + 1) + command[found.end(3):]


def wrong_path(command: str) -> str | None:
    found = FIND_ROOT.search(command)
    if found:
        return command[:found.start(2)] + "/usr/share/doc" + command[found.end(2):]
    return None


def wrong_flag(command: str) -> str | None:
    for pattern, replacement in FLAG_SWAPS:
        changed = pattern.sub(replacement, command, count=1)
        if changed != command:
            return changed
    return None


def wrong_utility(command: str) -> str:
    # the first word becomes `echo`, so the command prints its own arguments instead of running
    words = command.split(None, 1)
    return "echo " + command if not words or words[0] in ("echo", "printf") else "echo " + words[-1] if len(words) > 1 \
        else "false"


PLANTERS = (off_by_one, wrong_path, wrong_flag)


def plant(command: str, index: int) -> tuple[str, str]:
    """(the wrong command, its kind) for the reference at `index`."""
    for step in range(len(KINDS)):
        kind = (index + step) % len(KINDS)
        if kind == 3:
            return wrong_utility(command), KINDS[3]
        planted = PLANTERS[kind](command)
        if planted is not None and planted != command:
            return planted, KINDS[kind]
    return wrong_utility(command), KINDS[3]
