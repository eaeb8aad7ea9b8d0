"""data-report: token lengths from the real tokenizer and template, and every data problem with file:line."""

from __future__ import annotations

import json

import pytest

from cli_tuner import data
from cli_tuner.checks import data_report
from cli_tuner.config import load
from cli_tuner.errors import ConfigError
from conftest import REPO, data_sets, require_reference

A5000 = REPO / "configs" / "axolotl_config.yaml"
H100 = REPO / "configs" / "training_config_h100.yaml"
LONG_ANSWER = "echo " + " ".join(f"word{i}" for i in range(60))


def chat(prompt: str, answer: str, system: str | None = None) -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return json.dumps({"messages": messages})


def write_lines(path, lines: list) -> None:
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))


@pytest.fixture
def dirty(tmp_path) -> dict:
    """One dataset holding one of each problem, line numbers fixed for the assertions."""
    folder = tmp_path / "data"
    folder.mkdir()
    files = {name: folder / f"{name}.jsonl" for name in ("train", "val", "test")}
    write_lines(files["train"], [
        chat("list files", "ls -la"),                                       # 1
        chat("show disk usage", "df -h"),                                   # 2
        chat("List  Files.", "ls -la"),                                     # 3 exact duplicate of 1
        chat("files list", "ls -la"),                                       # 4 near duplicate of 1
        chat("wipe everything", "rm -rf /"),                                # 5 dangerous
        chat("close a paren", "echo )"),                                    # 6 not Bash
        chat("print a long message", LONG_ANSWER),                          # 7 answer cut at 64 tokens
        '{"messages": [',                                                   # 8 invalid JSON
        b"\xff\xfe not utf-8",                                              # 9
        json.dumps({"messages": [{"role": "human", "content": "hi"},
                                 {"role": "assistant", "content": "ls"}]}),  # 10 wrong role
        json.dumps({"messages": [{"role": "user", "content": "x"},
                                 {"role": "assistant", "content": " "}]}),   # 11 empty answer
        chat("x" * 2500, "pwd"),                                            # 12 over-long line
    ])
    write_lines(files["val"], [chat("Show disk usage", "du -sh ."), chat("count lines of a file", "wc -l file.txt")])
    write_lines(files["test"], [chat("wipe my home", "rm -rf ~"), chat("how full are the disks", "df -h")])
    return files


def load_config(files, *extra: str, config=A5000, tokenizer=None):
    """The config pointed at files; the tokenizer is the real Qwen one unless given (skipped without it)."""
    tokenizer = tokenizer or require_reference("qwen")
    sets = [s for s in data_sets(files) if s != "--set"] + [f"tokenizer_config={tokenizer}", *extra]
    return load(config, sets=sets)


def test_every_problem_is_reported_with_its_line(dirty):
    loaded = load_config(dirty, "sequence_len=64", "excess_length_strategy=truncate")
    report = data_report.build(loaded)
    train, val, test = (str(dirty[name]) for name in ("train", "val", "test"))
    errors = "\n".join(report.errors)
    for expected in (
        f"{train}:5: dangerous command (recursive delete of / (the root directory)); remove it or pass --allow-dangerous-data",
        f"{train}:6: answer is not valid Bash (line 1: syntax error near unexpected token `)')",
        f"{train}:7: ",  # cut answer
        f"{train}:8: invalid JSON",
        f"{train}:9: not UTF-8",
        f"{train}:10: messages[0] has role 'human'",
        f"{train}:11: messages[1] has empty content",
        f"{val}:1: prompt also in train at {train}:2",
    ):
        assert expected in errors, expected
    assert any(e.startswith(f"{train}:7: ") and "the answer would be cut" in e for e in report.errors)
    warnings = "\n".join(report.warnings)
    assert f"train: 1 exact duplicate examples (e.g. {train}:3 repeats {train}:1)" in warnings
    assert "train: 1 near-duplicate examples" in warnings
    assert f"{train}:12: a line of 2500 characters" in warnings
    assert f"{test}:1: dangerous command" in warnings          # test answers are not trained on
    assert f"test: 1 answers are also train answers (first: {test}:2: command also in train at {train}:2)" in warnings
    stats = report.splits
    assert stats["train"]["examples"] == 8 and stats["train"]["dangerous"] == 1
    assert stats["train"]["bash_syntax_errors"] == 1 and stats["train"]["answer_cut"] >= 1
    assert stats["val"]["leaked_prompts"] == 1 and stats["test"]["leaked_prompts"] == 0
    assert report.details["manifest"]["ok"] is False  # nothing locked this data


def test_allow_dangerous_and_drop_strategy_turn_errors_into_warnings(dirty):
    loaded = load_config(dirty, "sequence_len=64", "excess_length_strategy=drop")
    report = data_report.build(loaded, allow_dangerous=True)
    assert not any(": dangerous command" in e or "would be cut" in e for e in report.errors), report.errors
    assert any(w.startswith(f"{dirty['train']}:5: dangerous command") for w in report.warnings)
    assert any(w.startswith(f"{dirty['train']}:7: ") and "Axolotl drops this example" in w for w in report.warnings)


def test_lengths_match_what_axolotl_tokenizes(qwen_tokenizer_dir):
    from cli_tuner import tokenizer as tokenizer_module

    tokenizer = tokenizer_module.load(str(qwen_tokenizer_dir))
    examples = [data_report.Example("train", f"x:{i}", [{"role": "user", "content": p}, {"role": "assistant", "content": a}],
                                    prompt=p, answer=a)
                for i, (p, a) in enumerate([("list files", "ls -la"), ("show the date", "date +%F"), ("long", LONG_ANSWER)])]
    measured = data_report.measure(tokenizer, tokenizer.chat_template, examples, data_report.Problems())
    for example, lengths in zip(examples, measured):
        # Axolotl's chat_template strategy: apply_chat_template(tokenize=True, return_dict=False)
        ids = tokenizer.apply_chat_template(example.messages, tokenize=True, return_dict=False)
        assert lengths.total == len(ids)
        assert lengths.answer_end == len(ids) - 1  # ...<|im_end|> then one trailing "\n"
        assert ids[lengths.answer_end - 1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
        prompt_ids = tokenizer.apply_chat_template(example.messages[:1], tokenize=True, return_dict=False,
                                                   add_generation_prompt=True)
        assert lengths.prompt == len(prompt_ids) == len(ids) - len(tokenizer(example.answer)["input_ids"]) - 2


def test_shipped_sample_data_is_clean(qwen_tokenizer_dir):
    loaded = load(A5000, sets=[f"tokenizer_config={qwen_tokenizer_dir}"])
    report = data_report.build(loaded)
    assert report.errors == [] and report.warnings == []
    train = report.splits["train"]
    assert train["examples"] >= 160 and train["tokens"]["max"] <= loaded.axolotl["sequence_len"]
    assert train["tokens_per_epoch"] == train["examples"] * loaded.axolotl["sequence_len"]  # padded rows
    assert report.details["manifest"]["ok"] is True
    assert "split" in report.render().splitlines()[0] and "no problems" in report.render()


def test_check_writes_json_beside_the_manifest_and_does_not_raise(dirty, capsys):
    loaded = load_config(dirty, "sequence_len=64")
    report = data_report.check(loaded)
    data_report.show(report)
    written = json.loads((dirty["train"].parent / data_report.REPORT_NAME).read_text())
    assert written["errors"] == report.errors and written["splits"]["train"]["examples"] == 8
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("split") and "error:" in out


@pytest.mark.requires_reference_data("mistral", hub=False)
def test_system_turn_rejected_by_mistral_template_is_an_error(tmp_path):
    """The original (Dec 2023) v0.2 template of the shared copy; the hub's current one accepts a system turn."""
    from conftest import find_reference

    mistral_tokenizer_dir = find_reference("mistral", hub=False)
    files = {name: tmp_path / f"{name}.jsonl" for name in ("train", "val", "test")}
    write_lines(files["train"], [chat("list files", "ls"), chat("show date", "date", system="You write Bash.")])
    write_lines(files["val"], [chat("show uptime", "uptime")])
    write_lines(files["test"], [chat("show the kernel", "uname -r")])
    data.lock(tmp_path, force=True)
    report = data_report.build(load_config(files, config=H100, tokenizer=mistral_tokenizer_dir))
    assert report.errors == [f"{files['train']}:2: the chat template rejects this conversation "
                             "(Conversation roles must alternate user/assistant/user/assistant/...); "
                             "fix the roles or the template"]
    assert report.splits["train"]["tokens"]["max"] < 40


def test_cli_exits_3_with_the_first_error_and_the_count(entrypoint, dirty, qwen_tokenizer_dir):
    result = entrypoint("data-report", *data_sets(dirty), "--set", "sequence_len=64",
                        "--tokenizer", str(qwen_tokenizer_dir))
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: data report: {dirty['train']}:")
    assert last.endswith("more above)")
    assert result.stdout.startswith("split") and (dirty["train"].parent / data_report.REPORT_NAME).is_file()


def test_cli_without_a_tokenizer_offline_is_an_environment_problem(entrypoint, locked_data, tmp_path):
    result = entrypoint("data-report", *data_sets(locked_data),
                        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "CLI_TUNER_SHARED_DATA": str(tmp_path)})
    assert result.returncode == 5
    assert "the hub is off (HF_HUB_OFFLINE=1)" in result.stderr and "--tokenizer" in result.stderr


def test_missing_train_entry_is_a_config_error(dirty, tmp_path):
    loaded = load_config(dirty, tokenizer=tmp_path / "never-loaded")  # refused before any tokenizer loads
    loaded.axolotl["datasets"] = []
    with pytest.raises(ConfigError, match="no `datasets:` train file"):
        data_report.build(loaded)


@pytest.mark.parametrize("text, normalized", [
    ("  List   FILES here?! ", "list files here"), ("ﬁnd it.", "find it"), ("a\tb\nc", "a b c"),
])
def test_prompt_normalization(text, normalized):
    assert data_report.normalize_prompt(text) == normalized


def test_a_read_only_data_folder_skips_the_json_with_a_note(dirty, capsys, monkeypatch):
    """compose mounts data/ read-only: the check itself must still pass or fail on the data."""
    monkeypatch.setattr(data_report, "report_path", lambda loaded: data_report.Path("/sys") / data_report.REPORT_NAME)
    report = data_report.check(load_config(dirty, "sequence_len=64"))
    assert report.json_path is None and report.errors
    data_report.show(report)
    err = capsys.readouterr().err
    assert err.startswith("note: data report not saved (cannot write /sys/data_report.json: ")


def _examples(split: str, pairs: list[tuple[str, str]]) -> list[data_report.Example]:
    return [data_report.Example(split, f"{split}.jsonl:{n}", [{"role": "user", "content": p},
                                                              {"role": "assistant", "content": c}], prompt=p, answer=c)
            for n, (p, c) in enumerate(pairs, start=1)]


def test_leakage_check_finds_planted_paraphrases():
    train = _examples("train", [("list all files including hidden ones", "ls -la"),
                                ("show free disk space in human units", "df -h"),
                                ("count the lines of notes.txt", "wc -l notes.txt")])
    test = _examples("test", [("Including hidden ones, list all files.", "ls -la"),     # planted: reordered
                              ("show the free disk space, in human units", "df -H"),   # planted: words added
                              ("print the current directory", "pwd")])                # not a paraphrase
    report = data_report.DataReport("c", "t", 512, {})
    data_report._check_leakage(report, {"train": train, "test": test})
    near = report.details["leakage"]["test"]["near_prompts"]
    assert [(n["where"], n["train"]) for n in near] == [("test.jsonl:1", "train.jsonl:1"), ("test.jsonl:2", "train.jsonl:2")]
    assert near[0]["same_command"] and not near[1]["same_command"]
    assert report.splits["test"] == {"leaked_prompts": 0, "leaked_commands": 1, "near_leaked_prompts": 2}
    assert any(w.startswith("test.jsonl:1: prompt is a near duplicate of train train.jsonl:1") for w in report.warnings)
    assert not report.errors  # paraphrases are listed; only an exact repeat is an error


def test_near_duplicates_within_a_split_need_the_same_command():
    train = _examples("train", [("list all files including hidden ones", "ls -la"),
                                ("including hidden ones list all files", "ls  -la"),
                                ("find all txt files in the current folder", "find . -name '*.txt'"),
                                ("find all py files in the current folder", "find . -name '*.py'")])
    report = data_report.DataReport("c", "t", 512, {})
    data_report._check_duplicates(report, {"train": train})
    assert report.details["duplicates"]["train"]["near"] == [["train.jsonl:1", "train.jsonl:2"]]
    assert report.splits["train"]["near_duplicates"] == 1


def test_the_training_modes_show_the_first_few_findings_and_where_the_rest_are(dirty):
    report = data_report.check(load_config(dirty, "sequence_len=64"))
    assert len(report.errors) + len(report.warnings) > 2
    lines = report.render(shown=1).splitlines()
    for level, messages in (("error", report.errors), ("warning", report.warnings)):
        listed = [line for line in lines if line.startswith(f"{level}: ") and "more (see" not in line]
        assert len(listed) == min(1, len(messages))
        if len(messages) > 1:
            assert f"{level}: ... and {len(messages) - 1} more (see " in "\n".join(lines)
