"""Help that agrees with the verbs (issue 31, point 6): what each does and writes, only options that
apply, defaults shown, the name the tool was called by, --version, config errors named once."""

from __future__ import annotations

import sys

import pytest

from cli_tuner import __version__, cli, commands


def verb_help(name: str) -> str:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[name].format_help()


@pytest.mark.parametrize("command", commands.ALL, ids=lambda c: c.NAME)
def test_each_verbs_help_says_what_it_does_and_what_it_writes(command):
    text = verb_help(command.NAME)
    assert command.HELP in " ".join(text.split())  # the description, below the usage
    assert "writes" in command.HELP or "write " in command.HELP, command.HELP


@pytest.mark.parametrize("verb, absent", [
    ("data-report", "--allow-trust-remote-code"), ("estimate-memory", "--allow-trust-remote-code"),
    ("estimate-memory", "--allow-dangerous-data"),
])
def test_no_verb_offers_an_option_that_does_not_apply(verb, absent):
    assert absent not in verb_help(verb)


def test_defaults_are_shown():
    assert "(default: config)" in " ".join(verb_help("rehearse").split())  # --packing
    assert "(default: 64)" in " ".join(verb_help("check-checkpoint").split())  # --max-new-tokens
    assert "(default: None)" not in verb_help("rehearse") and "(default: False)" not in verb_help("rehearse")


def test_score_execution_mentions_no_option_it_lacks():
    text = " ".join(verb_help("score-execution").split())
    parser = cli.build_parser()
    verb = next(a for a in parser._actions if a.dest == "command").choices["score-execution"]
    assert "--baseline" not in verb._option_string_actions
    assert "with --baseline" not in text and "check-checkpoint --baseline" in text


def test_version(entrypoint):
    result = entrypoint("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"entrypoint.py {__version__}"


def test_the_examples_use_the_name_the_tool_was_called_by(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/cli-tuner", "--help"])
    text = cli.build_parser().format_help()
    assert "  cli-tuner rehearse" in text and "entrypoint.py" not in text
    monkeypatch.setattr(sys, "argv", ["entrypoint.py", "--help"])
    assert "  python entrypoint.py rehearse" in cli.build_parser().format_help()


def test_an_axolotl_schema_error_prints_once_and_blames_the_set(entrypoint):
    result = entrypoint("validate", "--no-data-report", "--set", "learning_rate=abc")
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [
        "error: --set learning_rate=abc: learning_rate: could not convert string to float: 'abc' (got 'abc')"]
