"""A run's records agree, and a later command writes beside them, never over them (issue 31, point 5).

Built from run folders made without training: the adapter is a one-tensor file, the provenance a
finished run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_tuner.evaluation import adapter_files, sandbox

AVAILABLE = sandbox.probe()


def finished_run(root: Path) -> Path:
    """RUN/phase2-final with what export and the checks read: adapter, tokenizer, provenance, eval.json."""
    import numpy
    from safetensors.numpy import save_file

    run = root / "run"
    final = run / "phase2-final"
    final.mkdir(parents=True)
    save_file({"base_model.model.lm_head.lora_A.weight": numpy.zeros((1, 1), dtype=numpy.float32)},
              str(final / "adapter_model.safetensors"))
    (final / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16, "peft_type": "LORA"}))
    (final / "tokenizer_config.json").write_text("{}")
    (final / "tokenizer.json").write_text("{}")
    record = {"schema": 1, "run_id": "r1", "mode": "rehearse", "status": "succeeded", "error": None,
              "base_model": "Qwen/Qwen2.5-Coder-7B-Instruct", "data": {"data_sha256": "0" * 64}}
    for folder in (run, final):
        (folder / "provenance.json").write_text(json.dumps(record))
    (final / "eval.json").write_text(json.dumps({"schema": 1, "summary": {"n": 8}, "examples": []}))
    return run


def test_a_later_check_writes_beside_the_runs_eval_record(tmp_path):
    run = finished_run(tmp_path)
    final = adapter_files.adapter_folder(run)
    assert final == run / "phase2-final" and adapter_files.adapter_folder(final) == final
    assert adapter_files.new_record_path(final) == final / "eval-2.json"
    (final / "eval-2.json").write_text("{}")
    assert adapter_files.new_record_path(final) == final / "eval-3.json"
    assert adapter_files.new_record_path(run / "checkpoint-2") == run / "checkpoint-2" / "eval.json"


def test_check_checkpoint_on_a_run_folder_checks_its_final_adapter_and_keeps_its_record(entrypoint, tmp_path):
    """The check stops before loading a model (no test file recorded): the file it names shows which
    adapter folder it took, and the run's eval.json is untouched."""
    run = finished_run(tmp_path)
    before = (run / "phase2-final" / "eval.json").read_bytes()
    result = entrypoint("check-checkpoint", "--checkpoint", str(run), "--base-model", str(tmp_path / "no-model"),
                        env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {run / 'phase2-final' / 'provenance.json'}: the run recorded no test "
                                     "file; pass --test-file FILE (chat JSONL)")
    assert (run / "phase2-final" / "eval.json").read_bytes() == before
    assert not (run / "eval.json").exists()


def test_export_to_an_existing_output_needs_force(entrypoint, tmp_path):
    run = finished_run(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = entrypoint("export", "--run", str(run), "--output", str(out), "--no-merge")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {out} already exists; pass --force to replace it, or choose another --output"
    assert (out / "keep.txt").read_text() == "mine"
    forced = entrypoint("export", "--run", str(run), "--output", str(out), "--no-merge", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and not (out / "keep.txt").exists()


@pytest.mark.skipif(not AVAILABLE.ok, reason=AVAILABLE.reason)
def test_score_execution_takes_the_run_folder(entrypoint, tmp_path):
    from test_execution import _finished_run

    final = _finished_run(tmp_path, ["ls"], ["ls"], ["ls"])
    result = entrypoint("score-execution", "--eval", str(final.parent), "--min-margin", "-1")
    assert result.returncode == 0, result.stderr
    assert f"wrote {final / 'eval.json'}" in result.stdout
    assert json.loads((final / "eval.json").read_text())["summary"]["execution"]["judged"] == 1
    assert not (final.parent / "eval.json").exists()
