"""The evaluation report: the summary, every example's verdicts, the gate, and its table."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CheckpointGateFailed
from ..settings import MARGIN_METRICS, Settings, default
from .answers import score_examples, short, summarize

MARGIN_METRICS = MARGIN_METRICS  # check-checkpoint's --margin-metric choices, the same as the setting's
STATIC_DEFAULT = "first_word_match"  # the margin metric where execution is not scored (no sandbox)


@dataclass(frozen=True)
class GateSettings:
    """What an adapter must reach to pass: the `cli_tuner:` gate keys (checked in settings.Settings),
    or check-checkpoint's options (checked there)."""

    min_command_rate: float = default("min_command_rate")  # answers that are commands (COMMAND_RULES), not prose
    min_syntax_rate: float = default("min_syntax_rate")    # answers `bash -n` accepts
    allow_dangerous: bool = default("allow_dangerous_answers")
    min_margin: float = default("min_margin_over_base")    # adapter's rate minus the base model's, on margin_metric
    # None: execution_accuracy where the sandbox ran, else first_word_match. execution_accuracy passes only when
    # the lower bound of the paired difference's 95% bootstrap interval clears min_margin
    margin_metric: str | None = default("margin_metric")
    sandbox_seconds: float = default("sandbox_seconds")  # wall-time limit of one command in the sandbox

    def metric_for(self, summary: dict) -> str:
        """The margin metric this report is gated on: execution accuracy needs execution to have been scored."""
        executed = bool(summary.get("execution"))
        if self.margin_metric is None or self.margin_metric == "execution_accuracy" and not executed:
            return "execution_accuracy" if executed else STATIC_DEFAULT
        return self.margin_metric

    @classmethod
    def from_settings(cls, settings: Settings) -> GateSettings:
        return cls(min_command_rate=settings.min_command_rate, min_syntax_rate=settings.min_syntax_rate,
                   allow_dangerous=settings.allow_dangerous_answers, min_margin=settings.min_margin_over_base,
                   margin_metric=settings.margin_metric, sandbox_seconds=settings.sandbox_seconds)


def _metric_rate(summary: dict, metric: str) -> float:
    return summary["command_rate"] if metric == "command" else summary[f"{metric}_rate"]


def _execution_margin(summary: dict, min_margin: float) -> str | None:
    """Why the paired difference in execution accuracy does not clear the margin, or None."""
    ours, theirs = summary["execution"], (summary["baseline"] or {}).get("execution") or {}
    difference = ours.get("difference_over_base") or {}
    low = difference.get("low")
    if low is not None and round(low, 4) >= min_margin:
        return None
    if low is None:
        return "execution accuracy cannot be compared with the base model's: no example has an executable reference"
    return (f"execution accuracy {ours['execution_accuracy']:.1%} vs the base model's {theirs.get('execution_accuracy', 0):.1%}: "
            f"the paired difference {difference['value']:+.1%} (95% interval {low:+.1%} to {difference['high']:+.1%}, "
            f"{ours['judged']} executable examples) does not clear the required {min_margin:.1%} (min_margin_over_base)")


def _execution_cell(summary: dict) -> str:
    found = summary.get("execution")
    if not found:
        return "not scored"
    low, high = found["interval_95"]
    return (f"{found['execution_accuracy']:.1%} [{low:.1%}, {high:.1%}]" if low is not None else "n/a") \
        + f" ({found['correct']}/{found['judged']})"


ROWS = (
    ("examples", lambda s: str(s["n"])),
    ("is a command (not prose)", lambda s: f"{s['command_rate']:.1%} ({s['commands']})"),
    ("parses as Bash", lambda s: f"{s['syntax_valid_rate']:.1%} ({s['syntax_valid']})"),
    ("shellcheck error/warning", lambda s: f"{s['shellcheck']['error']}/{s['shellcheck']['warning']}"),
    ("shellcheck info/style", lambda s: f"{s['shellcheck']['info']}/{s['shellcheck']['style']}"),
    ("dangerous / caution", lambda s: f"{s['dangerous']} / {s['caution']}"),
    ("exact match", lambda s: f"{s['exact_match_rate']:.1%}"),
    ("normalized match", lambda s: f"{s['normalized_match_rate']:.1%}"),
    ("first word match", lambda s: f"{s['first_word_match_rate']:.1%}"),
    ("NLC2CMD score (-1..1)", lambda s: f"{s.get('nlc2cmd_score', 0):+.3f}"),
    ("execution accuracy [95%]", _execution_cell),
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

    def gate(self, settings: GateSettings | None = None, **values) -> list[str]:
        """Why the adapter fails the quality gate; empty when it passes. Only the adapter is gated;
        the base model, when scored, sets the bar the margin rule measures from."""
        settings = settings or GateSettings(**values)
        reasons = []
        summary = self.summary
        if summary["n"] == 0:
            return ["no test examples were scored"]
        if summary["command_rate"] < settings.min_command_rate:
            failures = {k: v for k, v in summary["rule_failures"].items() if v and k != "parse_tree_clean" and k != "not_dangerous"}
            worst = ", ".join(f"{k.replace('_', ' ')} fails {v}" for k, v in sorted(failures.items(), key=lambda kv: -kv[1]))
            first = next((e for e in self.examples if not e["command_ok"]), None)
            reasons.append(f"{summary['command_rate']:.1%} of answers are commands ({summary['commands']}/{summary['n']}), "
                           f"below the minimum {settings.min_command_rate:.1%} ({worst}"
                           + (f"; e.g. {short(first['answer'])}" if first else "") + ")")
        if summary["syntax_valid_rate"] < settings.min_syntax_rate:
            reasons.append(f"{summary['syntax_valid_rate']:.1%} of answers parse as Bash "
                           f"({summary['syntax_valid']}/{summary['n']}), below the minimum {settings.min_syntax_rate:.1%}")
        if summary["dangerous"] and not settings.allow_dangerous:
            first = next(e for e in self.examples if e["dangerous"])
            reasons.append(f"{summary['dangerous']} dangerous answer(s), e.g. {short(first['answer'])} "
                           "(pass --allow-dangerous-answers or set cli_tuner.allow_dangerous_answers to accept them)")
        baseline = summary.get("baseline")
        metric = settings.metric_for(summary)
        if baseline and metric == "execution_accuracy":
            reason = _execution_margin(summary, settings.min_margin)
            if reason:
                reasons.append(reason)
        elif baseline:
            ours, theirs = _metric_rate(summary, metric), _metric_rate(baseline, metric)
            if round(ours - theirs, 4) < settings.min_margin:
                reasons.append(f"{metric.replace('_', ' ')} {ours:.1%} does not beat the base model's {theirs:.1%} "
                               f"by the required {settings.min_margin:.1%} (min_margin_over_base)")
        return reasons

    def renderable(self, terminal: bool):
        """A short table; box lines only on a terminal, so logs stay plain."""
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        baseline = self.summary.get("baseline")
        parts = []
        if self.context.get("checkpoint"):
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
        execution = self.summary.get("execution")
        if execution:
            parts.append(Text(f"executable on the fixture: {execution['executable_share']:.1%} of examples "
                              f"({execution['judged']}/{execution['judged'] + execution['not_executable']}); "
                              "the rest count neither way"))
            difference = execution.get("difference_over_base")
            if difference and difference.get("low") is not None:
                parts.append(Text(f"execution accuracy over the base model: {difference['value']:+.1%} "
                                  f"(95% interval {difference['low']:+.1%} to {difference['high']:+.1%})"))
        if self.context.get("sandbox"):
            parts.append(Text(self.context["sandbox"]))
        for bad in self.summary["worst"]:
            parts.append(Text(f"  #{bad['index']} {bad['why']}: {short(bad['answer'])} (reference {bad['reference']!r})"))
        return Group(*parts)


def score(answers: list[str], references: list[str], prompts: list[str] | None = None) -> EvalReport:
    """Score extracted commands against references, without a model; evaluate() uses the same path."""
    examples = score_examples(answers, references)
    for example, prompt in zip(examples, prompts or []):
        example["prompt"] = prompt
    return EvalReport(summarize(examples), examples)


def enforce_gate(report: EvalReport, settings: GateSettings | None = None, **values) -> None:
    reasons = report.gate(settings, **values)
    if reasons:
        where = report.context.get("checkpoint", "checkpoint")
        raise CheckpointGateFailed(f"{where}: checkpoint check failed: {'; '.join(reasons)}")
