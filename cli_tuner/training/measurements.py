"""The parent's side of `measurements.json`: what the plugin needs before training, and the
summary provenance keeps after it.

The plugin runs inside the trainer and may not import the estimator, so the FLOPs per token and
the GPU's peak TFLOP/s it needs for MFU are written into the run folder first.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import atomic
from ..estimates import throughput
from ..facts import machine as machine_facts
from ..paths import MEASUREMENT_INPUTS_FILE, MEASUREMENTS_FILE
from ..plan import Plan

SUMMARY_KEYS = ("device", "gpu_name", "steps_measured", "real_tokens_per_second", "processed_tokens_per_second",
                "mfu", "mfu_real_tokens", "longest_row_tokens", "gpu_memory_note")


def write_inputs(plan: Plan, cfg: dict, run_dir: Path) -> dict:
    """measurement_inputs.json: FLOPs per token of the model that trains, and this GPU's peak."""
    gpu = machine_facts.gpu_spec(plan.machine) if plan.machine is not None and plan.machine.kind == "cuda" else None
    # A rehearsal trains a tiny stand-in, not plan.facts' model: its FLOPs would be the wrong ones.
    flops = throughput.flops_per_token(plan.facts, cfg) if plan.spec.counts_flops else None
    inputs = {"model": plan.facts.name, "flops_per_token": flops,
              "peak_tflops": (gpu.peak_bf16_tflops or None) if gpu is not None else None,
              "gpu": gpu.name if gpu is not None else None}
    atomic.write_json(Path(run_dir) / MEASUREMENT_INPUTS_FILE, inputs)
    return inputs


def read(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / MEASUREMENTS_FILE).read_text())
    except (OSError, ValueError):
        return None


def summary(run_dir: Path) -> dict | None:
    """The few numbers provenance keeps; the full record stays in measurements.json beside it."""
    record = read(run_dir)
    if record is None:
        return None
    kept = {key: record.get(key) for key in SUMMARY_KEYS}
    kept["median_step_seconds"] = (record.get("step_seconds") or {}).get("median_after_first")
    gpu = record.get("gpu_memory") or {}
    kept["peak_device_gib"] = gpu.get("peak_device_gib")
    kept["peak_allocated_gib"] = gpu.get("peak_allocated_gib")
    kept["peak_reserved_gib"] = gpu.get("peak_reserved_gib")
    kept["file"] = MEASUREMENTS_FILE
    return kept
