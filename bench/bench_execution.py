"""Execution scoring of the NL2Bash test split for two models: seconds against the 2-minute budget.

    .venv/bin/python -m bench.bench_execution                     # ../shared/data/nl2bash, all cores
    taskset -c 0,1 .venv/bin/python -m bench.bench_execution      # the budget's 2 cores
    .venv/bin/python -m bench.bench_execution --nl2bash DIR --json

Builds the test split as convert-nl2bash does (seed 42: 624 examples), then scores it the way
check-checkpoint does with --baseline (execution_scoring.add_execution): the reference commands
as the adapter's answers, the planted wrong commands (bench/planted_commands.py) as the base
model's. Prints the seconds, the executable share and both accuracies with
their intervals. Budget: 120 s on 2 cores. The machine's other load counts: it prints the load
average before and after.
"""

from __future__ import annotations

if __package__ in (None, ""):  # `python bench/bench_execution.py`: make the repo importable
    import sys
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))
    __package__ = "bench"

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from cli_tuner.corpus import nl2bash
from cli_tuner.evaluation import execution, execution_scoring, report as eval_report, sandbox

from .planted_commands import plant

REPO = Path(__file__).resolve().parent.parent
DEFAULT_NL2BASH = REPO.parent / "shared" / "data" / "nl2bash"
BUDGET_SECONDS = 120.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nl2bash", type=Path, default=DEFAULT_NL2BASH, help="folder with all.nl and all.cm")
    parser.add_argument("--workers", type=int, default=None, help="parallel sandboxes (default: 4 per core, at most 16)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    args = parser.parse_args(argv)
    availability = sandbox.probe()
    if not availability.ok:
        print(availability.reason)
        return 5
    with tempfile.TemporaryDirectory() as folder:
        nl2bash.convert(args.nl2bash / "all.nl", args.nl2bash / "all.cm", folder)
        references = [json.loads(line)["messages"][1]["content"]
                      for line in (Path(folder) / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    planted = [plant(reference, i)[0] for i, reference in enumerate(references)]
    report = eval_report.score(references, references)
    baseline = eval_report.score(planted, references)
    report.baseline_examples, report.summary["baseline"] = baseline.examples, baseline.summary

    load_before = os.getloadavg()[0]
    started = time.monotonic()
    line = execution_scoring.add_execution(report, workers=args.workers)
    seconds = time.monotonic() - started
    load_after = os.getloadavg()[0]
    ours, theirs = report.summary["execution"], report.summary["baseline"]["execution"]
    result = {
        "examples": len(references), "models": 2, "cores": len(os.sched_getaffinity(0)), "sandbox_line": line,
        "seconds": round(seconds, 1), "budget_seconds": BUDGET_SECONDS, "within_budget": seconds <= BUDGET_SECONDS,
        "load_average_before_after": [round(load_before, 1), round(load_after, 1)],
        "executable_share": ours["executable_share"],
        "reference_accuracy": ours["execution_accuracy"], "reference_interval_95": ours["interval_95"],
        "planted_accuracy": theirs["execution_accuracy"], "planted_interval_95": theirs["interval_95"],
        "not_executable_reasons": _reasons(report.examples),
        "references_wrong_against_themselves": [  # a reference whose runs disagree beyond the two it was run twice
            {"command": e["reference"], "why": e["execution"]["why"]} for e in report.examples
            if (e.get("execution") or {}).get("verdict") == execution.WRONG],
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


def _reasons(examples: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for example in examples:
        found = example.get("execution") or {}
        if found.get("verdict") == execution.NOT_EXECUTABLE:
            why = found["why"].split(" (")[0]
            counts[why] = counts.get(why, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


if __name__ == "__main__":
    sys.exit(main())
