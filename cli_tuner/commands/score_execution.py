"""`score-execution`: run a finished evaluation's answers in the sandbox, and judge the gate again.

A pod whose container cannot start bubblewrap scores only the static metrics; this verb, on a
laptop or in CI where the sandbox runs, adds execution accuracy to the run's `eval.json` (no
model is loaded: the answers are in it) and writes the gate's new verdict into the run's
provenance (status `failed_gate` or `succeeded` for a gated run).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import atomic, console
from ..errors import CheckpointGateFailed, DataError, EnvironmentProblem, UsageError
from ..evaluation import sandbox
from ..evaluation.adapter_files import adapter_folder
from ..evaluation.execution_scoring import add_execution
from ..evaluation.report import EvalReport
from ..paths import EVAL_FILE, PROVENANCE_FILE
from ..training.provenance import record_rescored_check
from .check_checkpoint import DEFAULTS, add_gate_arguments, settings_from

NAME = "score-execution"
HELP = ("run a finished evaluation's answers in the sandbox and judge the gate again; writes execution "
        "accuracy into that eval.json and the verdict into the run's provenance.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--eval", required=True,
                        help=f"an {EVAL_FILE}, the checkpoint folder holding it, or a run folder (its phase2-final's)")
    add_gate_arguments(parser)
    parser.add_argument("--sandbox-seconds", type=float, default=DEFAULTS.sandbox_seconds,
                        help="wall-time limit of one command in the sandbox (default %(default)s)")


def eval_file(path: Path) -> Path:
    """The evaluation record --eval names: the file itself, or the eval.json of a checkpoint or run folder."""
    return adapter_folder(path) / EVAL_FILE if path.is_dir() else path


def read_report(path: Path) -> EvalReport:
    if not path.is_file():
        raise UsageError(f"{path}: not found; pass the {EVAL_FILE} that check-checkpoint or a run wrote")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        context = {k: v for k, v in data.items() if k not in ("schema", "summary", "examples", "baseline_examples")}
        report = EvalReport(data["summary"], data["examples"], data.get("baseline_examples"), context)
        for example in report.examples + (report.baseline_examples or []):
            example["answer"], example["reference"]  # noqa: B018 - every example must carry both
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); run check-checkpoint again to rewrite it") from exc
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path}: not an evaluation record (missing {exc}); run check-checkpoint again to rewrite it") from exc
    return report


def provenance_files(eval_path: Path, report: EvalReport) -> list[Path]:
    """The provenance records the check belongs in: the one the evaluation read, and the run folder's."""
    folder = eval_path.parent
    found = [Path(report.context["provenance"])] if report.context.get("provenance") else []
    found += [folder / PROVENANCE_FILE, folder.parent / PROVENANCE_FILE]
    return list(dict.fromkeys(p.resolve() for p in found if p.is_file()))


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    eval_path = eval_file(Path(args.eval))
    report = read_report(eval_path)
    if not sandbox.probe().ok:
        raise EnvironmentProblem(f"{sandbox.probe().reason}; run score-execution where bubblewrap starts "
                                 "(a laptop or CI, as root or with unprivileged user namespaces)")
    console.out(add_execution(report, sandbox.Limits(seconds=settings.sandbox_seconds)))
    target = eval_path
    atomic.write_json(target, report.as_dict())
    console.show(report.renderable(console.is_terminal()))
    console.out(f"wrote {target}")
    reasons = report.gate(settings)
    check = {"summary": report.summary, "gate_failures": reasons, "margin_metric": settings.metric_for(report.summary),
             "sandbox": report.context.get("sandbox"), "scored_by": NAME}
    for path in provenance_files(eval_path, report):
        status = record_rescored_check(path, check, report.context.get("run_id"))
        if status is not None:
            console.out(f"updated {path}: gate {'failed' if reasons else 'passed'}, status {status}")
    if reasons:
        where = report.context.get("checkpoint", str(eval_path))
        raise CheckpointGateFailed(f"{where}: checkpoint check failed: {'; '.join(reasons)}")
    return 0
