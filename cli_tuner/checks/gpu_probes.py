"""CUDA probes that run in a child process: flash-attn's compiled extension and one tiny attention
call, bitsandbytes' 4-bit quantize and matmul. The job's own process never touches CUDA for them,
so no CUDA context (hundreds of MiB) is held on the GPU the trainer needs, and a crash or hang in a
kernel cannot take the job down with it.

Parent side: `run(probe)` starts `python -X faulthandler -m cli_tuner.checks.gpu_probes PROBE` with a
timeout and reads the last `cli-tuner-probe: {json}` line of its stdout into a `ProbeResult`; a
child that times out, dies of a signal or exits without that line gets a result saying so.
`as_check` turns a result into a `Check` with the fix for its kind of failure.

Child side: `main(argv, probes)` runs one probe function, classifies what it raised and writes the
line. Run it by hand to see one probe: `python -m cli_tuner.checks.gpu_probes flash-attn`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import console
from ..facts import attention as attention_facts
from ..facts.machine import Machine
from ..findings import Check

MARKER = "cli-tuner-probe:"
PROBE_MODULE = "cli_tuner.checks.gpu_probes"
TIMEOUT_ENV = "CLI_TUNER_PROBE_TIMEOUT"
DEFAULT_TIMEOUT_S = 180.0   # a cold pod: import torch, initialize CUDA, load the extension
PACKAGE_ROOT = Path(__file__).resolve().parents[2]

# kinds of result; the parent adds timeout, crash and no-result
OK, NO_CUDA, MISSING, ABI, IMPORT, ARCH, CUDA, WRONG, ERROR = (
    "ok", "no-cuda", "missing", "abi", "import", "arch", "cuda", "wrong-result", "error")
TIMEOUT, CRASH, NO_RESULT = "timeout", "crash", "no-result"


@dataclass(frozen=True)
class ProbeResult:
    probe: str
    ok: bool
    kind: str
    detail: str             # what was found, one line
    error_class: str = ""   # "ImportError", "SIGSEGV", ...
    error_line: str = ""    # the first line of the error, e.g. "...so: undefined symbol: _ZN3c10..."
    seconds: float = 0.0

    def as_line(self) -> str:
        return f"{MARKER} {json.dumps(asdict(self), sort_keys=True)}"

    @classmethod
    def from_line(cls, line: str) -> ProbeResult:
        fields = json.loads(line[len(MARKER):])
        return cls(**{name: fields[name] for name in cls.__dataclass_fields__ if name in fields})


class NoCuda(RuntimeError):
    """The probe's process sees no CUDA device."""


class WrongResult(RuntimeError):
    """A kernel ran but its numbers disagree with the reference."""


# ----------------------------------------------------------------------------- child side

def first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def classify(exc: BaseException) -> str:
    """The kind of failure an exception from a probe means."""
    text = str(exc)
    if isinstance(exc, NoCuda):
        return NO_CUDA
    if isinstance(exc, WrongResult):
        return WRONG
    if "undefined symbol" in text:
        return ABI   # a compiled extension built against another torch (or C++ ABI) than this one
    if isinstance(exc, ModuleNotFoundError):
        return MISSING
    if isinstance(exc, (ImportError, OSError)):
        return IMPORT
    if "no kernel image is available" in text:
        return ARCH
    if "CUDA" in text or "cuda" in type(exc).__name__.lower() or type(exc).__name__ == "AcceleratorError":
        return CUDA
    return ERROR


def _cuda():
    import torch

    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise NoCuda(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"
                     + (f", CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""))
    return torch


def compare(name: str, got, want, tolerance: float) -> float:
    """Max abs difference of `got` from the float32 `want`; WrongResult above tolerance x max|want|."""
    got = got.float()
    if not bool(got.isfinite().all()):
        raise WrongResult(f"{name} has NaN or inf values")
    difference = (got - want).abs().max().item()
    limit = tolerance * max(1.0, want.abs().max().item())
    if difference > limit:
        raise WrongResult(f"{name} differs from the reference by {difference:.4f} (tolerance {limit:.4f})")
    return difference


def attention_round(torch, flash_attn_func) -> tuple[float, float]:
    """A causal GQA attention forward and backward through `flash_attn_func`, against float32 SDPA;
    the max differences of the output and of the query gradient."""
    torch.manual_seed(0)
    # (batch, seqlen, heads, headdim): 8 query heads over 2 KV heads and head dim 128, as in the 7B models
    q = torch.randn(2, 128, 8, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(2, 128, 2, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(2, 128, 2, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn(2, 128, 8, 128, device="cuda", dtype=torch.bfloat16)
    out = flash_attn_func(q, k, v, causal=True)
    out = out[0] if isinstance(out, tuple) else out   # some builds return (out, softmax_lse, ...)
    out.backward(grad)
    torch.cuda.synchronize()

    # the reference: float32 SDPA on the same values, (batch, heads, seqlen, headdim), KV heads repeated
    qr, kr, vr = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(
        qr.transpose(1, 2), kr.repeat_interleave(4, dim=2).transpose(1, 2), vr.repeat_interleave(4, dim=2).transpose(1, 2),
        is_causal=True).transpose(1, 2)
    ref.backward(grad.float())
    return compare("the attention output", out, ref, 0.02), compare("the query gradient", q.grad, qr.grad, 0.05)


def load_hub_kernel_attention():
    """flash_attn_func as transformers 5.16 loads it for flash_attention_2 without the flash_attn
    package, after Axolotl's pin of the kernel's major version (what a training run does)."""
    from axolotl.monkeypatch.attention.fa2_hub_kernel import patch_fa2_hub_kernel_version
    from transformers.modeling_flash_attention_utils import FLASH_ATTN_KERNEL_FALLBACK, lazy_import_flash_attention

    patch_fa2_hub_kernel_version()
    (flash_attn_func, _varlen, *_rest), _process = lazy_import_flash_attention(FLASH_ATTN_KERNEL_FALLBACK["flash_attention_2"])
    if flash_attn_func is None:
        raise ImportError(f"{attention_facts.KERNEL_REPO} loaded without flash_attn_func")
    return flash_attn_func


def probe_flash_attn() -> str:
    """The flash-attention source this machine has (facts.attention): load it as training would, run a
    causal GQA attention forward and backward, compare with SDPA."""
    torch = _cuda()
    source = attention_facts.detect()
    if source.kind == attention_facts.NONE:
        raise ModuleNotFoundError(source.detail)
    if source.kind == attention_facts.PACKAGE:
        import flash_attn_2_cuda  # noqa: F401  the compiled extension: an ABI mismatch fails here
        from flash_attn import flash_attn_func

        what = f"flash-attn {source.version}: flash_attn_2_cuda loads"
    else:
        flash_attn_func = load_hub_kernel_attention()
        what = f"{attention_facts.KERNEL_REPO} hub kernel ({source.kernel_path}) loads through transformers"
    forward, backward = attention_round(torch, flash_attn_func)
    return (f"{what}; causal bf16 attention forward and backward match SDPA (max difference "
            f"{forward:.4f} / {backward:.4f}) on {torch.cuda.get_device_name(0)}")


def bnb_4bit_round(device: str) -> str:
    """NF4 with double quantization as the configs use it: quantize, dequantize, then matmul_4bit on
    a batch, a single row and with a gradient, each against the dequantized weight."""
    import torch
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbf

    torch.manual_seed(0)
    weight = torch.randn(256, 512, device=device, dtype=torch.bfloat16)   # [out_features, in_features]
    packed, state = bnbf.quantize_4bit(weight, quant_type="nf4", compress_statistics=True)
    restored = bnbf.dequantize_4bit(packed, state).float()
    round_trip = (restored - weight.float()).abs().mean().item()
    if not round_trip < 0.2:
        raise WrongResult(f"the 4-bit NF4 round trip's mean error {round_trip:.3f} is far too large (NF4 gives ~0.08)")
    x = torch.randn(8, 512, device=device, dtype=torch.bfloat16)
    with torch.no_grad():
        batch = compare("matmul_4bit on 8 rows", bnb.matmul_4bit(x, packed.t(), quant_state=state), x.float() @ restored.t(), 0.02)
        row = compare("matmul_4bit on 1 row", bnb.matmul_4bit(x[:1], packed.t(), quant_state=state), x[:1].float() @ restored.t(), 0.02)
    trained = x.clone().requires_grad_()
    bnb.matmul_4bit(trained, packed.t(), quant_state=state).float().sum().backward()
    gradient = compare("matmul_4bit's input gradient", trained.grad, restored.sum(0).expand(8, -1), 0.02)
    return (f"bitsandbytes {bnb.__version__}: NF4 round trip error {round_trip:.3f}; matmul_4bit matches the dequantized "
            f"weight (max difference {batch:.3f} / {row:.3f} / {gradient:.3f})")


def probe_bnb4bit() -> str:
    torch = _cuda()
    return bnb_4bit_round("cuda") + f" on {torch.cuda.get_device_name(0)}"


PROBES = {"flash-attn": probe_flash_attn, "bnb4bit": probe_bnb4bit}


def main(argv: list[str], probes: dict | None = None) -> int:
    """Run one probe, write its result line; exit 0 when it passed."""
    probes = PROBES if probes is None else probes
    if len(argv) != 1 or argv[0] not in probes:
        console.problem(f"usage: python -m {PROBE_MODULE} {{{'|'.join(probes)}}}")
        return 2
    name = argv[0]
    start = time.monotonic()
    try:
        result = ProbeResult(name, True, OK, probes[name]())
    except Exception as exc:  # every failure becomes a result; the parent decides what it means
        kind = classify(exc)
        result = ProbeResult(name, False, kind, first_line(exc) or type(exc).__name__, type(exc).__name__, first_line(exc))
    console.out(ProbeResult(**{**asdict(result), "seconds": round(time.monotonic() - start, 2)}).as_line())
    return 0 if result.ok else 1


# ----------------------------------------------------------------------------- parent side

def default_timeout() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    except ValueError:
        return DEFAULT_TIMEOUT_S


def _stderr_line(stderr: str) -> str:
    """What a dead child's stderr says: faulthandler's fatal line and the innermost frame, else the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = next((line for line in lines if line.startswith("Fatal Python error")), "")
    if fatal:
        frame = next((line for line in lines if line.startswith("File ")), "")
        return f"{fatal} ({frame})" if frame else fatal
    return lines[-1] if lines else ""


def run(probe: str, timeout: float | None = None, module: str = PROBE_MODULE) -> ProbeResult:
    """Run one probe in its own process and return what it found."""
    timeout = default_timeout() if timeout is None else timeout
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    command = [sys.executable, "-X", "faulthandler", "-m", module, probe]
    start = time.monotonic()
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, errors="replace", env=env)
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        try:
            child.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pass  # stuck in the driver: left to the kernel, the check reports the timeout either way
        return ProbeResult(probe, False, TIMEOUT, f"the {probe} probe did not finish in {timeout:g} s and was killed",
                           "TimeoutExpired", seconds=round(time.monotonic() - start, 2))
    seconds = round(time.monotonic() - start, 2)
    lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
    if lines:
        try:
            return ProbeResult.from_line(lines[-1])
        except (ValueError, TypeError, KeyError) as exc:
            return ProbeResult(probe, False, NO_RESULT, f"the {probe} probe wrote an unreadable result: {exc}",
                               type(exc).__name__, lines[-1][:200], seconds)
    if child.returncode < 0:
        try:
            name = signal.Signals(-child.returncode).name
        except ValueError:
            name = f"signal {-child.returncode}"
        return ProbeResult(probe, False, CRASH, f"the {probe} probe's process died of {name}", name,
                           _stderr_line(stderr), seconds)
    return ProbeResult(probe, False, NO_RESULT, f"the {probe} probe exited with status {child.returncode} and no result",
                       f"exit {child.returncode}", _stderr_line(stderr), seconds)


def _sm(found: Machine) -> str:
    return f"sm_{(found.compute_capability or '?').replace('.', '')}"


def _fixes(package: str, probe: str, found: Machine, version: str | None) -> dict[str, str]:
    rerun = f"python -m {PROBE_MODULE} {probe} shows it again"
    if package == "flash-attn":
        reinstall = ("rebuild the image (Dockerfile.cuda fetches the flash-attn2 hub kernel for its torch), or "
                     "python scripts/fetch_attention_kernel.py with network; with the flash_attn package: pip install "
                     "--force-reinstall --no-deps a flash_attn 2.8.3 wheel built for this torch and cp311 (or pip uninstall "
                     "flash-attn); meanwhile --set attn_implementation=sdpa")
        return {
            MISSING: reinstall, ABI: reinstall, IMPORT: reinstall, ERROR: reinstall + f"; {rerun}",
            ARCH: f"a flash-attention build with kernels for {_sm(found)}, or --set attn_implementation=sdpa",
            WRONG: reinstall, CRASH: reinstall + f"; {rerun}", NO_RESULT: rerun,
        }
    reinstall = (f"pip install --force-reinstall bitsandbytes=={version or '0.50.2'}; "
                 "python -m bitsandbytes prints what it cannot load")
    return {
        MISSING: reinstall, ABI: reinstall + "; it must match the CUDA torch build", IMPORT: reinstall,
        ERROR: reinstall + f"; {rerun}",
        ARCH: f"a bitsandbytes wheel with kernels for {_sm(found)}: {reinstall}",
        WRONG: reinstall, CRASH: reinstall + f"; {rerun}", NO_RESULT: rerun,
    }


COMMON_FIXES = {
    NO_CUDA: "the job's process sees the GPU but a child process does not: check CUDA_VISIBLE_DEVICES and `nvidia-smi`",
    CUDA: "check the driver line above and `nvidia-smi`; a CUDA error in a tiny kernel means training fails too",
    TIMEOUT: f"a hung GPU or driver: check `nvidia-smi`; on a slow disk raise the limit with {TIMEOUT_ENV}=600",
}
WHAT = {
    MISSING: "a module it needs is missing", ABI: "its compiled extension does not match this torch (ABI mismatch)",
    IMPORT: "its compiled code does not load", ARCH: "it has no kernel for this GPU's architecture",
    CUDA: "a CUDA error", WRONG: "its kernel computes wrong values", ERROR: "the probe failed",
    NO_CUDA: "in a child process", TIMEOUT: "hung", CRASH: "crashed", NO_RESULT: "no result",
}


def as_check(name: str, result: ProbeResult, found: Machine, version: str | None = None) -> Check:
    """The check a probe's result makes: ok with what ran, or an error naming the kind and its fix."""
    if result.ok:
        return Check(name, True, "error", result.detail)
    label = f"{name} {version}" if version else name
    cause = result.detail if result.kind in (TIMEOUT, CRASH, NO_RESULT, NO_CUDA) else result.error_line or result.detail
    extra = f" [{result.error_line}]" if result.kind in (CRASH, NO_RESULT) and result.error_line else ""
    fixes = _fixes(name, result.probe, found, version)
    fix = fixes.get(result.kind) or COMMON_FIXES.get(result.kind) or fixes[NO_RESULT]
    where = f" on {found.device_name}" if found.device_name else ""
    return Check(name, False, "error", f"{label}{where}: {WHAT.get(result.kind, result.kind)}: {cause}{extra}", fix)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
