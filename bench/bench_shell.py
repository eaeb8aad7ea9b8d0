"""Shell parsing and near-duplicate detection over NL2Bash: speed and findings, old vs new.

    .venv/bin/python -m bench.bench_shell                                  # ../shared/data/nl2bash
    .venv/bin/python -m bench.bench_shell --nl2bash DIR --old-commit 8c33ccf --json

1. The risk rules over every NL2Bash command (12,607): the implementation at --old-commit (the
   shlex lexer; read from git, not checked out) against this tree's tree-sitter parser: seconds,
   dangerous / caution counts, and the commands the two disagree on.
2. Near-duplicate descriptions: every pair scored exhaustively (rapidfuzz cdist, fuzz.ratio on the
   sorted words) against checks.near_duplicates (datasketch MinHash LSH candidates, then the same
   rapidfuzz score): pairs found, seconds, and how many exhaustive pairs the candidates keep.
3. convert-nl2bash: how many kept pairs land in another split when near-duplicate descriptions
   are joined into one group (seed 42, 5 % val, 5 % test), and how many held-out pairs had a near
   duplicate in train before.
"""

from __future__ import annotations

if __package__ in (None, ""):  # `python bench/bench_shell.py`: make the repo importable
    import sys
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))
    __package__ = "bench"

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cli_tuner.checks import near_duplicates
from cli_tuner.corpus import nl2bash
from cli_tuner.shell import risk

REPO = Path(__file__).resolve().parent.parent
DEFAULT_NL2BASH = REPO.parent / "shared" / "data" / "nl2bash"


def old_risk_module(commit: str, folder: Path):
    """The risk rules as they were at `commit`, importable as `old_shell.risk`."""
    package = folder / "old_shell"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("parse", "risk"):
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:cli_tuner/shell/{name}.py"],
                                capture_output=True, text=True, check=True).stdout
        (package / f"{name}.py").write_text(source)
    sys.path.insert(0, str(folder))
    return importlib.import_module("old_shell.risk")


def time_rules(module, commands: list[str]) -> tuple[float, list[list]]:
    started = time.perf_counter()
    findings = [module.assess(command) for command in commands]
    return time.perf_counter() - started, findings


def severities(findings: list[list]) -> dict:
    dangerous = sum(1 for f in findings if any(x.severity == "dangerous" for x in f))
    caution = sum(1 for f in findings if f and not any(x.severity == "dangerous" for x in f))
    return {"dangerous": dangerous, "caution_only": caution}


def bench_risk(commands: list[str], commit: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        old = old_risk_module(commit, Path(folder))
        old_seconds, old_findings = time_rules(old, commands)
    risk.assess("ls")  # load the grammar before timing, as a long-lived process would have it
    new_seconds, new_findings = time_rules(risk, commands)
    old_danger = [any(x.severity == "dangerous" for x in f) for f in old_findings]
    new_danger = [any(x.severity == "dangerous" for x in f) for f in new_findings]
    return {
        "commands": len(commands),
        "old": {"commit": commit, "seconds": round(old_seconds, 2), **severities(old_findings)},
        "new": {"seconds": round(new_seconds, 2), **severities(new_findings)},
        "dangerous_only_new": [c for c, o, n in zip(commands, old_danger, new_danger) if n and not o],
        "dangerous_only_old": [c for c, o, n in zip(commands, old_danger, new_danger) if o and not n],
    }


def exhaustive_pairs(prompts: list[str], threshold: float) -> set[tuple[int, int]]:
    import numpy as np
    from rapidfuzz import fuzz, process

    keys = [near_duplicates.key(p) for p in prompts]
    found: set[tuple[int, int]] = set()
    for start in range(0, len(keys), 1000):
        scores = process.cdist(keys[start:start + 1000], keys, scorer=fuzz.ratio, score_cutoff=threshold,
                               dtype=np.uint8, workers=-1)
        rows, columns = np.nonzero(scores)
        found.update((int(r) + start, int(c)) for r, c in zip(rows, columns) if r + start < c)
    return found


def bench_near(prompts: list[str]) -> dict:
    started = time.perf_counter()
    exhaustive = exhaustive_pairs(prompts, near_duplicates.THRESHOLD)
    exhaustive_seconds = time.perf_counter() - started
    started = time.perf_counter()
    lsh = {(p.first, p.second) for p in near_duplicates.near_pairs(prompts)}
    lsh_seconds = time.perf_counter() - started
    return {
        "prompts": len(prompts), "threshold": near_duplicates.THRESHOLD,
        "rapidfuzz_exhaustive": {"pairs": len(exhaustive), "seconds": round(exhaustive_seconds, 2)},
        "minhash_lsh_then_rapidfuzz": {"pairs": len(lsh), "seconds": round(lsh_seconds, 2),
                                       "lsh_threshold": near_duplicates.LSH_THRESHOLD, "num_perm": near_duplicates.NUM_PERM,
                                       "recall_of_exhaustive": round(len(lsh & exhaustive) / len(exhaustive), 4)
                                       if exhaustive else 1.0},
    }


def bench_moves(nl: Path, cm: Path) -> dict:
    kept, _ = nl2bash.clean(nl2bash.read_pairs(nl, cm))
    where = {}
    for near in (False, True):
        started = time.perf_counter()
        groups = nl2bash.leak_free_groups(kept, near=near)
        splits = nl2bash.assign(groups, 42, 0.05, 0.05)
        where[near] = ({pair.line: name for name, members in splits.items() for pair in members},
                       len(groups), time.perf_counter() - started, splits)
    moved = sum(1 for line, name in where[False][0].items() if where[True][0][line] != name)
    def held_out_near_train(splits: dict) -> int:
        return sum(len({p.first for p in near_duplicates.near_pairs([x.description for x in splits[name]],
                                                                    [x.description for x in splits["train"]])})
                   for name in ("val", "test"))

    before = where[False][3]
    leaks, leaks_after = held_out_near_train(before), held_out_near_train(where[True][3])
    return {"kept_pairs": len(kept), "groups_exact_keys": where[False][1], "groups_with_near": where[True][1],
            "pairs_in_another_split": moved, "held_out_with_near_train_before": leaks,
            "held_out_with_near_train_after": leaks_after,
            "splits_before": {n: len(m) for n, m in before.items()},
            "splits_after": {n: len(m) for n, m in where[True][3].items()},
            "grouping_seconds_with_near": round(where[True][2], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nl2bash", type=Path, default=DEFAULT_NL2BASH, help="folder with all.nl and all.cm")
    parser.add_argument("--old-commit", default="8c33ccf", help="commit whose risk rules are the baseline")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    nl, cm = args.nl2bash / "all.nl", args.nl2bash / "all.cm"
    pairs = nl2bash.read_pairs(nl, cm)
    result = {"risk": bench_risk([p.command for p in pairs], args.old_commit),
              "near_duplicates": bench_near([p.description for p in pairs]),
              "convert": bench_moves(nl, cm)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    r, n, c = result["risk"], result["near_duplicates"], result["convert"]
    print(f"risk rules over {r['commands']} NL2Bash commands:")
    for label in ("old", "new"):
        s = r[label]
        print(f"  {label:3} {s['seconds']:6.2f} s  dangerous {s['dangerous']}, caution only {s['caution_only']}"
              + (f"  (commit {s['commit']}, shlex lexer)" if label == "old" else "  (tree-sitter-bash)"))
    print(f"  dangerous only under the new rules: {len(r['dangerous_only_new'])}, only under the old: "
          f"{len(r['dangerous_only_old'])}")
    for command in r["dangerous_only_new"][:10]:
        print(f"    new: {command}")
    for command in r["dangerous_only_old"][:10]:
        print(f"    old: {command}")
    e, m = n["rapidfuzz_exhaustive"], n["minhash_lsh_then_rapidfuzz"]
    print(f"near-duplicate descriptions ({n['prompts']} prompts, fuzz.ratio of sorted words >= {n['threshold']}):")
    print(f"  rapidfuzz, every pair          {e['seconds']:7.2f} s  {e['pairs']} pairs")
    print(f"  MinHash LSH, then rapidfuzz    {m['seconds']:7.2f} s  {m['pairs']} pairs "
          f"({m['recall_of_exhaustive']:.1%} of the exhaustive pairs)")
    print(f"convert-nl2bash (seed 42, 5 % val, 5 % test): {c['kept_pairs']} kept pairs, {c['groups_exact_keys']} groups "
          f"on shared keys, {c['groups_with_near']} with near duplicates joined")
    print(f"  {c['pairs_in_another_split']} pairs land in another split; before, {c['held_out_with_near_train_before']} "
          f"val/test pairs had a near-duplicate description in train, after {c['held_out_with_near_train_after']}")
    print(f"  splits before {c['splits_before']}, after {c['splits_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
