"""The dataset manifest and JSONL reading: every failure names the file (and line)."""

from __future__ import annotations

import json

import pytest

from cli_tuner import data
from cli_tuner.errors import DataError, UsageError
from conftest import write_chat_split


def test_lock_records_hashes_lines_and_format(locked_data):
    manifest = json.loads((locked_data["train"].parent / data.MANIFEST_NAME).read_text())
    entry = manifest["files"]["train.jsonl"]
    assert entry["sha256"] == data.sha256_file(locked_data["train"])
    assert entry["lines"] == 40 and entry["format"] == "chat"
    assert manifest["data_sha256"] == data.combined_hash({n: e["sha256"] for n, e in manifest["files"].items()})


def test_verify_accepts_untouched_files(locked_data):
    verified = data.verify([locked_data["train"], locked_data["val"]])
    assert set(verified.files) == {str(locked_data["train"]), str(locked_data["val"])}
    assert len(verified.data_sha256) == 64


def test_one_changed_byte_is_a_mismatch_naming_file_and_both_hashes(locked_data):
    path = locked_data["train"]
    locked = data.sha256_file(path)
    raw = bytearray(path.read_bytes())
    raw[10] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError) as caught:
        data.verify([path])
    message = str(caught.value)
    assert str(path) in message and locked in message and data.sha256_file(path) in message
    assert caught.value.exit_code == 3


def test_lock_refuses_to_overwrite_without_force(locked_data):
    with pytest.raises(UsageError, match="--force"):
        data.lock(locked_data["train"].parent)
    data.lock(locked_data["train"].parent, force=True)


def test_malformed_line_is_reported_as_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "ok"}\n{"text": broken}\n')
    with pytest.raises(DataError, match=rf"{path}:3: invalid JSON"):
        data.read_records(path)


def test_lock_refuses_a_malformed_file(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(DataError, match="train.jsonl:2"):
        data.lock(tmp_path)
    assert not (tmp_path / data.MANIFEST_NAME).exists()


@pytest.mark.parametrize("line, expected", [
    ('{"prompt": "a", "completion": "b"}', "no 'messages' or 'text' field (found: completion, prompt)"),
    ('{"messages": []}', "non-empty list"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', "role 'robot'"),
    ('{"messages": [{"role": "user", "content": "x"}]}', "no assistant turn"),
    ('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}]}', "empty content"),
    ('[1, 2]', "expected a JSON object"),
])
def test_wrong_fields_name_the_line(tmp_path, line, expected):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(DataError) as caught:
        for record in data.read_records(path):
            data.record_format(record)
    assert f"{path}:2" in str(caught.value) and expected in str(caught.value)


def test_non_utf8_is_reported(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=rf"{path}:1: not UTF-8"):
        data.read_records(path)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        data.read_records(empty)
    with pytest.raises(DataError, match="not found"):
        data.read_records(tmp_path / "absent.jsonl")


def test_mixed_formats_are_refused(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a"}\n{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ls"}]}\n')
    with pytest.raises(DataError, match="mixes"):
        data.detect_format(path)


def test_text_format_is_accepted(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "list files: ls -la"}\n')
    assert data.detect_format(path) == data.TEXT_FORMAT


def test_manifest_that_is_not_json(locked_data):
    (locked_data["train"].parent / data.MANIFEST_NAME).write_text("{not json")
    with pytest.raises(DataError, match="manifest is not valid JSON"):
        data.verify([locked_data["train"]])


def test_file_missing_from_manifest(locked_data):
    extra = locked_data["train"].parent / "extra.jsonl"
    extra.write_text('{"text": "x"}\n')
    with pytest.raises(DataError, match="not listed in"):
        data.verify([extra])


# ---------------------------------------------------------------- the manifest's name

def test_lock_writes_manifest_json_and_never_provenance_json(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write_chat_split(folder / "train.jsonl", 4)
    path, _ = data.lock(folder)
    assert path == folder / "manifest.json"
    assert not (folder / "provenance.json").exists()  # that name is the run record's alone


def test_data_locked_under_the_old_name_still_verifies_and_is_renamed_on_the_next_lock(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    train = write_chat_split(folder / "train.jsonl", 4)
    data.lock(folder)
    (folder / "manifest.json").rename(folder / "provenance.json")  # as data locked before the rename
    assert data.manifest_path(folder) == folder / "provenance.json"
    assert data.verify([train]).data_sha256
    with pytest.raises(UsageError, match="provenance.json already exists"):
        data.lock(folder)
    path, _ = data.lock(folder, force=True)
    assert path == folder / "manifest.json" and not (folder / "provenance.json").exists()
    assert data.verify([train]).data_sha256


def test_a_run_record_beside_the_data_is_not_taken_for_a_manifest(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    train = write_chat_split(folder / "train.jsonl", 4)
    (folder / "provenance.json").write_text('{"status": "succeeded", "mode": "full"}')
    assert data.manifest_path(folder) == folder / "manifest.json"
    with pytest.raises(DataError, match="manifest.json: dataset manifest not found"):
        data.verify([train])
