"""`measurements.json`: what the GPU really did during training, measured inside the trainer.

Peak GPU memory (allocated and reserved, while loading and while training, plus the CUDA context
the caching allocator cannot see), real tokens per second (non-padding tokens, counted from each
micro-batch's attention_mask), step time, and MFU from the FLOPs per token and the GPU's peak that
the job writes beside it (`measurement_inputs.json`: this module may not import the estimator).

On a machine without CUDA the GPU-memory fields are null and `gpu_memory_note` says why; tokens/s
and step time are still measured.

Axolotl resets PyTorch's peak counters whenever it logs memory (axolotl/utils/bench.py,
gpu_memory_usage_all: after the model loads, after the adapters, and at every trainer log), and
empties the cache after each checkpoint save. So the peaks are read where Axolotl has not reset
them yet: the loading peak at train begin (its reserved figure is the loading high-water mark,
which the allocator kept mapped through the resets; its allocated figure is only what was live
at Axolotl's last reset), and the training peak at the end of every optimizer step and
evaluation, before Axolotl's log resets the counters.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from transformers import TrainerCallback

from ...atomic import write_json
from ...paths import MEASUREMENT_INPUTS_FILE, MEASUREMENTS_FILE

GIB = 2**30
NO_CUDA_NOTE = "not measured: no CUDA device in the trainer process"


def _cuda():
    """torch.cuda when a CUDA device is in use, else None (CPU and MPS have no peak counters we trust)."""
    import torch

    return torch.cuda if torch.cuda.is_available() else None


def count_tokens(inputs, pad_token_id=None) -> dict:
    """Real and processed tokens of one micro-batch, and its shape.

    Real = non-padding: attention_mask is nonzero on every real token (Axolotl's packed rows
    number their examples 1, 2, ... and pad with 0). Without a mask, tokens that are not the pad
    id; without that either, every slot (and `counted_by` says so)."""
    ids = inputs.get("input_ids")
    if ids is None:
        return {"real": 0, "processed": 0, "trainable": 0, "rows": 0, "row_len": 0, "counted_by": "no input_ids"}
    processed = int(ids.numel())
    mask = inputs.get("attention_mask")
    if mask is not None:
        real, how = int((mask != 0).sum()), "attention_mask"
    elif pad_token_id is not None:
        real, how = int((ids != pad_token_id).sum()), "input_ids != pad_token_id"
    else:
        real, how = processed, "all token slots (no attention_mask, no pad id)"
    labels = inputs.get("labels")
    trainable = int((labels != -100).sum()) if labels is not None else 0
    rows = int(ids.shape[0]) if ids.dim() > 1 else 1
    return {"real": real, "processed": processed, "trainable": trainable, "rows": rows,
            "row_len": int(ids.shape[-1]), "counted_by": how}


def dataset_lengths(dataloader, limit: int = 200_000) -> dict | None:
    """Examples and their token lengths in the tokenized train set: how `full` turns smoke's
    tokens per example into the full data's packed steps. None when the set is not readable."""
    dataset = getattr(dataloader, "dataset", None)
    try:
        if dataset is None or "input_ids" not in dataset.column_names or len(dataset) > limit:
            return None
        lengths = [len(ids) for ids in dataset["input_ids"]]
    except (AttributeError, TypeError, KeyError):
        return None
    if not lengths:
        return None
    return {"examples": len(lengths), "mean_tokens": round(sum(lengths) / len(lengths), 2), "max_tokens": max(lengths)}


def summarize(steps: list[dict], inputs: dict, memory: dict | None, device: str, gpu_name: str | None) -> dict:
    """The measurements record from per-step counts. Rates skip the first step when there are
    more: it carries one-off costs (kernel selection, allocator growth, lazy CUDA init)."""
    timed = steps[1:] if len(steps) > 1 else steps
    seconds = sum(s["seconds"] for s in timed)
    real = sum(s["real"] for s in timed)
    processed = sum(s["processed"] for s in timed)
    flops, peak = inputs.get("flops_per_token"), inputs.get("peak_tflops")
    real_rate = real / seconds if seconds > 0 else None
    processed_rate = processed / seconds if seconds > 0 else None
    mfu = mfu_real = None
    if flops and peak and processed_rate:
        mfu = processed_rate * flops / (peak * 1e12)
        mfu_real = real_rate * flops / (peak * 1e12)
    durations = [s["seconds"] for s in steps]
    record = {
        "schema": 1,
        "device": device,
        "gpu_name": gpu_name,
        "gpu_memory": memory,
        "gpu_memory_note": None if memory is not None else NO_CUDA_NOTE,
        "steps_measured": len(steps),
        "steps_in_rates": len(timed),
        "step_seconds": ({"median": round(statistics.median(durations), 4), "mean": round(statistics.mean(durations), 4),
                          "first": round(durations[0], 4), "min": round(min(durations), 4), "max": round(max(durations), 4),
                          "median_after_first": round(statistics.median(s["seconds"] for s in timed), 4)}
                         if durations else None),
        "tokens": {"real": sum(s["real"] for s in steps), "processed": sum(s["processed"] for s in steps),
                   "trainable": sum(s["trainable"] for s in steps),
                   "counted_by": sorted({s["counted_by"] for s in steps if s.get("counted_by")})},
        "real_tokens_per_second": round(real_rate, 2) if real_rate is not None else None,
        "processed_tokens_per_second": round(processed_rate, 2) if processed_rate is not None else None,
        "longest_row_tokens": max((s["row_len"] for s in steps), default=None),
        "max_rows_per_micro_batch": max((s["rows"] for s in steps), default=None),
        "max_tokens_per_micro_batch": max((s["max_micro_tokens"] for s in steps), default=None),
        "micro_batches_per_step": max((s["micro_batches"] for s in steps), default=None),
        "flops_per_token": flops,
        "peak_tflops": peak,
        "mfu": round(mfu, 4) if mfu is not None else None,
        "mfu_real_tokens": round(mfu_real, 4) if mfu_real is not None else None,
        "mfu_note": ("model FLOPs x processed tokens/s over the GPU's dense bf16 peak; mfu_real_tokens counts only "
                     "non-padding tokens" if mfu is not None else "no GPU peak TFLOP/s known for this device"),
    }
    return record


class MeasurementsCallback(TrainerCallback):
    """Times each optimizer step and counts its tokens; records peak GPU memory.

    No TrainerCallback hook receives the batch, so `observe(trainer)` wraps this trainer's
    `training_step` (per instance, the class is untouched) to count each micro-batch it is given.
    """

    def __init__(self, output_dir: str, trainer=None):
        self.path = Path(output_dir) / MEASUREMENTS_FILE
        try:
            self.inputs = json.loads((Path(output_dir) / MEASUREMENT_INPUTS_FILE).read_text())
        except (OSError, ValueError):
            self.inputs = {}
        self.steps: list[dict] = []
        self.current: dict | None = None
        self.started: float | None = None
        self.load_peak: dict = {}
        self.train_peak = {"allocated": 0, "reserved": 0}
        self.dataset: dict | None = None
        self.pad_token_id = None
        if trainer is not None:
            self.observe(trainer)

    def observe(self, trainer) -> None:
        self.pad_token_id = getattr(getattr(trainer, "processing_class", None), "pad_token_id", None)
        original = trainer.training_step

        def training_step(model, inputs, *args, **kwargs):
            self.count(inputs)
            return original(model, inputs, *args, **kwargs)

        trainer.training_step = training_step

    def count(self, inputs) -> None:
        if self.current is None:  # a micro-batch outside a timed step (should not happen): start one
            self.current = self._fresh()
        counted = count_tokens(inputs, self.pad_token_id)
        step = self.current
        for key in ("real", "processed", "trainable"):
            step[key] += counted[key]
        step["rows"] = max(step["rows"], counted["rows"])
        step["row_len"] = max(step["row_len"], counted["row_len"])
        step["max_micro_tokens"] = max(step["max_micro_tokens"], counted["processed"])
        step["micro_batches"] += 1
        step["counted_by"] = counted["counted_by"]

    @staticmethod
    def _fresh() -> dict:
        return {"seconds": 0.0, "real": 0, "processed": 0, "trainable": 0, "rows": 0, "row_len": 0,
                "max_micro_tokens": 0, "micro_batches": 0, "counted_by": None}

    def _sync(self) -> None:
        cuda = _cuda()
        if cuda is not None:
            cuda.synchronize()  # kernels run asynchronously: without this a step "ends" before its work

    def on_train_begin(self, args, state, control, **kwargs):
        self.dataset = dataset_lengths(kwargs.get("train_dataloader"))
        cuda = _cuda()
        if cuda is not None:
            # Loading (4-bit quantization, the fp32 upcast) can be the peak; keep it, then count training alone.
            self.load_peak = {"allocated": cuda.max_memory_allocated(), "reserved": cuda.max_memory_reserved()}
            cuda.reset_peak_memory_stats()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self.current = self._fresh()
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        if self.current is not None and self.started is not None:
            self.current["seconds"] = time.perf_counter() - self.started
            self.steps.append(self.current)
        self.current, self.started = None, None
        self._keep_training_peak()  # before Axolotl's log resets the counters

    def on_evaluate(self, args, state, control, **kwargs):
        self._keep_training_peak()

    def _keep_training_peak(self) -> None:
        cuda = _cuda()
        if cuda is not None:
            self.train_peak["allocated"] = max(self.train_peak["allocated"], cuda.max_memory_allocated())
            self.train_peak["reserved"] = max(self.train_peak["reserved"], cuda.max_memory_reserved())

    def memory(self) -> dict | None:
        cuda = _cuda()
        if cuda is None:
            return None
        free, total = cuda.mem_get_info()
        reserved_now = cuda.memory_reserved()
        # What the device uses beyond the allocator's pool: CUDA context, cuBLAS workspace, kernels.
        context = max(0, (total - free) - reserved_now)
        train_alloc = max(cuda.max_memory_allocated(), self.train_peak["allocated"])
        train_res = max(cuda.max_memory_reserved(), self.train_peak["reserved"])
        peak_alloc = max(train_alloc, self.load_peak.get("allocated", 0))
        peak_res = max(train_res, self.load_peak.get("reserved", 0))
        return {
            "peak_allocated_gib": round(peak_alloc / GIB, 3),
            "peak_reserved_gib": round(peak_res / GIB, 3),
            # live at Axolotl's last peak reset after loading, not the loading peak (see the module doc)
            "load_peak_allocated_gib": round(self.load_peak.get("allocated", 0) / GIB, 3),
            "load_peak_reserved_gib": round(self.load_peak.get("reserved", 0) / GIB, 3),
            "train_peak_allocated_gib": round(train_alloc / GIB, 3),
            "train_peak_reserved_gib": round(train_res / GIB, 3),
            "context_gib": round(context / GIB, 3),
            "load_peak_device_gib": round((self.load_peak.get("reserved", 0) + context) / GIB, 3),
            "train_peak_device_gib": round((train_res + context) / GIB, 3),
            "train_peak_read_at": "every optimizer step's end and evaluation, before Axolotl's log resets the counters",
            # the number to hold against the board: the allocator's peak pool plus what it cannot see
            "peak_device_gib": round((peak_res + context) / GIB, 3),
            "total_gib": round(total / GIB, 3),
        }

    def save(self) -> None:
        cuda = _cuda()
        device, name = ("cuda", cuda.get_device_name(0)) if cuda is not None else ("cpu", None)
        record = summarize(self.steps, self.inputs, self.memory(), device, name)
        record["dataset"] = self.dataset
        write_json(self.path, record)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.save()

    def on_train_end(self, args, state, control, **kwargs):
        self.save()
