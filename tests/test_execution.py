"""Execution accuracy: verdicts and their reasons, the NLC2CMD score, intervals, the gate, score-execution.

The NL2Bash tests (slow) hold the issue's bar: the reference commands as predictions score at
least 0.98 on the executable subset, planted wrong commands at most 0.05.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.planted_commands import KINDS, plant
from conftest import REPO, require_reference
from cli_tuner import config
from cli_tuner.corpus import nl2bash
from cli_tuner.errors import ConfigError
from cli_tuner.evaluation import execution, execution_scoring, intervals, nlc2cmd, report as eval_report, sandbox

AVAILABLE = sandbox.probe()
needs_sandbox = pytest.mark.skipif(not AVAILABLE.ok, reason=AVAILABLE.reason)


@pytest.fixture(scope="module")
def box():
    if not AVAILABLE.ok:
        pytest.skip(AVAILABLE.reason)
    with sandbox.Sandbox(sandbox.Limits(seconds=3.0)) as opened:
        yield opened


# ------------------------------------------------------------------ comparing outputs

def test_stdout_rules_are_named():
    assert execution.compare_stdout(b"a\nb\n", b"a\nb\n", ordered=True) == (True, "stdout identical")
    assert execution.compare_stdout(b"a\nb\n", b"a  \nb\n\n", ordered=True) == (True, "stdout equal but trailing spaces")
    assert execution.compare_stdout(b"./a\nb\n", b"b\na\n", ordered=False) == (True, "stdout same lines, another order")
    assert execution.compare_stdout(b"a\nb\n", b"b\na\n", ordered=True) == \
        (False, "stdout differs at line 1: 'b', the reference 'a'")
    assert execution.compare_stdout(b"a\nb\nc\n", b"a\n", ordered=False) == (False, "stdout differs: 1 lines, the reference 3")


@pytest.mark.parametrize("reference, ordered", [
    ("find . -name '*.txt'", False), ("grep -rl error .", False), ("find . | sort", True),
    ("ls -lt", True), ("ls -la", False), ("cat file | head -n 3", True),
])
def test_order_counts_only_where_the_reference_makes_it_count(reference, ordered):
    assert execution.order_matters(reference) is ordered


@needs_sandbox
@pytest.mark.parametrize("reference, prediction, verdict, why", [
    ("head -n 3 data.csv", "head -3 data.csv", "correct", "stdout identical"),
    ("find . -name '*.c'", "find -name '*.c' | sort", "correct", "stdout same lines, another order"),
    ("touch new.txt", "echo > new.txt", "wrong", "tree differs: 1 different (new.txt)"),
    ("mkdir -p a/b && touch a/b/c", "mkdir -p a/b/c", "wrong", "tree differs: 1 different (a/b/c)"),
    ("chmod 600 file.txt", "chmod 600 file.txt", "correct", "stdout identical, same tree"),
    ("chmod 600 file.txt", "chmod 644 file.txt", "wrong", "tree differs: 1 different (file.txt)"),
    ("head -n 3 data.csv", "head -n 4 data.csv", "wrong", "stdout differs: 4 lines, the reference 3"),
    ("wc -l data.csv", "wc -l no-such-file", "wrong", "exit status differs: 1, the reference 0 (wc: no-such-file: No such file or directory)"),
    ("ifconfig-does-not-exist eth0", "ls", "not executable", "reference fails, prints nothing and changes nothing on the fixture"),
    ("find . -name no-such-name", "true", "not executable", "reference prints nothing and changes nothing on the fixture"),
    ("sleep 30", "ls", "not executable", "reference times out"),
    ("date +%N", "date +%N", "not executable", "reference varies between runs"),
    ("ls", "rm -rf /", "wrong", "dangerous: not run"),
    ("ls", "", "wrong", "empty answer"),
    ("ls", "ls\x00 -la", "wrong", "the sandbox failed: the command holds a NUL byte"),
    ("ls", "sleep 30", "wrong", "timed out after 3 s"),
])
def test_verdicts_say_why(box, reference, prediction, verdict, why):
    (found,) = execution.score(box, [reference], {"model": [prediction]})["model"]
    assert found.verdict == verdict
    assert found.why.startswith(why)


# Verdicts a wrong answer must not win: order set by the reference, a command that ignores SIGTERM,
# changes hidden behind an unreadable folder or file, the runner's change mark.

@pytest.mark.parametrize("reference", [
    "seq 10 -1 1", "seq 5", "ls --sort=size", "ls -r", "ls -t", "ls -S", "ls -U", "ls --reverse", "ls --time=ctime",
    "sort -n numbers.txt", "LC_ALL=C sort names.txt", "sort -t, -k3 data.csv", "tac file.txt", "rev file.txt",
    "find . -name '*.txt' | sort -r", "find . -type f -exec ls -t {} +", "find . -type f | xargs ls -S",
    "du -a | sort -k1,1n | tail -3", "find . -name '*.c' | head -n 2", "cat -n file.txt", "printf '%s\\n' b a",
])
def test_utilities_that_set_the_order_of_their_output_make_it_count(reference):
    assert execution.order_matters(reference) is True


@pytest.mark.parametrize("reference", ["find . -name '*.txt'", "grep -rl error .", "ls -la", "du -a", "find . -type d"])
def test_a_traversal_in_no_set_order_lets_lines_come_in_another_order(reference):
    assert execution.order_matters(reference) is False


@needs_sandbox
@pytest.mark.parametrize("reference, prediction, verdict, why", [
    ("seq 5 -1 1", "seq 1 5", "wrong", "stdout differs at line 1"),
    ("ls -r", "ls", "wrong", "stdout differs at line 1"),
    ("sort -n numbers.txt", "sort -rn numbers.txt", "wrong", "stdout differs at line 1"),
    ("trap '' TERM; echo same; sleep 30", "echo same; exit 3", "not executable", "reference times out"),
    ("ls", "trap '' TERM; sleep 30", "wrong", "timed out after 3 s"),
    ("echo one > src/new.txt; chmod 000 src", "echo two > src/new.txt; chmod 000 src", "wrong", "tree differs"),
    ("echo aaa > f.txt; chmod 000 f.txt", "echo bbb > f.txt; chmod 000 f.txt", "wrong", "tree differs"),
    ("echo aaa > f.txt; chmod 000 f.txt", "echo aaa > f.txt; chmod 000 f.txt", "correct", "stdout identical, same tree"),
    ("mkdir -p deep/er && echo x > deep/er/f && chmod 000 deep/er deep",
     "mkdir -p deep/er && echo y > deep/er/f && chmod 000 deep/er deep", "wrong", "tree differs"),
    ("chmod 000 docs", "chmod 000 docs && chmod 500 docs", "wrong", "tree differs: 1 different (docs)"),
    ("touch file.txt", "head -c $(stat -c %s file.txt) /dev/zero > file.txt; sleep 0.05; "
     "touch /err/mark /out/mark /tmp/mark 2>/dev/null; true", "wrong", "tree differs: 1 different (file.txt)"),
])
def test_verdicts_a_wrong_answer_cannot_win(box, reference, prediction, verdict, why):
    (found,) = execution.score(box, [reference], {"model": [prediction]})["model"]
    assert found.verdict == verdict, found
    assert found.why.startswith(why), found


# ------------------------------------------------------------------ NLC2CMD

# the examples published with the metric's reference code (IBM/clai utils/metric/README.md)
@pytest.mark.parametrize("reference, prediction, expected", [
    ("find . -type f -ctime -3 | tail -n 5", "find . -type f | tail -n 5", 0.75),
    ("df | grep /dev/disk0s2", "df | grep diskpath", 1.0),
    ("find . -regextype posix-egrep -regex '^.*/[a-z][^/]*$' -type f",
     "find . -type f -regextype posix-egrep -regex '^.*/[a-z][^/]*$'", 1.0),
    ("mkdir directory", "touch directory", -1.0),
    ("df --total | tail -n 1", "tail -n 1 | df --total", -1.0),
    ("find / -name linux", "find / -EXdsx -name linux", 0.1666),
])
def test_nlc2cmd_matches_the_published_examples(reference, prediction, expected):
    assert nlc2cmd.score(prediction, reference) == pytest.approx(expected, abs=1e-3)


def test_nlc2cmd_reads_what_xargs_and_find_exec_run():
    assert nlc2cmd.utilities("find . -name '*.py' -exec grep -l foo {} \\; | xargs -0 wc -l") == [
        ("find", {"-name", "-exec"}), ("grep", {"-l"}), ("xargs", {"-0"}), ("wc", {"-l"})]
    assert nlc2cmd.score("", "ls") == -1.0 and nlc2cmd.score("", "") == 0.0


def test_the_summary_carries_the_nlc2cmd_score():
    scored = eval_report.score(["ls -l", "touch d"], ["ls -l", "mkdir d"])
    assert [e["nlc2cmd_score"] for e in scored.examples] == [1.0, -1.0]
    assert scored.summary["nlc2cmd_score"] == 0.0


# ------------------------------------------------------------------ intervals and the gate

def test_intervals_are_seeded_and_paired():
    correct = [True] * 30 + [False] * 10
    first, second = intervals.accuracy_interval(correct), intervals.accuracy_interval(correct)
    assert first == second and first["low"] < 0.75 < first["high"]
    same = intervals.paired_difference(correct, correct)
    assert same == {"value": 0.0, "low": 0.0, "high": 0.0}  # paired: identical verdicts cannot differ
    better = intervals.paired_difference([True] * 40, correct)
    assert better["value"] == 0.25 and 0.1 < better["low"] < 0.25 < better["high"]


def _executed(adapter: list[bool], base: list[bool]) -> eval_report.EvalReport:
    references = ["ls"] * len(adapter)
    report = eval_report.score(references, references)
    report.summary["baseline"] = eval_report.score(references, references).summary
    verdicts = lambda flags: [execution.Verdict("correct" if f else "wrong", "") for f in flags]  # noqa: E731
    report.summary["execution"] = execution_scoring._summary(verdicts(adapter))
    report.summary["baseline"]["execution"] = execution_scoring._summary(verdicts(base))
    report.summary["execution"]["difference_over_base"] = intervals.paired_difference(adapter, base)
    return report


def test_the_gate_needs_the_lower_bound_of_the_paired_difference_to_clear_the_margin():
    clear = _executed([True] * 40, [False] * 40)
    assert clear.gate() == []  # execution_accuracy is the default where execution was scored
    close = _executed([True] * 22 + [False] * 18, [True] * 18 + [False] * 22)  # +10%, but the interval reaches below 5%
    (reason,) = close.gate()
    assert reason.startswith("execution accuracy 55.0% vs the base model's 45.0%: the paired difference +10.0% (95% interval ")
    assert reason.endswith("40 executable examples) does not clear the required 5.0% (min_margin_over_base)")
    assert close.gate(min_margin=-0.5) == []
    # first word match is equal for both: the static metric, asked for by name, fails the margin instead
    assert close.gate(margin_metric="first_word_match")[0].startswith("first word match 100.0% does not beat")


def test_without_execution_the_static_metric_decides():
    references = ["ls -la", "df -h", "wc -l f", "pwd"]
    report = eval_report.score(["ls -la", "df -h", "wc -l f", "ls"], references)
    report.summary["baseline"] = eval_report.score(["ls -la", "du -h", "cat f", "ls"], references).summary
    report.summary["execution"] = None
    assert eval_report.GateSettings().metric_for(report.summary) == "first_word_match"
    assert eval_report.GateSettings(margin_metric="execution_accuracy").metric_for(report.summary) == "first_word_match"
    assert report.gate(margin_metric="execution_accuracy") == []  # first word 75% vs 25%


def test_sandbox_seconds_from_the_config(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text((REPO / "configs/axolotl_config.yaml").read_text())
    loaded = config.load(config_file, sets=["cli_tuner.sandbox_seconds=2", "cli_tuner.margin_metric=execution_accuracy"])
    assert eval_report.GateSettings.from_settings(loaded.settings) == \
        eval_report.GateSettings(sandbox_seconds=2, margin_metric="execution_accuracy")
    with pytest.raises(ConfigError) as caught:
        config.load(config_file, sets=["cli_tuner.sandbox_seconds=0"])
    assert "cli_tuner.sandbox_seconds" in caught.value.message


def test_no_sandbox_says_so_in_one_line_and_keeps_the_static_metrics(monkeypatch, tmp_path):
    report = eval_report.score(["ls"], ["ls"])
    monkeypatch.setenv("PATH", str(tmp_path))
    sandbox.probe(refresh=True)
    try:
        line = execution_scoring.add_execution(report)
    finally:
        monkeypatch.undo()
        sandbox.probe(refresh=True)
    assert line.startswith("no sandbox: bubblewrap (bwrap) is not installed") and "\n" not in line
    assert report.summary["execution"] is None and "execution" not in report.examples[0]
    assert report.summary["first_word_match_rate"] == 1.0 and report.gate() == []


# ------------------------------------------------------------------ score-execution on a finished run

def _finished_run(tmp_path: Path, adapter: list[str], base: list[str], references: list[str]) -> Path:
    run = tmp_path / "run"
    final = run / "phase2-final"
    final.mkdir(parents=True)
    report = eval_report.score(adapter, references)
    baseline = eval_report.score(base, references)
    report.baseline_examples = baseline.examples
    report.summary["baseline"] = baseline.summary
    record = {"schema": 1, "run_id": "r1", "mode": "full", "status": "succeeded", "error": None,
              "checkpoint_check": {"summary": {}, "gate_failures": [], "gated": True}}
    (run / "provenance.json").write_text(json.dumps(record))
    report.context = {"checkpoint": str(final), "run_id": "r1", "provenance": str(run / "provenance.json"),
                      "base_model": "Qwen/Qwen2.5-Coder-7B-Instruct", "device": "cuda",
                      "generation": {"do_sample": False, "max_new_tokens": 64, "batch_size": 16},
                      "sandbox": "no sandbox: bubblewrap cannot start here (test); execution accuracy not scored"}
    report.summary["execution"] = None
    (final / "eval.json").write_text(json.dumps(report.as_dict()))
    return final


@needs_sandbox
def test_score_execution_passes_a_better_adapter_and_records_it(entrypoint, tmp_path):
    words = ["alpha", "beta", "gamma", "delta", "error", "foo", "bar", "hello", "world", "linux"] * 3
    references = [f"grep -c {w} logs/huge.log" for w in words]
    final = _finished_run(tmp_path, references, [f"grep -c {w}x logs/huge.log" for w in words], references)
    result = entrypoint("score-execution", "--eval", str(final))
    assert result.returncode == 0, result.stderr
    written = json.loads((final / "eval.json").read_text())
    assert written["summary"]["execution"]["execution_accuracy"] == 1.0
    assert written["examples"][0]["execution"] == {"verdict": "correct", "why": "stdout identical"}
    assert written["baseline_examples"][0]["execution"]["verdict"] == "wrong"
    record = json.loads((final.parent / "provenance.json").read_text())
    assert record["status"] == "succeeded" and record["checkpoint_check"]["margin_metric"] == "execution_accuracy"
    assert record["checkpoint_check"]["gate_failures"] == [] and record["checkpoint_check"]["rescored_utc"]


@needs_sandbox
def test_score_execution_fails_an_adapter_no_better_than_its_base(entrypoint, tmp_path):
    references = [f"head -n {k} numbers.txt" for k in range(1, 9)]
    final = _finished_run(tmp_path, references, references, references)
    result = entrypoint("score-execution", "--eval", str(final / "eval.json"))
    assert result.returncode == 6
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {final}: checkpoint check failed: execution accuracy")
    record = json.loads((final.parent / "provenance.json").read_text())
    assert record["status"] == "failed_gate" and record["error"].startswith("checkpoint check failed: execution accuracy")


def test_score_execution_without_a_sandbox_says_where_to_run_it(entrypoint, tmp_path):
    final = _finished_run(tmp_path, ["ls"], ["ls"], ["ls"])
    result = entrypoint("score-execution", "--eval", str(final), env={"PATH": str(tmp_path)})
    assert result.returncode == 5
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: no sandbox: bubblewrap (bwrap) is not installed") and "run score-execution where" in line


@pytest.mark.parametrize("content, code, message", [
    (None, 2, "not found; pass the eval.json"), ("{", 3, "not valid JSON"), ("{}", 3, "not an evaluation record"),
])
def test_score_execution_refuses_a_bad_eval_file(entrypoint, tmp_path, content, code, message):
    path = tmp_path / "eval.json"
    if content is not None:
        path.write_text(content)
    result = entrypoint("score-execution", "--eval", str(path))
    assert result.returncode == code
    assert message in result.stderr.strip().splitlines()[-1]


# ------------------------------------------------------------------ the NL2Bash test split

@pytest.fixture(scope="module")
def nl2bash_scored(tmp_path_factory):
    if not AVAILABLE.ok:
        pytest.skip(AVAILABLE.reason)
    nl2bash_dir = require_reference("nl2bash")
    out = tmp_path_factory.mktemp("nl2bash")
    nl2bash.convert(nl2bash_dir / "all.nl", nl2bash_dir / "all.cm", out)
    references = [json.loads(line)["messages"][1]["content"] for line in (out / "test.jsonl").read_text().splitlines()]
    planted = [plant(reference, i) for i, reference in enumerate(references)]
    with sandbox.Sandbox() as opened:
        verdicts = execution.score(opened, references, {"reference": references, "planted": [p for p, _ in planted]})
    return references, planted, verdicts


@pytest.mark.slow
def test_reference_commands_score_at_least_098_on_the_executable_subset(nl2bash_scored):
    references, _, verdicts = nl2bash_scored
    assert len(references) == 624
    found = execution.accuracy(verdicts["reference"])
    assert found["execution_accuracy"] >= 0.98, [v.why for v in verdicts["reference"] if v.verdict == "wrong"]
    assert 0.2 < found["executable_share"] < 1.0  # reported, and most of the split is not silent on the fixture


@pytest.mark.slow
def test_planted_wrong_commands_score_at_most_005(nl2bash_scored):
    _, planted, verdicts = nl2bash_scored
    assert {kind for _, kind in planted} == set(KINDS)
    found = execution.accuracy(verdicts["planted"])
    assert found["execution_accuracy"] <= 0.05
