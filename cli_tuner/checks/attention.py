"""The one rule for running a flash-attention config without flash attention: `sdpa`, with the
pod's batching kept. Two callers: the CPU rehearsal (flash-attn is CUDA-only) and a CUDA machine
with no flash-attention source at all (no flash_attn package, no hub kernel: `facts.attention`).

Under sample packing, Axolotl batches an attention that supports packing (flash attention) as one
bin of micro_batch_size x sequence_len tokens per micro batch, and sdpa as micro_batch_size bins of
sequence_len (`multipack_real_batches`). Setting `multipack_real_batches: false` keeps the flash
batching, so the step and eval-batch arithmetic (`batching/steps.py`) and the run match the config as
written; Axolotl isolates packed examples under sdpa too (a block-diagonal mask from the restarting
position_ids). Applied when the Plan is built (`preflight.prepare`), before anything reads the config.
"""

from __future__ import annotations

from ..facts.attention import FIX, AttentionSource
from ..facts.machine import Machine

FLASH_ATTENTION = ("flash_attention_2", "flash_attention_3", "flash_attention_4")
SDPA = "sdpa"
AUTO = "auto"  # shown for a key the config leaves to Axolotl
PACKING_NOTE = ("Axolotl isolates packed examples under sdpa too "
                "(attn_decontaminates_packing: block-diagonal mask from the restarting position_ids)")
BATCHING_REASON = ("keeps the pod's batching under sdpa: one packed bin of micro_batch_size x "
                   "sequence_len tokens per micro batch, as flash attention gets (Axolotl's default "
                   "for sdpa is micro_batch_size bins of sequence_len)")


def asks_for_flash(cfg: dict) -> bool:
    return cfg.get("attn_implementation") in FLASH_ATTENTION or bool(cfg.get("flash_attention"))


def sdpa_instead(cfg: dict, why: str) -> list[dict]:
    """Turn `cfg`'s flash attention into sdpa in place, keeping its batching; every change made, as
    {"key", "from", "to", "reason"} ("to" None: removed). Nothing when it asks for no flash attention."""
    changes: list[dict] = []
    if cfg.get("attn_implementation") in FLASH_ATTENTION:
        changes.append({"key": "attn_implementation", "from": cfg["attn_implementation"], "to": SDPA,
                        "reason": f"{why}; {PACKING_NOTE}"})
        cfg["attn_implementation"] = SDPA
    if cfg.get("flash_attention"):   # Axolotl's deprecated boolean
        changes.append({"key": "flash_attention", "from": cfg["flash_attention"], "to": None, "reason": f"{why} (sdpa instead)"})
        cfg.pop("flash_attention")
        cfg.setdefault("attn_implementation", SDPA)
    if changes and cfg.get("sample_packing") and cfg.get("multipack_real_batches") is None:
        changes.append({"key": "multipack_real_batches", "from": AUTO, "to": False, "reason": BATCHING_REASON})
        cfg["multipack_real_batches"] = False
    return changes


def machine_fallback(cfg: dict, machine: Machine | None, source: AttentionSource | None) -> list[dict]:
    """On a CUDA machine with no flash-attention source, sdpa instead (in place); else nothing."""
    if machine is None or machine.kind != "cuda" or source is None or source.available or not asks_for_flash(cfg):
        return []
    return sdpa_instead(cfg, f"no flash-attention source on this machine ({source.detail})")


def describe(changes: list[dict]) -> str:
    """One console line for a machine fallback: what changed, why, and the fix."""
    parts = [f"{c['key']}: {c['from']!r} -> {'(removed)' if c['to'] is None else repr(c['to'])}" for c in changes]
    reason = changes[0]["reason"].split("; " + PACKING_NOTE)[0].removesuffix(" (sdpa instead)") if changes else ""
    return f"attention fallback: {', '.join(parts)}: {reason}; fix: {FIX}"
