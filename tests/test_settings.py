"""The `cli_tuner:` settings: every key's bad values stop `validate` (and the training modes) at load
time, one line each, exit 4; docs/settings.md's table is the model's; validate's console is the job's own."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from cli_tuner import cli, config, settings
from cli_tuner.errors import EXIT_CONFIG, ConfigError
from cli_tuner.facts import gpus
from cli_tuner.settings import Settings
from conftest import REPO, run_entrypoint

DEFAULT_CONFIG = REPO / "configs/axolotl_config.yaml"
CONFIGS = sorted((REPO / "configs").glob("training_config_*.yaml")) + [DEFAULT_CONFIG]
OVERLAYS = [None, REPO / "configs/axolotl_smoke_test.yaml", *sorted((REPO / "configs/overlays").glob("*.yaml"))]
KEYS = list(Settings.model_fields)


def bad_values(key: str) -> list[tuple[str, object]]:
    """(kind, value) for every kind of bad value the key can take, read from the model itself, so a
    new key is covered the day it is added."""
    info = Settings.model_fields[key]
    kind = settings.type_name(key).split(" ")[0]
    cases = [("unknown", None)]
    cases.append(("wrong type", {"number": "abc", "integer": 2.5, "boolean": "maybe", "choice": 5,
                                 "text": 5, "path": 5}[kind]))
    for m in info.metadata:
        step = 1 if kind == "integer" else 0.5
        if hasattr(m, "ge"):
            cases.append(("out of range", m.ge - step))
        if hasattr(m, "le"):
            cases.append(("out of range", m.le + step))
        if hasattr(m, "lt"):
            cases.append(("out of range", m.lt))
    if kind == "choice":
        cases.append(("bad enum", "bogus"))
    if key == "target":
        cases.append(("bad enum", "a6000"))
    return cases  # a path that names no file is the data check's (exit 3: tests/test_bad_inputs.py)


CASES = [(key, kind, value) for key in KEYS for kind, value in bad_values(key)]


def misspelt(key: str) -> str:
    return key[:-2] + key[-1]  # one letter dropped


def config_with(tmp_path: Path, block: dict) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["cli_tuner"] = {**raw["cli_tuner"], **block}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(autouse=True)
def no_stand_ins(monkeypatch):
    for name in settings.environment_names():
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("key, kind, value", CASES, ids=[f"{k}-{kind}-{v}" for k, kind, v in CASES])
def test_every_bad_value_of_every_key_stops_validate(key, kind, value, tmp_path, capsys):
    name = misspelt(key) if kind == "unknown" else key
    path = config_with(tmp_path, {name: 0.5 if kind == "unknown" else value})
    assert cli.main(["validate", "--config", str(path), "--no-data-report"]) == EXIT_CONFIG
    line = one_error_line(capsys)
    assert f"{path}: cli_tuner.{name}: " in line
    assert "allowed: " in line and "fix: " in line
    if kind == "unknown":
        assert f"did you mean `{key}`?" in line
    else:
        assert repr(value) in line and settings.range_text(key) in line


@pytest.mark.parametrize("key, kind, value", [c for c in CASES if c[1] != "unknown"],
                         ids=[f"{k}-{kind}-{v}" for k, kind, v in CASES if kind != "unknown"])
def test_every_bad_value_through_set(key, kind, value, capsys):
    shown = yaml.safe_dump(value).splitlines()[0] if not isinstance(value, str) else value
    assert cli.main(["validate", "--no-data-report", "--set", f"cli_tuner.{key}={shown}"]) == EXIT_CONFIG
    line = one_error_line(capsys)
    assert line.startswith(f"error: --set cli_tuner.{key}: ") and f"fix: --set cli_tuner.{key}=" in line


STAND_IN_CASES = [(env, key, kind, value) for env, key in settings.environment_names().items()
                  for kind, value in bad_values(key) if kind != "unknown"]


@pytest.mark.parametrize("env, key, kind, value", STAND_IN_CASES,
                         ids=[f"{e}-{kind}-{v}" for e, _, kind, v in STAND_IN_CASES])
def test_every_bad_value_through_the_environment_stand_in(env, key, kind, value, monkeypatch, capsys):
    monkeypatch.setenv(env, str(value))
    assert cli.main(["validate", "--no-data-report"]) == EXIT_CONFIG
    line = one_error_line(capsys)
    assert line.startswith(f"error: {env} (stands in for cli_tuner.{key}): {str(value)!r}") or \
        line.startswith(f"error: {env} (stands in for cli_tuner.{key}): {value!r}")
    assert f"fix: set {env}=" in line


@pytest.mark.parametrize("mode", ["smoke", "full", "rehearse"])
@pytest.mark.parametrize("where", ["config", "environment"])
def test_the_training_modes_stop_before_anything_is_written(mode, where, tmp_path, monkeypatch, capsys):
    path = config_with(tmp_path, {"min_command_rate": 90} if where == "config" else {})
    if where == "environment":
        monkeypatch.setenv("GPU_PRICE_PER_HOUR", "cheap")
    root = tmp_path / "outputs"
    assert cli.main([mode, "--config", str(path), "--output-root", str(root)]) == EXIT_CONFIG
    line = one_error_line(capsys)
    assert ("cli_tuner.min_command_rate: 90 is out of range" if where == "config" else "GPU_PRICE_PER_HOUR") in line
    assert not root.exists()  # no run folder, no prepared data, no pid file


def test_every_problem_is_listed_one_line_each(tmp_path, capsys):
    path = config_with(tmp_path, {"min_command_rate": 90, "on_finish": "shutdown", "retries": 2})
    assert cli.main(["validate", "--config", str(path), "--no-data-report"]) == EXIT_CONFIG
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and lines[-1].endswith("(and 2 more above)")
    assert [k for k in ("min_command_rate", "on_finish", "retries") if any(f"cli_tuner.{k}:" in ln for ln in lines)] \
        == ["min_command_rate", "on_finish", "retries"]


@pytest.mark.parametrize("config_path, overlay", [(c, o) for c in CONFIGS for o in OVERLAYS],
                         ids=[f"{c.stem}+{o.stem if o else 'none'}" for c in CONFIGS for o in OVERLAYS])
def test_every_shipped_config_and_overlay_has_valid_settings(config_path, overlay):
    loaded = config.load(config_path, overlays=[overlay] if overlay else [],
                         known_target=lambda name: gpus.lookup(name) is not None)
    assert isinstance(loaded.settings, Settings)
    if overlay is not None and overlay.name == "axolotl_smoke_test.yaml":
        assert loaded.settings.train_examples == 10 and loaded.settings.val_examples == 5


def test_valid_values_are_typed_and_sourced(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_PRICE_PER_HOUR", "0.27")
    loaded = config.load(DEFAULT_CONFIG, sets=["cli_tuner.min_command_rate=1", "cli_tuner.max_identical_failures=1"])
    assert loaded.settings.min_command_rate == 1.0 and loaded.settings.price_per_hour == 0.27
    assert loaded.settings.source("price_per_hour") == "GPU_PRICE_PER_HOUR"
    assert loaded.settings.source("target") == f"{DEFAULT_CONFIG}: cli_tuner.target"
    assert loaded.settings.source("memory_headroom") == "default"
    # an unlisted GPU with --gpu-memory may carry any name
    assert config.load(DEFAULT_CONFIG, sets=["cli_tuner.target=rtx6000"], gpu_memory_gb=48.0,
                       known_target=lambda name: gpus.lookup(name) is not None).target == "rtx6000"
    with pytest.raises(ConfigError):
        config.load(DEFAULT_CONFIG, sets=["cli_tuner.target=rtx6000"],
                    known_target=lambda name: gpus.lookup(name) is not None)


def test_the_settings_doc_lists_every_key_as_the_model_does():
    doc = (REPO / "docs" / "settings.md").read_text(encoding="utf-8")
    assert settings.markdown_table() in doc, "docs/settings.md's table is stale: run python scripts/settings_table.py --write"
    for key in KEYS:
        assert f"| `{key}` |" in doc


def test_nothing_else_reads_the_raw_block_or_the_stand_ins():
    """Every reader goes through LoadedConfig.settings: no `.tuner`, no stand-in name read elsewhere."""
    names = set(settings.environment_names())
    offenders = []
    for path in (REPO / "cli_tuner").rglob("*.py"):
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "tuner":
                offenders.append(f"{path.name}:{node.lineno} .tuner")
            if isinstance(node, ast.Constant) and node.value in names:
                offenders.append(f"{path.name}:{node.lineno} {node.value}")
    assert not offenders, offenders


def test_the_command_name_is_what_the_user_typed(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/cli-tuner", "--help"])
    assert cli.build_parser().format_usage().startswith("usage: cli-tuner")
    monkeypatch.setattr(sys, "argv", ["entrypoint.py", "--help"])
    assert cli.build_parser().format_usage().startswith("usage: entrypoint.py")


def test_validate_prints_only_the_jobs_own_lines(qwen_tokenizer_dir):
    """No library line before, between or after the job's: torchao's and torch's import notes are
    silenced (known harmless), so stderr is empty and stdout starts with the data check."""
    result = run_entrypoint("validate", "--set", f"tokenizer_config={qwen_tokenizer_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.splitlines() == []
    lines = result.stdout.splitlines()
    assert lines[0].startswith("data: 3 files match their manifest")
    assert lines[-1] == "validate: OK (configs/axolotl_config.yaml)"
    assert not [line for line in lines if "Failed to load" in line or "_pytree" in line or line.startswith("W1")]


def test_a_run_whose_config_fails_ends_by_on_finish_alone(monkeypatch):
    """When loading fails, the finish comes from --on-finish and ON_FINISH by the same precedence; a bad
    stand-in of another key does not change it."""
    import argparse

    from cli_tuner.commands import options

    monkeypatch.setenv("ON_FINISH", "idle")
    monkeypatch.setenv("GPU_PRICE_PER_HOUR", "cheap")
    assert options.settings_without_config(argparse.Namespace(on_finish=None)).on_finish == "idle"
    assert options.settings_without_config(argparse.Namespace(on_finish="exit")).on_finish == "exit"


@pytest.mark.parametrize("option, key, value", [
    ("--sandbox-seconds", "sandbox_seconds", 0.5), ("--sandbox-seconds", "sandbox_seconds", 601.0),
    ("--min-margin", "min_margin_over_base", 1.5), ("--min-command-rate", "min_command_rate", -0.1),
])
def test_check_checkpoint_options_have_the_bounds_of_their_config_keys(option, key, value, tmp_path, capsys):
    """An option that stands in for a `cli_tuner:` gate key is refused where the key would be (exit 2),
    before any model loads."""
    with pytest.raises(ValidationError):
        Settings(**{key: value})
    code = cli.main(["check-checkpoint", "--checkpoint", str(tmp_path), option, str(value)])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and last.startswith(f"error: {option} {value}: give "), last
    assert settings.between(key) in last
