"""`convert-nl2bash`: the NL2Bash corpus (line-parallel all.nl / all.cm) to locked chat splits.

Filters what a Bash model should not learn (empty pairs, commands bash cannot parse, commands
the risk check calls dangerous), removes exact duplicates, and splits so that no description
and no command appears in two splits: pairs sharing a normalized description or a command are
joined into one group (union-find), as are pairs whose descriptions are near duplicates
(paraphrases worded almost the same, checks.near_duplicates); whole groups are assigned to train, val
or test.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from .. import atomic, data
from ..errors import DataError, UsageError
from ..normalize import normalize_command, normalize_prompt
from ..checks import near_duplicates
from ..shell import risk, syntax as bash_checks

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Pair:
    line: int          # 1-based line in both source files
    description: str
    command: str


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, without line endings; a bad byte is a DataError at file:line."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; pass the NL2Bash all.nl / all.cm files with --nl and --cm")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 ({exc.reason}); re-encode the file as UTF-8") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return [line.rstrip("\r") for line in lines]


def read_pairs(nl_path: Path, cm_path: Path) -> list[Pair]:
    descriptions, commands = read_lines(nl_path), read_lines(cm_path)
    if len(descriptions) != len(commands):
        longer, shorter = (nl_path, cm_path) if len(descriptions) > len(commands) else (cm_path, nl_path)
        first_unpaired = min(len(descriptions), len(commands)) + 1
        raise DataError(
            f"{longer}:{first_unpaired}: {nl_path} has {len(descriptions)} lines but {cm_path} has {len(commands)}; "
            f"the files must be line-parallel (this line has no partner in {shorter})"
        )
    return [Pair(n, d.strip(), c.strip()) for n, (d, c) in enumerate(zip(descriptions, commands), start=1)]


def clean(pairs: list[Pair]) -> tuple[list[Pair], dict[str, int]]:
    """Drop empty, unparsable, dangerous and repeated pairs; count each reason.

    Repeats are judged as the data report judges them: case and spacing do not make a pair new.
    """
    dropped = {"empty": 0, "bash_syntax_error": 0, "dangerous": 0, "duplicate": 0}
    present = [p for p in pairs if p.description and p.command]
    dropped["empty"] = len(pairs) - len(present)
    errors = bash_checks.syntax_errors([p.command for p in present])
    parsed = [p for p, error in zip(present, errors) if error is None]
    dropped["bash_syntax_error"] = len(present) - len(parsed)
    safe = [p for p in parsed if not risk.is_dangerous(p.command)]
    dropped["dangerous"] = len(parsed) - len(safe)
    seen: set[tuple[str, str]] = set()
    kept = []
    for pair in safe:
        key = (normalize_prompt(pair.description), normalize_command(pair.command))
        if key in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(key)
        kept.append(pair)
    return kept, dropped


def leak_free_groups(pairs: list[Pair], near: bool = True) -> list[list[Pair]]:
    """Connected groups of pairs: two pairs are connected when they share a description or a command,
    or (with `near`) when their descriptions are near duplicates (checks.near_duplicates)."""
    parent = list(range(len(pairs)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    first_with_key: dict[str, int] = {}
    for index, pair in enumerate(pairs):
        for key in ("nl:" + normalize_prompt(pair.description), "cm:" + normalize_command(pair.command)):
            if key in first_with_key:
                parent[root(index)] = root(first_with_key[key])
            else:
                first_with_key[key] = index
    if near:
        for pair in near_duplicates.near_pairs([p.description for p in pairs]):
            parent[root(pair.first)] = root(pair.second)
    groups: dict[int, list[Pair]] = {}
    for index, pair in enumerate(pairs):
        groups.setdefault(root(index), []).append(pair)
    return sorted(groups.values(), key=lambda group: group[0].line)


def assign(groups: list[list[Pair]], seed: int, val_fraction: float, test_fraction: float) -> dict[str, list[Pair]]:
    """Whole groups in seeded random order fill test, then val, up to their share; the rest is train.

    A group that would overshoot a held-out split goes to train instead, so the held-out splits
    stay close to their fractions and the large groups (many phrasings of one command) train.
    """
    total = sum(len(group) for group in groups)
    # a held-out split that was asked for gets at least one example, even from a tiny corpus
    targets = {name: max(1, round(total * fraction)) if fraction > 0 else 0
               for name, fraction in (("test", test_fraction), ("val", val_fraction))}
    order = list(groups)
    random.Random(seed).shuffle(order)
    splits: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for group in order:
        name = next((s for s in ("test", "val") if len(splits[s]) + len(group) <= targets[s]), "train")
        splits[name].extend(group)
    for members in splits.values():
        members.sort(key=lambda pair: pair.line)
    return splits


def as_chat(pair: Pair) -> dict:
    return {"messages": [{"role": "user", "content": pair.description},
                         {"role": "assistant", "content": pair.command}]}


def to_jsonl(pairs: list[Pair]) -> str:
    return "".join(json.dumps(as_chat(p), ensure_ascii=False) + "\n" for p in pairs)


def convert(nl_path, cm_path, out_dir, seed: int = 42, val_fraction: float = 0.05,
            test_fraction: float = 0.05, force: bool = False, near: bool = True) -> dict:
    started = time.monotonic()
    nl_path, cm_path, out_dir = Path(nl_path), Path(cm_path), Path(out_dir)
    for name, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0 <= value < 1:
            raise UsageError(f"{name} {value} must be at least 0 and below 1, e.g. 0.05")
    if val_fraction + test_fraction >= 1:
        raise UsageError(f"--val-fraction + --test-fraction = {val_fraction + test_fraction} leaves nothing to train on")
    existing = [out_dir / f"{name}.jsonl" for name in SPLITS if (out_dir / f"{name}.jsonl").exists()]
    if existing and not force:
        raise UsageError(f"{existing[0]} already exists; pass --force to replace the split files and their manifest")

    pairs = read_pairs(nl_path, cm_path)
    kept, dropped = clean(pairs)
    if not kept:
        raise DataError(f"{cm_path}: no usable pairs left after filtering ({dropped}); check the input files")
    groups = leak_free_groups(kept, near=near)
    splits = assign(groups, seed, val_fraction, test_fraction)
    for name in SPLITS:
        path = out_dir / f"{name}.jsonl"
        if splits[name]:
            atomic.write_text(path, to_jsonl(splits[name]))
        else:  # the manifest refuses empty files; a stale split from an earlier run must not be locked either
            path.unlink(missing_ok=True)
    manifest_path, manifest = data.lock(out_dir, force=True)
    return {
        "source": {"nl": str(nl_path), "cm": str(cm_path), "nl_sha256": data.sha256_file(nl_path),
                   "cm_sha256": data.sha256_file(cm_path)},
        "pairs_read": len(pairs),
        "dropped": dropped,
        "kept": len(kept),
        "groups": len(groups),
        "splits": {name: len(splits[name]) for name in SPLITS},
        "seed": seed,
        "manifest": str(manifest_path),
        "data_sha256": manifest["data_sha256"],
        "seconds": round(time.monotonic() - started, 2),
    }
