"""Smoke's measurements as the full run's calibration, and the decision `full` takes from them.

The memory estimate and the throughput model are derived, not measured on this project's
configs. Smoke runs the full config on the real pod, so it measures: peak GPU memory, tokens/s,
step time, MFU (`measurements.json`). After smoke, `record` compares them with the estimate and
saves them in `<output root>/calibration.json`, keyed by the full config (smoke's overlay and
this module's own settings left out), the data hash and the GPU's name. `full` on the same three
finds the entry and `decide`s before any model loads:

- memory: the measured peak, projected to the longest micro-batch the full run can build
  (micro_batch_size x sequence_len: truncation or dropping caps every row there, packing fills
  up to it), must leave `cli_tuner.memory_headroom` (default 5%) of the board free, else exit 5.
  The projection adds the estimator's growth between smoke's measured batch and that one to the
  measured training peak (the loading peak does not grow with the batch): the estimate's
  size-independent parts (weights, optimizer) cancel, so its errors there do not move the answer.
- time and cost: the full run's optimizer steps x smoke's median step time, plus smoke's
  measured time outside the steps (start-up, loading, evaluation, saving); with
  `cli_tuner.price_per_hour` or GPU_PRICE_PER_HOUR, the price of that.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .. import atomic
from ..config import TUNER_KEY, LoadedConfig, canonical_hash
from ..errors import EnvironmentProblem
from ..facts.gpus import GpuSpec
from ..paths import CALIBRATION_FILE
from ..settings import field_extra
from ..training_shape import TrainingShape
from ..batching.steps import total_steps
from . import memory, throughput
from .throughput import format_duration

# The headroom's default (5% of the board: an eval batch or allocator growth after step 10 must still fit)
# and the price's environment stand-in live with the other settings, in cli_tuner/settings.py.
PRICE_ENV = field_extra("price_per_hour")["env"]


# ----------------------------------------------------------------------------- identity

def config_key(loaded: LoadedConfig) -> str:
    """The full run's config identity without the settings that change neither memory nor speed (a price
    or a headroom set for `full` only must still find smoke's entry). Smoke's overlay keys never reach
    the key (the full config is hashed)."""
    return canonical_hash({"axolotl": loaded.axolotl, TUNER_KEY: loaded.settings.identity()})


def entry_key(config_sha256: str, data_sha256: str, gpu_name: str, processes: int = 1, strategy: str = "ddp") -> str:
    """One GPU keeps the key it always had; several processes, or a sharding strategy, add both: a
    peak measured on 1 of N GPUs under FSDP says nothing about one GPU alone."""
    key = f"{config_sha256[:16]}-{data_sha256[:16]}-{gpu_name}"
    return key if processes == 1 and strategy == "ddp" else f"{key}-{processes}x{strategy}"


def path_in(output_root: Path | str) -> Path:
    return Path(output_root) / CALIBRATION_FILE


def load_all(output_root: Path | str) -> dict:
    try:
        entries = json.loads(path_in(output_root).read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def find(output_root: Path | str, key: str) -> dict | None:
    return load_all(output_root).get(key)


def save(output_root: Path | str, entry: dict) -> Path:
    entries = load_all(output_root)
    entries[entry["key"]] = entry
    return atomic.write_json(path_in(output_root), entries)


# ----------------------------------------------------------------------------- settings

def settings(loaded: LoadedConfig) -> tuple[float, float | None]:
    """(headroom fraction, price per hour or None): checked when the config loaded."""
    return loaded.settings.memory_headroom, loaded.settings.price_per_hour


# ----------------------------------------------------------------------------- shapes

def longest_micro_batch(cfg: dict) -> int:
    """Tokens of the largest micro-batch the run can build: rows are cut or dropped at sequence_len."""
    return TrainingShape.of(cfg).micro_batch_tokens


def at_tokens(cfg: dict, tokens: int) -> dict:
    """The config with its micro-batch resized to `tokens`, the shape the estimator reads."""
    rows = TrainingShape.of(cfg).micro_batch_size
    return {**cfg, "sequence_len": max(1, math.ceil(tokens / rows))}


def estimated_training_gib(cfg: dict, facts, gpu: GpuSpec, tokens: int) -> float:
    """The estimate's training peak at that batch, without the loading peak (which no batch moves)."""
    return sum(memory.estimate(at_tokens(cfg, tokens), facts, gpu, with_advice=False).parts.values())


# ----------------------------------------------------------------------------- after smoke

def record(full: LoadedConfig, facts, gpu: GpuSpec, measured: dict, data_sha256: str, run_name: str,
           smoke_wall_seconds: float | None, processes: int = 1, strategy: str = "ddp") -> dict:
    """The calibration entry: smoke's measurements beside the estimate for the same batch."""
    cfg = full.axolotl
    config_sha256 = config_key(full)
    gpu_memory = measured.get("gpu_memory") or {}
    tokens = measured.get("max_tokens_per_micro_batch") or longest_micro_batch(cfg)
    shaped = at_tokens(cfg, tokens)
    estimate = memory.estimate(shaped, facts, gpu, with_advice=False)
    speed = throughput.estimate_tokens_per_second(facts, gpu, shaped) if gpu.peak_bf16_tflops > 0 else None
    steps = measured.get("step_seconds") or {}
    timed = (steps.get("median_after_first") or 0) * (measured.get("steps_measured") or 0)
    overhead = max(0.0, smoke_wall_seconds - timed) if smoke_wall_seconds else None
    return {
        "key": entry_key(config_sha256, data_sha256, gpu.name, processes, strategy),
        "processes": processes, "strategy": strategy,
        "config_sha256": config_sha256, "data_sha256": data_sha256, "gpu": gpu.name,
        "capacity_gib": gpu_memory.get("total_gib") or round(gpu.capacity_gib, 3),
        "recorded_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "smoke_run": run_name, "model": facts.name,
        "measured": {
            "peak_device_gib": gpu_memory.get("peak_device_gib"),
            "peak_allocated_gib": gpu_memory.get("peak_allocated_gib"),
            "peak_reserved_gib": gpu_memory.get("peak_reserved_gib"),
            "train_peak_device_gib": _device(gpu_memory, "train_peak_reserved_gib"),
            "load_peak_device_gib": _device(gpu_memory, "load_peak_reserved_gib"),
            "processed_tokens_per_second": measured.get("processed_tokens_per_second"),
            "real_tokens_per_second": measured.get("real_tokens_per_second"),
            "step_seconds": steps.get("median_after_first"),
            "mfu": measured.get("mfu"),
            "tokens_per_micro_batch": tokens,
            "micro_batches_per_step": measured.get("micro_batches_per_step"),
            "real_share": (round(measured["tokens"]["real"] / measured["tokens"]["processed"], 4)
                           if (measured.get("tokens") or {}).get("processed") else None),
            "mean_example_tokens": (measured.get("dataset") or {}).get("mean_tokens"),
            "overhead_seconds": round(overhead, 1) if overhead is not None else None,
        },
        "estimated": {
            "peak_gib": round(estimate.total_gib, 3),
            "load_peak_gib": round(estimate.load_peak_gib, 3) if estimate.load_parts else None,
            "train_peak_gib": round(estimate.training_gib, 3),
            "bound_gib": round(estimate.bound_gib, 3),
            "processed_tokens_per_second": round(speed, 1) if speed else None,
            "step_seconds": (round(tokens * (measured.get("micro_batches_per_step") or 1) / speed, 4) if speed else None),
            "mfu": round(throughput.model_mfu(facts, gpu, shaped), 4) if speed else None,
        },
    }


def _device(gpu_memory: dict, reserved_key: str) -> float | None:
    """A phase's peak as the board sees it: the allocator's pool plus the context it cannot see."""
    if gpu_memory.get(reserved_key) is None:
        return None
    return round(gpu_memory[reserved_key] + (gpu_memory.get("context_gib") or 0), 3)


def comparison(entry: dict):
    """Measured against estimated, one row per figure: the table smoke prints."""
    from rich.table import Table

    measured, estimated = entry["measured"], entry["estimated"]
    table = Table(title=f"smoke measured vs estimated: {entry['model']} on {entry['gpu']}", title_justify="left")
    for column in ("figure", "measured", "estimated", "measured / estimated"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    rows = [("peak GPU memory, device (GiB)", measured["peak_device_gib"], estimated["peak_gib"], "{:.2f}"),
            ("  loading peak, device (GiB)", measured.get("load_peak_device_gib"), estimated.get("load_peak_gib"), "{:.2f}"),
            ("  training peak, device (GiB)", measured.get("train_peak_device_gib"), estimated.get("train_peak_gib"),
             "{:.2f}"),
            ("peak allocated by torch (GiB)", measured["peak_allocated_gib"], None, "{:.2f}"),
            ("tokens/s processed (incl. padding)", measured["processed_tokens_per_second"],
             estimated["processed_tokens_per_second"], "{:,.0f}"),
            ("tokens/s real (non-padding)", measured["real_tokens_per_second"], None, "{:,.0f}"),
            ("step time (s, median after step 1)", measured["step_seconds"], estimated["step_seconds"], "{:.3f}"),
            ("MFU (processed tokens)", measured["mfu"], estimated["mfu"], "{:.1%}")]
    for label, got, expected, fmt in rows:
        ratio = f"{got / expected:.2f}" if got is not None and expected else ""
        table.add_row(label, fmt.format(got) if got is not None else "not measured",
                      fmt.format(expected) if expected is not None else "", ratio)
    return table


# ----------------------------------------------------------------------------- before smoke

@dataclass
class Projection:
    """validate's time and cost of the full run's training steps: throughput.project_time, and a price."""

    time: throughput.TimeProjection
    price_per_hour: float | None
    upper_bound: bool = False          # no lengths known: every example counted at sequence_len

    def line(self) -> str:
        time = self.time
        low, high = time.range_seconds
        text = (f"projected training time on {time.gpu}: {format_duration(low)} to {format_duration(high)} "
                f"(model: {format_duration(time.seconds)}, {time.tokens_per_second:,.0f} processed tokens/s) "
                f"for {time.steps} steps, the steps alone")
        if self.upper_bound:
            text += " (an upper bound: without the data report every example counts as sequence_len tokens)"
        if self.price_per_hour is not None:
            text += (f"; cost {low / 3600 * self.price_per_hour:.2f} to {high / 3600 * self.price_per_hour:.2f} "
                     f"at {self.price_per_hour:g}/h")
        return f"{text}; rests on {time.rests_on}; `smoke` measures it on the pod"


def project(cfg: dict, facts, gpu: GpuSpec, train_examples: int | None, price_per_hour: float | None,
            train_lengths: list[int] | None = None, processes: int = 1) -> Projection | None:
    """The throughput model's time for the full run, as a range (throughput.project_time over one epoch
    of the data as Axolotl batches it); None when the GPU's peak is unknown, or packing without the
    data's lengths."""
    epoch = throughput.epoch_of(cfg, train_lengths, train_examples)
    time = throughput.project_time(cfg, facts, gpu, epoch, processes) if epoch is not None else None
    if time is None:
        return None
    padded_anyway = bool(cfg.get("pad_to_sequence_len")) and not cfg.get("sample_packing")
    return Projection(time, price_per_hour, upper_bound=not train_lengths and not padded_anyway)


# ----------------------------------------------------------------------------- before full

@dataclass
class Decision:
    source: str
    gpu: str
    capacity_gib: float
    headroom: float
    measured_peak_gib: float
    projected_peak_gib: float
    smoke_tokens: int
    full_tokens: int
    steps: int | None
    projected_seconds: float | None
    price_per_hour: float | None

    @property
    def limit_gib(self) -> float:
        return self.capacity_gib * (1 - self.headroom)

    @property
    def fits(self) -> bool:
        return self.projected_peak_gib <= self.limit_gib

    @property
    def projected_cost(self) -> float | None:
        if self.projected_seconds is None or self.price_per_hour is None:
            return None
        return self.projected_seconds / 3600 * self.price_per_hour

    def memory_line(self) -> str:
        growth = (f", projected to the full run's longest micro-batch ({self.full_tokens} tokens, smoke's was "
                  f"{self.smoke_tokens})" if self.full_tokens != self.smoke_tokens else "")
        return (f"smoke measured {self.measured_peak_gib:.2f} GiB peak on {self.gpu}{growth}: "
                f"{self.projected_peak_gib:.2f} GiB of {self.capacity_gib:.2f} GiB "
                f"(limit {self.limit_gib:.2f} GiB with {self.headroom:.0%} headroom)")

    def time_line(self) -> str:
        if self.projected_seconds is None:
            return "projected wall time: unknown (smoke measured no step time)"
        cost = (f", ~{self.projected_cost:.2f} at {self.price_per_hour:g}/h" if self.projected_cost is not None
                else f" (set cli_tuner.price_per_hour or {PRICE_ENV} for the cost)")
        return f"projected wall time: ~{format_duration(self.projected_seconds)} for {self.steps} steps{cost}"

    def error_message(self) -> str:
        return (f"{self.source}: will not fit: {self.memory_line()}; lower micro_batch_size or sequence_len, "
                f"or set cli_tuner.memory_headroom lower, or use a larger GPU")


def full_steps(cfg: dict, train_examples: int | None, entry: dict, processes: int = 1) -> int | None:
    """Optimizer steps of the full run (batching.steps.total_steps), packed rows counted from smoke's
    measured tokens per example."""
    mean = entry["measured"].get("mean_example_tokens")
    return total_steps(cfg, train_examples, mean, processes)


def decide(entry: dict, full: LoadedConfig, facts, gpu: GpuSpec, train_examples: int | None,
           headroom: float, price_per_hour: float | None, processes: int = 1) -> Decision:
    cfg = full.axolotl
    measured = entry["measured"]
    smoke_tokens = int(measured.get("tokens_per_micro_batch") or longest_micro_batch(cfg))
    full_tokens = longest_micro_batch(cfg)
    peak = float(measured["peak_device_gib"])
    growth = max(0.0, estimated_training_gib(cfg, facts, gpu, full_tokens)
                 - estimated_training_gib(cfg, facts, gpu, smoke_tokens))
    # Loading (the 4-bit quantization's fp32 upcast) can be the peak; a longer batch moves only training's.
    training = measured.get("train_peak_device_gib")
    projected = max(peak, (training if training is not None else peak) + growth)
    steps = full_steps(cfg, train_examples, entry, processes)
    seconds = None
    if steps is not None and measured.get("step_seconds"):
        seconds = steps * float(measured["step_seconds"]) + float(measured.get("overhead_seconds") or 0)
    return Decision(source=str(full.path), gpu=entry["gpu"], capacity_gib=float(entry["capacity_gib"]),
                    headroom=headroom, measured_peak_gib=peak, projected_peak_gib=projected,
                    smoke_tokens=smoke_tokens, full_tokens=full_tokens, steps=steps, projected_seconds=seconds,
                    price_per_hour=price_per_hour)


def raise_unless_fits(decision: Decision) -> None:
    """EnvironmentProblem (exit 5), one line: the measured peak leaves too little headroom."""
    if not decision.fits:
        raise EnvironmentProblem(decision.error_message())
