"""`export` on CPU and offline: the merge, model cards and secrets on a real rehearsal's output (the
session's shared run); the usage errors and push refusals on a finished run folder built without training."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from cli_tuner import cli

from conftest import run_entrypoint

HF_SECRET = "hf_exportTestSecret0123456789abcdef"
WANDB_SECRET = "wandb_exportTestSecret0123456789"


def finished_run(root: Path, status: str = "succeeded") -> Path:
    """A run folder whose phase2-final/ has every file export checks, valid in form, with no model behind it."""
    from safetensors.numpy import save_file
    import numpy as np

    run = root / "run"
    final = run / "phase2-final"
    final.mkdir(parents=True)
    (final / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    save_file({"base_model.model.lora_A.weight": np.zeros((4, 4), dtype=np.float32)}, str(final / "adapter_model.safetensors"))
    (final / "tokenizer_config.json").write_text("{}")
    (final / "tokenizer.json").write_text("{}")
    record = {"schema": 1, "run_id": "rehearse-test", "mode": "rehearse", "status": status,
              "base_model": str(root / "no-base-here"), "requested_base_model": "Qwen/Qwen2.5-Coder-7B-Instruct"}
    for folder in (run, final):
        (folder / "provenance.json").write_text(json.dumps(record))
    return run


@pytest.fixture
def built(tmp_path) -> Path:
    return finished_run(tmp_path / "built")


@pytest.fixture(scope="module")
def finished(rehearsed):
    """The session's shared run (conftest.rehearsed)."""
    return rehearsed.result, rehearsed.run


@pytest.fixture(scope="module")
def exported(finished):
    _, run = finished
    result = run_entrypoint("export", "--run", str(run), env={"HF_TOKEN": HF_SECRET, "WANDB_API_KEY": WANDB_SECRET})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result, run / "export"


@pytest.fixture
def export_cli(capsys, monkeypatch):
    """`export ARGS` in this process (the usage errors need no fresh interpreter): exit code and output."""
    def run(*argv: str, env: dict | None = None) -> SimpleNamespace:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        code = cli.main(["export", *argv])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)
    return run


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.slow
def test_export_merges_into_the_base_model_and_keeps_its_dtype(exported):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result, folder = exported
    assert result.stdout.strip().splitlines()[-1] == str(folder)
    assert not list(folder.parent.glob(".export.tmp"))
    merged = folder / "merged"
    assert (merged / "model.safetensors").is_file() and (merged / "tokenizer.json").is_file()
    record = json.loads((folder / "export.json").read_text())
    provenance = json.loads((folder / "adapter" / "provenance.json").read_text())
    base_dir = provenance["base_model"]
    assert record["base_model"] == base_dir and base_dir.endswith("rehearsal-model")
    base_dtype = json.loads((merged.parent.parent / "rehearsal-model" / "config.json").read_text())["dtype"]
    assert record["merged"]["dtype"] == base_dtype

    # The merged model answers exactly as the base model with the adapter attached.
    tokens = torch.tensor([[1, 5, 42, 7, 99, 3]])
    with torch.inference_mode():
        with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir),
                                                 str(folder / "adapter")).eval()(tokens).logits
        base_only = AutoModelForCausalLM.from_pretrained(base_dir).eval()(tokens).logits
        merged_logits = AutoModelForCausalLM.from_pretrained(str(merged)).eval()(tokens).logits
    assert torch.allclose(merged_logits, with_adapter, atol=1e-5)
    assert not torch.allclose(merged_logits, base_only, atol=1e-7)  # the adapter changed something


@pytest.mark.slow
def test_model_cards_carry_base_model_data_hash_evaluation_and_gate(exported):
    from huggingface_hub import ModelCard

    _, folder = exported
    provenance = json.loads((folder / "adapter" / "provenance.json").read_text())
    evaluation = json.loads((folder / "adapter" / "eval.json").read_text())
    for kind, library in (("adapter", "peft"), ("merged", "transformers")):
        card = ModelCard.load(folder / kind / "README.md")
        assert card.data.library_name == library
        assert card.data.base_model is None  # a local rehearsal model is no Hub id
        text = card.text
        assert provenance["base_model"] in text and provenance["requested_base_model"] in text
        assert provenance["data"]["data_sha256"] in text
        assert f"examples scored: {evaluation['summary']['n']}" in text
        assert "gate: failed (" in text and "not enforced in a rehearsal" in text
        assert "CPU rehearsal" in text and "max_steps: 2" in text


@pytest.mark.slow
def test_no_secret_reaches_the_export_or_the_console(exported):
    result, folder = exported
    assert HF_SECRET not in result.stdout + result.stderr and WANDB_SECRET not in result.stdout + result.stderr
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert HF_SECRET.encode() not in data and WANDB_SECRET.encode() not in data, path


def test_a_folder_that_is_not_a_finished_run_is_a_usage_error(built, tmp_path, export_cli):
    run = built
    result = export_cli("--run", str(tmp_path))
    assert result.returncode == 2
    assert "phase2-final" in one_error_line(result) and "not a finished run" in result.stderr
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "provenance.json").write_text((run / "provenance.json").read_text())
    assert export_cli("--run", str(unfinished)).returncode == 2
    interrupted = finished_run(tmp_path / "interrupted", status="interrupted")
    result = export_cli("--run", str(interrupted))
    assert result.returncode == 2 and "status is 'interrupted', not 'succeeded'" in one_error_line(result)


def test_a_base_model_not_available_offline_is_a_config_error_and_writes_nothing(built, tmp_path, export_cli):
    run = built
    out = tmp_path / "export"
    result = export_cli("--run", str(run), "--output", str(out),
                            "--base-model", "cli-tuner-tests/no-such-model")
    assert result.returncode == 4, result.stderr
    line = one_error_line(result)
    assert "cli-tuner-tests/no-such-model" in line and "--base-model" in line
    assert not out.exists() and not (tmp_path / ".export.tmp").exists()


def test_push_without_hf_token_is_refused_before_any_work(built, tmp_path, export_cli):
    run = built
    out = tmp_path / "export"
    result = export_cli("--run", str(run), "--output", str(out), "--push-to", "someone/cli-tuner",
                            env={"HF_TOKEN": ""})
    assert result.returncode == 5
    assert "HF_TOKEN is not set" in one_error_line(result)
    assert not out.exists()


def test_push_offline_is_refused_in_one_line_without_the_token(built, tmp_path, export_cli):
    run = built
    out = tmp_path / "export"
    result = export_cli("--run", str(run), "--output", str(out), "--push-to", "someone/cli-tuner",
                            "--push", "adapter", env={"HF_TOKEN": HF_SECRET, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 5
    line = one_error_line(result)
    assert "unreachable" in line and "HF_HUB_OFFLINE" in line
    assert HF_SECRET not in result.stdout + result.stderr
    assert not out.exists()


def test_push_merged_without_merging_is_a_usage_error(built, export_cli):
    run = built
    result = export_cli("--run", str(run), "--no-merge", "--push-to", "someone/cli-tuner",
                            env={"HF_TOKEN": HF_SECRET})
    assert result.returncode == 2 and "--push adapter" in one_error_line(result)
