"""Probes that fail the ways a pod's CUDA stack fails, each run in its own real process through
`gpu_probes.main` (tests/test_gpu_probes.py runs `python -m probe_targets NAME` via `gpu_probes.run`).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from cli_tuner.checks import gpu_probes

EXT_DIR_ENV = "PROBE_TARGETS_EXT_DIR"   # where the test built fake_flash_ext, a real extension with a missing symbol
FAKE_EXTENSION = "fake_flash_ext"


def undefined_symbol() -> str:
    # dlopen of a real shared object needing a symbol nothing defines: how flash_attn_2_cuda fails
    # when it was built against another torch
    sys.path.insert(0, os.environ[EXT_DIR_ENV])
    __import__(FAKE_EXTENSION)
    return "imported"


def missing_module() -> str:
    import flash_attn_2_cuda_not_installed_here  # noqa: F401
    return "imported"


def no_kernel() -> str:
    raise RuntimeError("CUDA error: no kernel image is available for execution on the device\n"
                       "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace "
                       "below might be incorrect.")


def cuda_error() -> str:
    raise RuntimeError("CUDA error: an illegal memory access was encountered\nCompile with `TORCH_USE_CUDA_DSA`.")


def wrong_result() -> str:
    import torch

    want = torch.zeros(4, 4)
    gpu_probes.compare("the attention output", want + 0.5, want, 0.02)
    return "compared"


def segfault() -> str:
    os.kill(os.getpid(), signal.SIGSEGV)
    return "still alive"


def hang() -> str:
    time.sleep(120)
    return "woke up"


def silent_exit() -> str:
    sys.stderr.write("libcuda: something went wrong\n")
    os._exit(3)


def noisy_ok() -> str:
    print("Warning: a library talks on stdout")
    print(f"{gpu_probes.MARKER} not json, and not the last line")
    print("more noise", file=sys.stderr)
    return "fine despite the noise"


PROBES = {name.replace("_", "-"): fn for name, fn in list(globals().items())
          if callable(fn) and getattr(fn, "__module__", None) == __name__}

if __name__ == "__main__":
    raise SystemExit(gpu_probes.main(sys.argv[1:], PROBES))
