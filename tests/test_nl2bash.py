"""convert-nl2bash on the real corpus: filtered, leak-free, locked and reproducible."""

from __future__ import annotations

import json

import pytest

from cli_tuner import data
from cli_tuner.corpus import nl2bash
from cli_tuner.shell import risk
from cli_tuner.normalize import normalize_command, normalize_prompt
from cli_tuner.errors import DataError, UsageError


def read_pairs(path):
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        pairs.append((messages[0]["content"], messages[1]["content"]))
    return pairs


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from conftest import require_reference

    corpus = require_reference("nl2bash")
    out = tmp_path_factory.mktemp("nl2bash")
    summary = nl2bash.convert(corpus / "all.nl", corpus / "all.cm", out, seed=42)
    return out, summary


def test_counts_add_up(converted):
    out, summary = converted
    assert summary["pairs_read"] == 12607
    assert summary["pairs_read"] == summary["kept"] + sum(summary["dropped"].values())
    assert summary["dropped"]["bash_syntax_error"] > 0 and summary["dropped"]["dangerous"] > 0
    assert sum(summary["splits"].values()) == summary["kept"]
    for name, count in summary["splits"].items():
        assert len((out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()) == count
    held_out = summary["kept"] * 0.05
    assert abs(summary["splits"]["val"] - held_out) <= 1 and abs(summary["splits"]["test"] - held_out) <= 1


def test_no_description_or_command_in_two_splits(converted):
    out, _ = converted
    owner: dict[str, str] = {}
    for name in nl2bash.SPLITS:
        for prompt, command in read_pairs(out / f"{name}.jsonl"):
            for key in ("nl:" + normalize_prompt(prompt), "cm:" + normalize_command(command)):
                assert owner.setdefault(key, name) == name, f"{key!r} is in {owner[key]} and {name}"


def test_filtered_commands_are_gone(converted):
    out, _ = converted
    commands = {command for name in nl2bash.SPLITS for _, command in read_pairs(out / f"{name}.jsonl")}
    assert "rm -rf *" not in commands  # in the corpus, dangerous
    assert "curl https://www.npmjs.com/install.sh | sh" not in commands
    assert not any(risk.is_dangerous(c) for c in commands if c.startswith(("rm ", "curl ", "find /")))


def test_manifest_verifies(converted):
    out, summary = converted
    verified = data.verify([out / f"{name}.jsonl" for name in nl2bash.SPLITS])
    assert verified.data_sha256 == summary["data_sha256"]


def test_same_seed_gives_identical_files(converted, tmp_path, nl2bash_dir):
    out, _ = converted
    again = nl2bash.convert(nl2bash_dir / "all.nl", nl2bash_dir / "all.cm", tmp_path / "again", seed=42)
    for name in nl2bash.SPLITS:
        assert (tmp_path / "again" / f"{name}.jsonl").read_bytes() == (out / f"{name}.jsonl").read_bytes()
    assert again["data_sha256"] == converted[1]["data_sha256"]


def small_corpus(folder, pairs):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "all.nl").write_text("".join(d + "\n" for d, _ in pairs), encoding="utf-8")
    (folder / "all.cm").write_text("".join(c + "\n" for _, c in pairs), encoding="utf-8")
    return folder / "all.nl", folder / "all.cm"


def test_groups_share_a_split_and_seeds_change_the_split(tmp_path):
    pairs = [(f"show item {i}", f"echo {i}") for i in range(60)]
    pairs += [("Show item 0.", "printf '%s\\n' 0"), ("another way to show item 0", "echo 0")]  # join group of 0
    nl, cm = small_corpus(tmp_path / "src", pairs)
    # near=False: "show item 1" and "show item 12" are near duplicates; this test is about shared keys
    first = nl2bash.convert(nl, cm, tmp_path / "a", seed=1, val_fraction=0.2, test_fraction=0.2, near=False)
    text = {name: (tmp_path / "a" / f"{name}.jsonl").read_text() for name in nl2bash.SPLITS}
    holders = [name for name in nl2bash.SPLITS if "item 0" in text[name].lower()]
    assert len(holders) == 1  # all three pairs about item 0 travel together
    nl2bash.convert(nl, cm, tmp_path / "b", seed=2, val_fraction=0.2, test_fraction=0.2, near=False)
    assert (tmp_path / "b" / "test.jsonl").read_bytes() != (tmp_path / "a" / "test.jsonl").read_bytes()
    assert first["dropped"]["duplicate"] == 0 and first["groups"] == 60


TOPICS = ["disk usage of the home folder", "open network ports", "the kernel version", "running docker containers",
          "files changed in the last hour", "the largest log files", "environment variables", "mounted file systems",
          "cpu temperature", "git branches merged into main", "users logged in", "the system uptime"]


def test_paraphrased_descriptions_share_a_split(tmp_path):
    pairs = [(f"show {topic}", f"echo {index}") for index, topic in enumerate(TOPICS)]
    # planted paraphrases: other words order, case and punctuation, a different command
    pairs += [(f"{topic}, show!".capitalize(), f"printf '%s\\n' {index}") for index, topic in enumerate(TOPICS)]
    nl, cm = small_corpus(tmp_path / "src", pairs)
    for seed in range(5):
        summary = nl2bash.convert(nl, cm, tmp_path / f"s{seed}", seed=seed, val_fraction=0.25, test_fraction=0.25,
                                  force=True)
        assert summary["groups"] == len(TOPICS)
        text = {name: (tmp_path / f"s{seed}" / f"{name}.jsonl").read_text().lower() for name in nl2bash.SPLITS}
        for topic in TOPICS:
            assert sum(topic in text[name] for name in nl2bash.SPLITS) == 1, (seed, topic)
    apart = nl2bash.leak_free_groups(nl2bash.clean(nl2bash.read_pairs(nl, cm))[0], near=False)
    assert len(apart) == 2 * len(TOPICS)  # without the near-duplicate pass each paraphrase is its own group


def test_drops_empty_unparsable_dangerous_and_repeated_pairs(tmp_path):
    nl, cm = small_corpus(tmp_path / "src", [
        ("list files", "ls"), ("", "pwd"), ("broken", "echo )"), ("wipe", "rm -rf /"),
        ("List files.", "ls"), ("show date", "date"),
    ])
    summary = nl2bash.convert(nl, cm, tmp_path / "out", val_fraction=0, test_fraction=0)
    assert summary["dropped"] == {"empty": 1, "bash_syntax_error": 1, "dangerous": 1, "duplicate": 1}
    assert read_pairs(tmp_path / "out" / "train.jsonl") == [("list files", "ls"), ("show date", "date")]


def test_line_count_mismatch_names_the_file_and_line(tmp_path):
    nl, cm = small_corpus(tmp_path / "src", [("a", "ls"), ("b", "pwd")])
    nl.write_text("a\nb\nc\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{nl}:3: .* has 3 lines but .* has 2"):
        nl2bash.convert(nl, cm, tmp_path / "out")


def test_refuses_to_overwrite_without_force(tmp_path):
    nl, cm = small_corpus(tmp_path / "src", [(f"task {i}", f"echo {i}") for i in range(10)])
    nl2bash.convert(nl, cm, tmp_path / "out")
    with pytest.raises(UsageError, match="already exists; pass --force"):
        nl2bash.convert(nl, cm, tmp_path / "out")
    nl2bash.convert(nl, cm, tmp_path / "out", force=True)


@pytest.mark.parametrize("val, test", [(-0.1, 0.05), (0.6, 0.5), (1.0, 0.0)])
def test_bad_fractions_are_usage_errors(tmp_path, val, test):
    nl, cm = small_corpus(tmp_path / "src", [("a", "ls")])
    with pytest.raises(UsageError):
        nl2bash.convert(nl, cm, tmp_path / "out", val_fraction=val, test_fraction=test)


def test_cli_exit_codes(entrypoint, tmp_path):
    nl, cm = small_corpus(tmp_path / "src", [(f"task {i}", f"echo {i}") for i in range(20)])
    ok = entrypoint("convert-nl2bash", "--nl", str(nl), "--cm", str(cm), "--out", str(tmp_path / "out"))
    assert ok.returncode == 0, ok.stderr
    assert "wrote train 18, val 1, test 1" in ok.stdout
    again = entrypoint("convert-nl2bash", "--nl", str(nl), "--cm", str(cm), "--out", str(tmp_path / "out"))
    assert again.returncode == 2 and "already exists; pass --force" in again.stderr
    cm.write_text("ls\n", encoding="utf-8")
    mismatch = entrypoint("convert-nl2bash", "--nl", str(nl), "--cm", str(cm), "--out", str(tmp_path / "x"))
    assert mismatch.returncode == 3
    assert mismatch.stderr.startswith(f"error: {nl}:2: ") and "line-parallel" in mismatch.stderr
