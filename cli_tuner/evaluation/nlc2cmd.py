"""The NLC2CMD competition's score: utilities and their flags, as published.

Agarwal et al., "NLC2CMD Competition: Translating Natural Language to Bash Commands" (NeurIPS
2020 competition track, PMLR 133, 2021), section 3; reference code: IBM/clai,
utils/metric/metric_utils.py (`compute_metric`). For a prediction P and a reference R, with
their utilities in order padded with "none" to the longer length T:

    S = 1/T * sum_i  [ u_i * (1 + f_i) / 2  -  (1 - u_i) ]

u_i is 1 when the i-th utilities are the same program, else 0; f_i, the flag score of that pair,
is (2|F_P & F_R| - |F_P | F_R|) / max(1, |F_P|, |F_R|) over the two sets of flag names, and 1
when neither has flags. S lies in [-1, 1]: -1 for all utilities wrong, 1 for the same utilities
with the same flags, 0 for nothing predicted against nothing. The competition multiplies by a
confidence (always 1 here: one greedy answer) and takes the best of up to five answers.

The reference code parses with Tellina's bashlint, which knows each utility's options from its
man page; this one reads the same parts with the project's parser (shell.parse), so:
utilities are command names in document order, including the command `xargs` runs and the one
a `find -exec` runs; a flag is a word starting with `-` before the operands end, `--name=value`
counts as `--name`, a bundle of single letters (`-la`) counts as each letter (`-l`, `-a`), and
`find`'s primaries (`-name`, `-type`) count whole (an unknown `-EXdsx` counts letter by letter, as
the reference code's example 5 scores it). Flag values are not compared (nor are they in the
reference code).
"""

from __future__ import annotations

import re

from ..shell import parse

FIND_PRIMARIES = frozenset("""-name -iname -path -ipath -wholename -iwholename -regex -iregex -regextype -type -xtype
-size -mtime -mmin -atime -amin -ctime -cmin -newer -anewer -cnewer -newermt -perm -user -group -uid -gid -nouser
-nogroup -links -inum -samefile -lname -ilname -empty -readable -writable -executable -maxdepth -mindepth -depth
-mount -xdev -follow -daystart -prune -print -print0 -printf -fprint -fprint0 -fprintf -ls -fls -delete -exec
-execdir -ok -okdir -quit -not -and -or -a -o -true -false -fstype -used -noleaf -ignore_readdir_race -help
-version -P -L -H -D -O""".split())
FIND_COMMAND = {"-exec", "-execdir", "-ok", "-okdir"}
BUNDLE = re.compile(r"-([A-Za-z]+)(\d*)")


def _flags(utility: str, args: list[str]) -> set[str]:
    flags: set[str] = set()
    for arg in args:
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            continue
        if arg.startswith("--"):
            flags.add(arg.split("=", 1)[0])
        elif utility == "find" and arg in FIND_PRIMARIES:
            flags.add(arg)
        elif utility == "find" and re.fullmatch(r"[-+]?\d+[a-zA-Z]?", arg):
            continue  # a value: `-mtime -3`, `-size -10k`
        else:
            bundle = BUNDLE.fullmatch(arg)
            flags.update(f"-{letter}" for letter in bundle.group(1)) if bundle else flags.add(arg)
    return flags


def _utilities_of(words: list[str], out: list[tuple[str, set[str]]]) -> None:
    words = parse.command_words(words) if words and words[0].rsplit("/", 1)[-1] != "xargs" else words
    if not words:
        return
    name = words[0].rsplit("/", 1)[-1]
    rest = words[1:]
    if name == "xargs":
        options, skip = [], False
        while rest and rest[0].startswith("-") and not skip:
            option = rest.pop(0)
            options.append(option)
            if option in parse.WRAPPERS["xargs"] and rest:
                rest.pop(0)
        out.append((name, _flags(name, options)))
        _utilities_of(rest, out)
        return
    if name == "find":
        own, runs = [], []
        while rest:
            word = rest.pop(0)
            own.append(word)
            if word in FIND_COMMAND:
                end = next((i for i, w in enumerate(rest) if w in (";", "+", "\\;")), len(rest))
                runs.append(rest[:end])
                rest = rest[end + 1:]
        out.append((name, _flags(name, own)))
        for nested in runs:
            _utilities_of(nested, out)
        return
    out.append((name, _flags(name, rest)))


def utilities(command: str) -> list[tuple[str, set[str]]]:
    """(utility, its flag names) for each utility in the command, in order."""
    found: list[tuple[str, set[str]]] = []
    for segment in parse.split_commands(command):
        _utilities_of(list(segment.words), found)
    return found


def flag_score(predicted: set[str], reference: set[str]) -> float:
    if not predicted and not reference:
        return 1.0
    return (2 * len(predicted & reference) - len(predicted | reference)) / max(1, len(predicted), len(reference))


def score(prediction: str, reference: str) -> float:
    """The NLC2CMD score of one prediction (confidence 1), in [-1, 1]."""
    predicted, expected = utilities(prediction), utilities(reference)
    length = max(len(predicted), len(expected))
    if length == 0:
        return 0.0
    total = 0.0
    for i in range(length):
        p = predicted[i] if i < len(predicted) else None
        r = expected[i] if i < len(expected) else None
        same = p is not None and r is not None and p[0].lower() == r[0].lower()
        flags = flag_score(p[1] if p else set(), r[1] if r else set())
        total += (1 + flags) / 2 if same else -1.0
    return total / length
