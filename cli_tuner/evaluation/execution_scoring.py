"""Execution accuracy added to an evaluation report: the adapter's answers, and the base model's.

`add_execution()` runs after generation (check-checkpoint, the training job's check) or later on
a finished `eval.json` (`score-execution`), on a machine where the sandbox starts. Where it
cannot start, the report says so in one line and keeps its static metrics; nothing runs.
"""

from __future__ import annotations

import time

from . import execution, fixture, intervals, sandbox
from .report import EvalReport


def _summary(verdicts: list[execution.Verdict]) -> dict:
    judged = [v.verdict == execution.CORRECT for v in verdicts if v.verdict != execution.NOT_EXECUTABLE]
    interval = intervals.accuracy_interval(judged)
    return {**execution.accuracy(verdicts), "interval_95": [interval["low"], interval["high"]]}


def add_execution(report: EvalReport, limits: sandbox.Limits | None = None, seed: int = fixture.DEFAULT_SEED,
                  workers: int | None = None) -> str:
    """Score the report's examples by execution, in place; returns the one line to show about the sandbox."""
    limits = limits or sandbox.Limits()
    availability = sandbox.probe()
    report.context["sandbox"] = availability.reason
    if not availability.ok:
        report.summary["execution"] = None
        if report.summary.get("baseline"):
            report.summary["baseline"]["execution"] = None
        return availability.reason
    references = [e["reference"] for e in report.examples]
    predictions = {"adapter": [e["answer"] for e in report.examples]}
    if report.baseline_examples:
        predictions["base"] = [e["answer"] for e in report.baseline_examples]
    started = time.monotonic()
    with sandbox.Sandbox(limits, seed, availability) as box:
        verdicts = execution.score(box, references, predictions, workers)
        bounds = box.bounds.describe()
    seconds = round(time.monotonic() - started, 1)
    for examples, name in ((report.examples, "adapter"), (report.baseline_examples, "base")):
        for example, verdict in zip(examples or [], verdicts.get(name, [])):
            example["execution"] = verdict.as_dict()
    report.summary["execution"] = _summary(verdicts["adapter"])
    report.summary["execution"].update(sandbox={"how": availability.reason, "bounds": bounds,
                                                "seconds_per_command": limits.seconds,
                                                "fixture_seed": seed, "fixture_sha256": fixture.fingerprint(seed),
                                                "scoring_seconds": seconds})
    if "base" in verdicts:
        report.summary.setdefault("baseline", {})
        if report.summary["baseline"] is not None:
            report.summary["baseline"]["execution"] = _summary(verdicts["base"])
        pairs = [(a.verdict == execution.CORRECT, b.verdict == execution.CORRECT)
                 for a, b in zip(verdicts["adapter"], verdicts["base"]) if a.verdict != execution.NOT_EXECUTABLE]
        difference = intervals.paired_difference([a for a, _ in pairs], [b for _, b in pairs])
        report.summary["execution"]["difference_over_base"] = difference
    return f"{availability.reason} ({bounds}); execution scored in {seconds:g} s"
