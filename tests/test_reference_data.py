"""Where the tests find the reference data (real tokenizers, NL2Bash), and the CI switch that turns
a missing piece from a skip into a failure. Nothing here needs the reference data itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import conftest
from conftest import REFERENCES, REPO, REQUIRE_SWITCH, SHARED_DATA_ENV, find_reference, in_hf_cache

QWEN = REFERENCES["qwen"]


def fake_hf_cache(cache: Path, hub_id: str, files: tuple[str, ...], commit: str = "0" * 40) -> Path:
    """The layout huggingface_hub leaves: models--ORG--NAME/refs/main and snapshots/COMMIT/FILES."""
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in files:
        (snapshot / name).write_text("{}")
    return snapshot


@pytest.fixture
def no_reference_anywhere(tmp_path, monkeypatch):
    """An empty shared data folder and an empty HF cache, whatever this machine has."""
    from huggingface_hub import constants

    empty, cache = tmp_path / "empty", tmp_path / "hf-cache"
    empty.mkdir()
    cache.mkdir()
    monkeypatch.setenv(SHARED_DATA_ENV, str(empty))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv(REQUIRE_SWITCH, raising=False)
    return empty, cache


def test_a_complete_hf_cache_snapshot_is_found(tmp_path):
    snapshot = fake_hf_cache(tmp_path, QWEN.hub_id, QWEN.files)
    assert in_hf_cache(QWEN.hub_id, QWEN.files, cache_dir=tmp_path) == snapshot


def test_a_snapshot_missing_a_file_is_not_found(tmp_path):
    fake_hf_cache(tmp_path, QWEN.hub_id, QWEN.files[:1])
    assert in_hf_cache(QWEN.hub_id, QWEN.files, cache_dir=tmp_path) is None
    assert in_hf_cache("org/never-downloaded", QWEN.files, cache_dir=tmp_path) is None


def test_the_shared_data_variable_is_searched_alone(no_reference_anywhere, monkeypatch):
    empty, _ = no_reference_anywhere
    assert conftest.shared_data_folders() == [empty]  # not ../shared/data, even where that exists
    assert find_reference("nl2bash") is None and find_reference("qwen") is None
    corpus = empty / "nl2bash"
    corpus.mkdir()
    (corpus / "all.nl").write_text("list files\n")
    assert find_reference("nl2bash") is None  # all.cm missing: incomplete is absent
    (corpus / "all.cm").write_text("ls\n")
    assert find_reference("nl2bash") == corpus


def test_a_tokenizer_falls_back_to_the_hf_cache_unless_told_not_to(no_reference_anywhere):
    _, cache = no_reference_anywhere
    snapshot = fake_hf_cache(cache, QWEN.hub_id, QWEN.files)
    assert find_reference("qwen") == snapshot
    assert find_reference("qwen", hub=False) is None


def test_the_skip_reason_says_where_it_looked_and_how_to_get_it(no_reference_anywhere):
    empty, _ = no_reference_anywhere
    reason = conftest.how_to_get("qwen")
    assert str(empty / QWEN.folder) in reason and "Hugging Face cache (Qwen/Qwen2.5-Coder-7B-Instruct)" in reason
    assert f"set {SHARED_DATA_ENV}=DIR" in reason
    assert "`hf download Qwen/Qwen2.5-Coder-7B-Instruct tokenizer.json tokenizer_config.json`" in reason
    corpus = conftest.how_to_get("nl2bash")
    assert "hf download" not in corpus and "github.com/TellinaTool/nl2bash" in corpus  # not on the hub


# One test that takes the corpus through its fixture, one that names a tokenizer in its marker.
NEEDS_REFERENCE = ["tests/test_bash_checks.py::test_agrees_with_bash_n_on_real_commands",
                   "tests/test_data_report.py::test_system_turn_rejected_by_mistral_template_is_an_error"]


def run_pytest_without_reference(tmp_path: Path, switch: bool) -> subprocess.CompletedProcess:
    empty, cache = tmp_path / "empty", tmp_path / "hf-cache"
    empty.mkdir(exist_ok=True)
    cache.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != REQUIRE_SWITCH}
    env.update({SHARED_DATA_ENV: str(empty), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    if switch:
        env[REQUIRE_SWITCH] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *NEEDS_REFERENCE],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_missing_reference_data_is_skipped_with_how_to_get_it(tmp_path):
    result = run_pytest_without_reference(tmp_path, switch=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 skipped" in result.stdout and "passed" not in result.stdout and "failed" not in result.stdout
    assert f"the NL2Bash corpus is not in {tmp_path / 'empty' / 'nl2bash'}" in result.stdout
    assert f"set {SHARED_DATA_ENV}=DIR" in result.stdout


def test_the_ci_switch_turns_missing_reference_data_into_failures(tmp_path):
    result = run_pytest_without_reference(tmp_path, switch=True)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    # pytest counts a failure in a test's setup as an error; either way the run fails (exit 1).
    assert "2 errors" in result.stdout and "skipped" not in result.stdout and "passed" not in result.stdout
    assert f"({REQUIRE_SWITCH}=1: missing reference data is a failure)" in result.stdout
    assert "the Mistral-7B-Instruct-v0.2 tokenizer is not in" in result.stdout
