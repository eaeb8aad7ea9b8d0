"""What a CUDA process holds on the board outside PyTorch's allocator, by GPU generation and CUDA
major: published bare contexts and this project's measurement of a whole training process. The
memory estimate (estimates/memory.py) adds it to the allocator's peak."""

from __future__ import annotations

from dataclasses import dataclass

from .gpus import GpuSpec

# The driver context, then what the training process loads into it (cuBLAS/cuBLASLt handles, the kernel images of torch,
# bitsandbytes and Triton that lazy module loading brings in as they are first called).
# The bare context per CUDA major, published:
BARE_CONTEXT_GIB = {
    12: (0.39, "~400 MB for the first CUDA operation with lazy module loading (CUDA >= 11.7): "
               "ptrblck, pytorch/pytorch#109888 (2023)"),
    13: (0.416, "426 MiB after torch.cuda.mem_get_info with torch 2.10.0+cu130 on an RTX 6000 Ada: "
                "unslothai/unsloth-zoo#1053 (2026)"),
}
# The whole of it in a training process (device used minus the allocator's reserved), measured.
# The second GPU run built the stand-in model in a child process that had exited, so the smoke
# process's context was alone on the device: 0.733-0.874 GiB over four configs; the largest is kept.
# (The first run's 1.352 also held the parent gpu_check process's own context and cached blocks.)
MEASURED_CONTEXT_GIB = {
    ("hopper", 13): (0.874, "measured: H200, driver 580, CUDA 13.0, torch 2.11, bitsandbytes 0.50.2 "
                            "(the second GPU run, 2026-12-04: 0.733-0.874 over four configs, the largest "
                            "kept; docs/measurements/)"),
}
# The part a training process adds to the bare context, from that measurement: it is assumed
# the same where nothing was measured (the estimate's bound widens there: estimates/memory.py).
TRAINING_LIBRARIES_GIB = MEASURED_CONTEXT_GIB[("hopper", 13)][0] - BARE_CONTEXT_GIB[13][0]
MPS_RUNTIME_GIB = 0.3


@dataclass(frozen=True)
class Context:
    gib: float
    measured: bool
    source: str


def cuda_context(gpu: GpuSpec, override_gib: float | None = None) -> Context:
    """The context figure for this GPU's generation and CUDA major, and whether it was measured."""
    if override_gib is not None:
        return Context(override_gib, True, "given (Assumptions.cuda_context_gib)")
    if gpu.kind == "mps":
        return Context(MPS_RUNTIME_GIB, False, "Metal/MPS runtime: an assumption, never measured here")
    if gpu.kind != "cuda":
        return Context(0.0, True, "no GPU")
    major = gpu.cuda_runtime_major
    measured = MEASURED_CONTEXT_GIB.get((gpu.generation, major))
    if measured is not None:
        return Context(measured[0], True, measured[1])
    bare, source = BARE_CONTEXT_GIB.get(major, BARE_CONTEXT_GIB[max(BARE_CONTEXT_GIB)])
    where = f"{gpu.generation or 'this GPU class'} with CUDA {major}"
    return Context(bare + TRAINING_LIBRARIES_GIB, False,
                   f"not measured on {where}: bare context {bare:.2f} GiB ({source}) + "
                   f"{TRAINING_LIBRARIES_GIB:.2f} GiB of training libraries as measured on hopper with CUDA 13")
