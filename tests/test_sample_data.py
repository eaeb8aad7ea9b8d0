"""The shipped sample dataset: enough pairs, valid and clean Bash, nothing dangerous, no leakage, locked."""

from __future__ import annotations

import importlib.util
import json

import pytest

from cli_tuner import data
from cli_tuner.shell import risk, syntax as bash_checks
from cli_tuner.normalize import normalize_command, normalize_prompt
from conftest import REPO

DATA = REPO / "data" / "processed"
SPLITS = ("train", "val", "test")


def load_pairs() -> dict[str, list[tuple[str, str]]]:
    pairs = {}
    for name in SPLITS:
        pairs[name] = []
        for record in data.read_records(DATA / f"{name}.jsonl"):
            assert data.record_format(record) == data.CHAT_FORMAT
            messages = record.data["messages"]
            assert [m["role"] for m in messages] == ["user", "assistant"], record.where
            pairs[name].append((messages[0]["content"], messages[1]["content"]))
    return pairs


@pytest.fixture(scope="module")
def pairs() -> dict[str, list[tuple[str, str]]]:
    return load_pairs()


@pytest.fixture(scope="module")
def commands(pairs) -> list[str]:
    return [command for name in SPLITS for _, command in pairs[name]]


def test_at_least_200_pairs_split_about_80_10_10(pairs):
    sizes = {name: len(members) for name, members in pairs.items()}
    total = sum(sizes.values())
    assert total >= 200
    assert sizes["train"] >= 0.75 * total and min(sizes["val"], sizes["test"]) >= 0.08 * total


def test_every_answer_is_one_command_that_parses(commands):
    assert all(command.strip() and "\n" not in command for command in commands)
    errors = bash_checks.syntax_errors(commands)
    assert [(c, e) for c, e in zip(commands, errors) if e] == []


def test_shellcheck_finds_nothing_at_warning_or_above(commands):
    findings = bash_checks.shellcheck(commands)
    flagged = {c: [str(f) for f in bash_checks.at_least(found, "warning")] for c, found in zip(commands, findings)}
    assert {c: f for c, f in flagged.items() if f} == {}


def test_nothing_is_dangerous(commands):
    assert [c for c in commands if risk.is_dangerous(c)] == []


def test_no_prompt_or_command_in_two_splits(pairs):
    owner: dict[str, str] = {}
    for name in SPLITS:
        for prompt, command in pairs[name]:
            for key in ("prompt:" + normalize_prompt(prompt), "command:" + normalize_command(command)):
                assert owner.setdefault(key, name) == name, f"{key!r} is in {owner[key]} and {name}"


def test_manifest_verifies():
    verified = data.verify([DATA / f"{name}.jsonl" for name in SPLITS])
    manifest = json.loads((DATA / data.MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == {f"{name}.jsonl" for name in SPLITS}
    assert verified.data_sha256 == manifest["data_sha256"]


def test_files_are_what_the_generator_writes(pairs):
    spec = importlib.util.spec_from_file_location("make_sample_data", REPO / "scripts" / "make_sample_data.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.splits(generator.PAIRS) == pairs


def test_every_shipped_answer_is_a_command_from_the_known_list():
    """The command rules pass every shipped answer, and each program it runs is a builtin or in known_commands.txt."""
    from cli_tuner.evaluation import answers
    from cli_tuner.shell import commands, parse

    unknown, failing = set(), []
    for path in sorted((REPO / "data" / "processed").glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            answer = json.loads(line)["messages"][-1]["content"]
            verdicts = answers.command_verdicts(answer)
            if not all(verdicts[rule] for rule in answers.COMMAND_RULES if rule != "bash_syntax"):
                failing.append(f"{path.name}:{number}: {answer}")
            functions = {name for name, _ in parse.function_definitions(answer)}
            for segment in parse.split_commands(answer):
                words = parse.command_words(segment.words)
                if words and segment.name_type == "word" and not commands.is_command(words[0], functions):
                    unknown.add(words[0])
    assert not failing, failing
    assert not unknown, f"add these to cli_tuner/shell/known_commands.txt: {sorted(unknown)}"


def test_nl2bash_commands_pass_the_command_rules(nl2bash_dir):
    """The reference commands of NL2Bash are commands: the rules must not call them prose."""
    from cli_tuner.evaluation import answers

    commands = (nl2bash_dir / "all.cm").read_text(encoding="utf-8").splitlines()
    failing = [c for c in commands if not all(v for k, v in answers.command_verdicts(c).items() if k != "parse_tree_clean")]
    assert len(commands) == 12607
    assert len(failing) <= 40, failing[:20]  # the corpus's own noise: `$ ` prompts, `...|`, `exec 1 | tee`
