"""The evaluation report: the summary, every example's verdicts, the gate, and its table."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CheckpointGateFailed
from .answers import score_examples, short, summarize


ROWS = (
    ("examples", lambda s: str(s["n"])),
    ("parses as Bash", lambda s: f"{s['syntax_valid_rate']:.1%} ({s['syntax_valid']})"),
    ("shellcheck error/warning", lambda s: f"{s['shellcheck']['error']}/{s['shellcheck']['warning']}"),
    ("shellcheck info/style", lambda s: f"{s['shellcheck']['info']}/{s['shellcheck']['style']}"),
    ("dangerous / caution", lambda s: f"{s['dangerous']} / {s['caution']}"),
    ("exact match", lambda s: f"{s['exact_match_rate']:.1%}"),
    ("normalized match", lambda s: f"{s['normalized_match_rate']:.1%}"),
    ("first word match", lambda s: f"{s['first_word_match_rate']:.1%}"),
)


@dataclass
class EvalReport:
    summary: dict
    examples: list[dict]
    baseline_examples: list[dict] | None = None
    context: dict = field(default_factory=dict)  # checkpoint, base model, data hash, timings

    def as_dict(self) -> dict:
        return {"schema": 1, **self.context, "summary": self.summary, "examples": self.examples,
                "baseline_examples": self.baseline_examples}

    def gate(self, min_syntax_rate: float, allow_dangerous: bool) -> list[str]:
        """Why the adapter fails the quality gate; empty when it passes. Only the adapter is gated."""
        reasons = []
        summary = self.summary
        if summary["n"] == 0:
            return ["no test examples were scored"]
        if summary["syntax_valid_rate"] < min_syntax_rate:
            reasons.append(f"{summary['syntax_valid_rate']:.1%} of answers parse as Bash "
                           f"({summary['syntax_valid']}/{summary['n']}), below the minimum {min_syntax_rate:.1%}")
        if summary["dangerous"] and not allow_dangerous:
            first = next(e for e in self.examples if e["dangerous"])
            reasons.append(f"{summary['dangerous']} dangerous answer(s), e.g. {short(first['answer'])} "
                           "(pass --allow-dangerous to accept them)")
        return reasons

    def renderable(self, terminal: bool):
        """A short table; box lines only on a terminal, so logs stay plain."""
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        baseline = self.summary.get("baseline")
        parts = []
        if self.context:
            parts.append(Text(f"evaluation: {self.context['checkpoint']} (base {self.context['base_model']}, "
                              f"{self.context['device']}, greedy, {self.context['generation']['max_new_tokens']} new tokens)"))
        table = Table(box=box.SIMPLE if terminal else None, show_edge=False)
        table.add_column("metric")
        table.add_column("adapter", justify="right")
        if baseline:
            table.add_column("base model", justify="right")
        for label, value in ROWS:
            table.add_row(label, value(self.summary), *([value(baseline)] if baseline else []))
        parts.append(table)
        for bad in self.summary["worst"]:
            parts.append(Text(f"  #{bad['index']} {bad['why']}: {short(bad['answer'])} (reference {bad['reference']!r})"))
        return Group(*parts)


def score(answers: list[str], references: list[str], prompts: list[str] | None = None) -> EvalReport:
    """Score extracted commands against references, without a model; evaluate() uses the same path."""
    examples = score_examples(answers, references)
    for example, prompt in zip(examples, prompts or []):
        example["prompt"] = prompt
    return EvalReport(summarize(examples), examples)


def enforce_gate(report: EvalReport, min_syntax_rate: float, allow_dangerous: bool) -> None:
    reasons = report.gate(min_syntax_rate, allow_dangerous)
    if reasons:
        where = report.context.get("checkpoint", "checkpoint")
        raise CheckpointGateFailed(f"{where}: checkpoint check failed: {'; '.join(reasons)}")
