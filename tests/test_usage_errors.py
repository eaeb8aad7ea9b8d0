"""Counts that must be positive are usage errors (exit 2) at parse time, named once (issue 31, points 4, 6)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("verb, option, value", [
    ("rehearse", "--steps", "0"), ("rehearse", "--steps", "-3"), ("rehearse", "--save-steps", "0"),
    ("rehearse", "--processes", "0"), ("smoke", "--gpus", "0"), ("validate", "--gpus", "0"),
    ("estimate-memory", "--gpus", "-1"), ("full", "--nnodes", "0"),
])
def test_a_count_below_one_is_refused_before_anything_runs(entrypoint, tmp_path, verb, option, value):
    result = entrypoint(verb, option, value, "--output-root", str(tmp_path / "outputs")) if verb in (
        "rehearse", "smoke", "full") else entrypoint(verb, option, value)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.endswith(f"error: argument {option}: {value} is not a positive whole number (at least 1)"), last
    assert result.stderr.count(f"{option}:") == 1
    assert not (tmp_path / "outputs").exists()  # refused before a run folder, data check or training


def test_smoke_without_a_gpu_says_so_before_the_data_check(entrypoint, tmp_path):
    from cli_tuner.facts import machine

    if machine.detect().kind != "cpu":
        pytest.skip("this machine has a GPU")
    result = entrypoint("smoke", "--output-root", str(tmp_path / "outputs"))
    assert result.returncode == 5, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: smoke preflight: device: no CUDA or MPS device: smoke and full runs train a 7B model; fix: run "
        "`python entrypoint.py rehearse` on CPU, or start the container with --gpus all on a GPU host"]
    assert "data check" not in result.stdout  # the failure is the device's, and no data was read for it
