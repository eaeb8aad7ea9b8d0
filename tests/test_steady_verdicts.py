"""The gate's default metric gives the same verdict on the same answers, every time they are scored.

A background job (`cmd &`) races the end of the sandbox run: whether its log file exists, and what
it holds, when the tree is listed changes from run to run. Such a reference is not executable and
such an answer wrong, decided from the text, never from a race."""

from __future__ import annotations

import collections
import json

import pytest

from cli_tuner.evaluation import execution, sandbox

AVAILABLE = sandbox.probe()
needs_sandbox = pytest.mark.skipif(not AVAILABLE.ok, reason=AVAILABLE.reason)

REFERENCES = ["nohup ./long_job.sh > job.log 2>&1 &", "sleep 0.2 > out.txt &", "head -n 3 numbers.txt",
              "wc -l numbers.txt"]
ANSWERS = ["nohup ./long_job.sh > job.log &", "sleep 0.2 > out.txt", "head -n 3 numbers.txt &", "wc -l numbers.txt"]


@pytest.mark.parametrize("command, background", [
    ("nohup ./long_job.sh > job.log 2>&1 &", True), ("a & b", True), ("( sleep 1 & ); ls", True),
    ("a && b", False), ("ls &> out", False), ("ls 2>&1", False), ("echo 'a & b'", False),
])
def test_background_jobs_are_found_by_the_shell_parser(command, background):
    assert execution.starts_background_job(command) is background


@needs_sandbox
def test_the_same_answers_scored_20_times_get_one_verdict_each():
    seen = collections.defaultdict(collections.Counter)
    with sandbox.Sandbox(sandbox.Limits(seconds=3.0)) as box:
        for _ in range(20):
            for index, verdict in enumerate(execution.score(box, REFERENCES, {"model": ANSWERS})["model"]):
                seen[index][(verdict.verdict, verdict.why)] += 1
    assert all(len(verdicts) == 1 for verdicts in seen.values()), dict(seen)
    verdicts = [next(iter(seen[i]))[0] for i in range(len(REFERENCES))]
    assert verdicts == [execution.NOT_EXECUTABLE, execution.NOT_EXECUTABLE, execution.WRONG, execution.CORRECT]
    assert next(iter(seen[0]))[1] == execution.BACKGROUND_REFERENCE


@needs_sandbox
def test_score_execution_twice_on_a_background_reference_writes_the_same_accuracy(entrypoint, tmp_path):
    from test_execution import _finished_run

    final = _finished_run(tmp_path, REFERENCES, ANSWERS, ANSWERS)
    scores = []
    for _ in range(2):
        result = entrypoint("score-execution", "--eval", str(final), "--min-margin", "0")
        assert result.returncode in (0, 6), result.stderr
        written = json.loads((final / "eval.json").read_text())
        scores.append(written["summary"]["execution"])
        assert written["examples"][0]["execution"] == {"verdict": "not executable",
                                                       "why": execution.BACKGROUND_REFERENCE}
    kept = ("correct", "judged", "not_executable", "execution_accuracy")
    assert [{k: s[k] for k in kept} for s in scores] == [{k: scores[0][k] for k in kept}] * 2, scores
