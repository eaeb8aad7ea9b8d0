"""Peak GPU memory of an Axolotl LoRA/QLoRA config on a target, before renting the GPU.

The model follows what Axolotl 0.19 + transformers 5.16 + PEFT 0.20 + bitsandbytes 0.50 keep on
the device at the moment of the peak (the backward pass of the first micro-batch). docs/memory.md
derives every term and names the published measurements tests/test_memory.py checks it against.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EnvironmentProblem
from ..facts.gpus import KNOWN_GPUS, GpuSpec, resolve_target, spec_for_device  # noqa: F401 - re-exported API
from ..findings import Check

GIB = 2**30
CLOSE_FRACTION = 0.90          # above 90% of capacity a longer batch or eval spike can still OOM
LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Optimizer state bytes per trainable parameter (persistent between steps).
# 8-bit bitsandbytes states: 1 byte per value plus one fp32 absmax per 256-value block.
_BNB8 = 1 + 4 / 256
OPTIMIZER_STATE_BYTES = {
    "adamw_torch": 8, "adamw_torch_fused": 8, "adamw_hf": 8, "adamw_apex_fused": 8, "adamw_torch_xla": 8,
    "adamw_torch_npu_fused": 8, "adamw_anyprecision": 8, "adamw_bnb_32bit": 8, "paged_adamw_32bit": 8,
    "adamw_32bit": 8, "adam": 8, "adamw": 8,
    "adamw_bnb_8bit": 2 * _BNB8, "adamw_8bit": 2 * _BNB8, "paged_adamw_8bit": 2 * _BNB8, "adam_8bit": 2 * _BNB8,
    "adamw_torch_8bit": 2 * _BNB8,  # torchao AdamW8bit: 8-bit states, one fp32 scale per 256-value block
    "lion_32bit": 4, "paged_lion_32bit": 4, "lion_8bit": _BNB8, "paged_lion_8bit": _BNB8,
    "ademamix": 12, "paged_ademamix_32bit": 12, "ademamix_8bit": 3 * _BNB8, "paged_ademamix_8bit": 3 * _BNB8,
    "rmsprop": 4, "rmsprop_bnb": 4, "rmsprop_bnb_32bit": 4, "rmsprop_bnb_8bit": _BNB8, "adagrad": 4,
    "sgd": 0,  # HF's SGD has momentum 0: no state
    "schedule_free_adamw": 8, "schedule_free_sgd": 4,
}
FACTORED = {"adafactor"}       # second moment stored as row + column vectors; no first moment
PAGED = re.compile(r"^paged_")

ATTENTION_FLASH = {"flash_attention_2", "flash_attention_3", "flash_attention_4", "flex_attention", "xformers",
                   "sage", "sage_attention", "kernels-community/flash-attn", "kernels-community/flash-attn3"}


@dataclass(frozen=True)
class Assumptions:
    """Implementation details the estimate follows; the defaults describe Axolotl 0.19."""

    # PEFT's prepare_model_for_kbit_training upcasts embeddings, norms and lm_head to fp32; Axolotl
    # casts them back to bf16 (axolotl/loaders/model.py, _configure_embedding_dtypes). A plain
    # HF + PEFT script keeps them fp32, and with them an fp32 residual stream.
    embeddings_fp32: bool = False
    # Loss peak per token per vocabulary entry (transformers 5 ForCausalLMLoss): bf16 logits 2 +
    # fp32 upcast 4 + log-softmax output 4 in forward; in backward the saved log-softmax 4, its
    # incoming gradient 4 and the gradient it returns 4 are alive together: 12.
    logits_bytes: float = 12.0
    # CUDA context, cuBLAS workspace and kernel images: not counted by torch.cuda.memory_allocated
    # but taken from the board (~0.3-0.6 GiB with lazy module loading, CUDA 12).
    cuda_context_gib: float = 0.6
    # Caching-allocator overhead on the memory that changes size every step (activations,
    # logits): blocks rounded up and split, reserved but unused.
    fragmentation: float = 0.10


@dataclass(frozen=True)
class Setup:
    """What the estimate reads from the config."""

    sequence_len: int
    micro_batch_size: int
    gradient_accumulation_steps: int
    adapter: str | None           # "lora", "qlora" or None (full fine-tune)
    quant_bits: int               # 4, 8 or 16
    double_quant: bool
    lora_r: int
    lora_targets: tuple[str, ...]
    lora_dropout: float
    modules_to_save: tuple[str, ...]
    lora_dtype_bytes: int
    optimizer: str
    gradient_checkpointing: bool
    checkpoint_offload: bool
    attention: str                # "flash" (no seq^2 memory), "sdpa", "math" (sdpa without a fused kernel), "eager"
    act_bytes: int                # activation dtype: 2 for bf16/fp16, 4 for fp32
    fused_loss: bool              # Cut Cross Entropy / Liger fused linear CE: logits never materialized

    @property
    def tokens(self) -> int:
        return self.sequence_len * self.micro_batch_size

    def describe(self) -> str:
        quant = {4: "4-bit NF4" + (" + double quant" if self.double_quant else ""), 8: "8-bit", 16: "16-bit"}[self.quant_bits]
        lora = (f"LoRA r{self.lora_r} on {','.join(t.replace('_proj', '') for t in self.lora_targets) or 'nothing'}"
                if self.adapter else "full fine-tune")
        gc = "offloaded" if self.checkpoint_offload else ("on" if self.gradient_checkpointing else "off")
        return (f"seq {self.sequence_len} x micro batch {self.micro_batch_size}, {quant}, {lora}, "
                f"{self.optimizer}, gradient checkpointing {gc}, attention {self.attention}")


# ----------------------------------------------------------------------------- reading the config

def _attention(cfg: dict, gpu: GpuSpec) -> str:
    implementation = str(cfg.get("attn_implementation") or "")
    if not implementation:
        if cfg.get("flash_attention"):
            implementation = "flash_attention_2"
        elif cfg.get("xformers_attention") or cfg.get("flex_attention"):
            implementation = "xformers"
        elif cfg.get("eager_attention"):
            implementation = "eager"
        else:
            implementation = "sdpa"  # transformers 5's default
    if implementation in ATTENTION_FLASH or "flash" in implementation:
        return "flash"
    if implementation == "eager":
        return "eager"
    # SDPA: CUDA's memory-efficient kernel and the CPU flash kernel keep no seq^2 tensor; on MPS
    # training falls back to the math path, which materializes the attention probabilities.
    return "math" if gpu.kind == "mps" else "sdpa"


def _targets(cfg: dict, facts) -> tuple[str, ...]:
    known = tuple(sorted(facts.linear_modules - {"lm_head"}, key=LLAMA_LINEAR.index)) if facts.linear_modules else LLAMA_LINEAR
    raw = cfg.get("lora_target_modules") or []
    if isinstance(raw, str):
        raw = list(known) if raw == "all-linear" else [m for m in known + ("lm_head",) if re.search(raw, m)]
    chosen = {str(m).split(".")[-1] for m in raw}
    if cfg.get("lora_target_linear"):
        chosen |= set(known)
    ordered = [m for m in known + ("lm_head",) if m in chosen]
    return tuple(ordered)


def read_setup(cfg: dict, facts, gpu: GpuSpec) -> Setup:
    adapter = cfg.get("adapter") or None
    if cfg.get("load_in_4bit") or adapter == "qlora":
        quant = 4
    elif cfg.get("load_in_8bit"):
        quant = 8
    else:
        quant = 16
    bnb = cfg.get("bnb_config_kwargs") or {}
    bf16 = cfg.get("bf16")
    half = bf16 is True or cfg.get("fp16") is True or (bf16 == "auto" and gpu.bf16)
    plugins = " ".join(str(p) for p in cfg.get("plugins") or []).lower()
    # each flag does something only with its Axolotl plugin listed
    fused = ((bool(cfg.get("cut_cross_entropy")) and "cut_cross_entropy" in plugins)
             or (bool(cfg.get("liger_fused_linear_cross_entropy")) and "liger" in plugins))
    checkpointing = cfg.get("gradient_checkpointing")
    offload = isinstance(checkpointing, str) and checkpointing.startswith("offload")
    autocast_adapter = cfg.get("peft_autocast_adapter_dtype")
    return Setup(
        sequence_len=int(cfg.get("sequence_len") or 2048),
        micro_batch_size=int(cfg.get("micro_batch_size") or 1),
        gradient_accumulation_steps=int(cfg.get("gradient_accumulation_steps") or 1),
        adapter=adapter,
        quant_bits=quant,
        double_quant=bool(bnb.get("bnb_4bit_use_double_quant", True)),  # Axolotl's default is True
        lora_r=int(cfg.get("lora_r") or 8) if adapter else 0,
        lora_targets=_targets(cfg, facts) if adapter else (),
        lora_dropout=float(cfg.get("lora_dropout") or 0.0),
        modules_to_save=tuple(str(m) for m in cfg.get("lora_modules_to_save") or []) if adapter else (),
        # PEFT keeps adapters in fp32 under a 16-bit base unless told otherwise
        lora_dtype_bytes=2 if autocast_adapter is False else 4,
        optimizer=str(cfg.get("optimizer") or "adamw_torch_fused"),
        gradient_checkpointing=bool(checkpointing),
        checkpoint_offload=offload,
        attention=_attention(cfg, gpu),
        act_bytes=2 if half else 4,
        fused_loss=fused,
    )


# ----------------------------------------------------------------------------- parameter counts

def linear_shapes(facts) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of each decoder-layer linear, GQA k/v included."""
    h, i = facts.hidden_size, facts.intermediate_size
    q = facts.num_attention_heads * facts.head_dim
    kv = facts.num_key_value_heads * facts.head_dim
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def parameter_counts(facts) -> dict[str, int]:
    shapes = linear_shapes(facts)
    layers = facts.num_hidden_layers
    linear = layers * sum(a * b for a, b in shapes.values())
    embed = facts.vocab_size * facts.hidden_size
    head = 0 if facts.tie_word_embeddings else embed
    norms = (2 * layers + 1) * facts.hidden_size
    return {"linear": linear, "embed": embed, "lm_head": head, "norms": norms,
            "total": linear + embed + head + norms}


def base_weight_bytes(facts, quant_bits: int, double_quant: bool = True, embeddings_fp32: bool = False) -> dict[str, float]:
    """Bytes of the frozen base: packed quantized linears, their constants, and the layers kept 16-bit.

    bitsandbytes NF4 packs two weights per byte and keeps one absmax per 64-weight block: fp32
    (0.5 bit/weight), or with double quantization an 8-bit absmax plus one fp32 constant per 256
    blocks (0.127 bit/weight; QLoRA paper section 3). Embeddings, lm_head and norms are not
    quantized (transformers skips the output embedding, nn.Embedding is not a Linear).
    """
    counts = parameter_counts(facts)
    linear = counts["linear"]
    kept = counts["embed"] + counts["lm_head"] + counts["norms"]
    if quant_bits == 4:
        packed = linear * 0.5
        constants = linear / 64 * (1 + 4 / 256) if double_quant else linear / 64 * 4
    elif quant_bits == 8:
        # LLM.int8: one int8 per weight and an fp32 scale per output row
        packed = linear * 1.0
        constants = facts.num_hidden_layers * 4 * sum(out for _, out in linear_shapes(facts).values())
    else:
        packed, constants = linear * 2.0, 0.0
    return {"packed": packed, "constants": constants, "kept_16bit": kept * (4 if embeddings_fp32 else 2)}


def trainable_matrices(facts, setup: Setup) -> list[tuple[int, int, int, int]]:
    """(rows, cols, count, bytes per value) of every trainable matrix."""
    if setup.adapter is None:
        shapes = linear_shapes(facts)
        matrices = [(o, i, facts.num_hidden_layers, 2) for i, o in shapes.values()]
        matrices.append((facts.vocab_size, facts.hidden_size, 1 if facts.tie_word_embeddings else 2, 2))
        return matrices
    shapes = dict(linear_shapes(facts), lm_head=(facts.hidden_size, facts.vocab_size))
    matrices = []
    for name in setup.lora_targets:
        fan_in, fan_out = shapes[name]
        count = 1 if name == "lm_head" else facts.num_hidden_layers
        matrices.append((setup.lora_r, fan_in, count, setup.lora_dtype_bytes))   # lora_A
        matrices.append((fan_out, setup.lora_r, count, setup.lora_dtype_bytes))  # lora_B
    for name in setup.modules_to_save:
        if name in ("embed_tokens", "lm_head"):
            # PEFT trains a copy of the module in the base's 16-bit dtype
            matrices.append((facts.vocab_size, facts.hidden_size, 1, 2))
    return matrices


def optimizer_state_bytes(optimizer: str, matrices: list[tuple[int, int, int, int]]) -> tuple[float, str]:
    name = optimizer.lower()
    if name in FACTORED:
        return sum(4 * (rows + cols) * count for rows, cols, count, _ in matrices), ""
    per_param = OPTIMIZER_STATE_BYTES.get(name)
    note = ""
    if per_param is None:
        per_param = 8
        note = f"optimizer {optimizer!r} is not in the table: assumed AdamW's 8 bytes per trainable parameter"
    return sum(rows * cols * count for rows, cols, count, _ in matrices) * per_param, note


# ----------------------------------------------------------------------------- activations

def _saves_input(setup: Setup, module: str) -> bool:
    """Does autograd keep this linear's input? bitsandbytes' matmul always does, a trainable
    weight needs it, and a LoRA branch without dropout keeps the same tensor for lora_A."""
    if setup.quant_bits in (4, 8) or setup.adapter is None:
        return True
    return module in setup.lora_targets and setup.lora_dropout == 0


def _lora_extra(setup: Setup, module: str, fan_in: int) -> float:
    """Per token: dropout output + its 1-byte mask for lora_A, and lora_A's r-wide output for lora_B."""
    if module not in setup.lora_targets:
        return 0.0
    extra = setup.act_bytes * setup.lora_r
    if setup.lora_dropout > 0:
        extra += (setup.act_bytes + 1) * fan_in
    return extra


def layer_activation_bytes(facts, setup: Setup, stream_bytes: int) -> dict[str, float]:
    """Bytes one decoder layer keeps for backward, per token of the micro-batch.

    Terms (h hidden, i intermediate, q/kv projection widths, a heads, s sequence length):
      2 RMSNorms: each keeps its fp32 upcast input, 4h
      attention input (shared by q/k/v) and MLP input (shared by gate/up): h each, when saved
      attention: q, k, v and the output; SDPA/eager expand GQA k/v to q's width (repeat_kv),
        flash kernels take GQA natively; eager also keeps fp32 softmax probabilities and their
        bf16 copy, (4 + 2) a s
      SwiGLU MLP: gate out, SiLU out, up out (3i), and the product when down_proj saves its input
      LoRA: per adapted module its dropout copy + mask and lora_A's output
    `transient` is what the backward of one layer allocates on top (gradients of the MLP
    intermediates; for eager the gradient of the probabilities).
    """
    shapes = linear_shapes(facts)
    act = setup.act_bytes
    h, i = facts.hidden_size, facts.intermediate_size
    q = facts.num_attention_heads * facts.head_dim
    kv = facts.num_key_value_heads * facts.head_dim
    s, heads = setup.sequence_len, facts.num_attention_heads

    kv_kept = kv if setup.attention == "flash" else q
    saved = {
        "norms": 2 * 4 * h,
        "attention_input": stream_bytes * h if any(_saves_input(setup, m) for m in ("q_proj", "k_proj", "v_proj")) else 0,
        "qkv_and_output": act * (q + 2 * kv_kept + q),
        "mlp_input": stream_bytes * h if any(_saves_input(setup, m) for m in ("gate_proj", "up_proj")) else 0,
        "mlp_intermediates": act * (3 * i + (i if _saves_input(setup, "down_proj") else 0)),
        "lora": sum(_lora_extra(setup, m, shapes[m][0]) for m in LLAMA_LINEAR),
        "attention_scores": 0.0,
    }
    transient = act * 3 * i
    if setup.attention == "eager":
        saved["attention_scores"] = (4 + act) * heads * s
        transient += (4 + act) * heads * s
    elif setup.attention == "math":
        saved["attention_scores"] = 2 * act * heads * s
        transient += act * heads * s
    saved["transient"] = transient
    return saved


@dataclass
class Breakdown:
    parts: dict[str, float]       # bytes
    load_peak: float              # bytes while loading (fp32 upcast before Axolotl casts back)
    notes: list[str]


def breakdown(cfg: dict, facts, gpu: GpuSpec, assumptions: Assumptions) -> tuple[Breakdown, Setup]:
    setup = read_setup(cfg, facts, gpu)
    notes: list[str] = []
    if not facts.linear_modules:
        notes.append(f"model_type {facts.model_type!r}: layers assumed Llama-style (GQA attention, SwiGLU MLP)")
    weights = base_weight_bytes(facts, setup.quant_bits, setup.double_quant, assumptions.embeddings_fp32)
    if setup.adapter is None:
        weights = base_weight_bytes(facts, 16)
        if setup.quant_bits != 16:
            notes.append("a quantized base cannot be fully fine-tuned; estimated as 16-bit full fine-tuning")
    matrices = trainable_matrices(facts, setup)
    trainable_bytes = sum(r * c * n * b for r, c, n, b in matrices)
    lora_weights = trainable_bytes if setup.adapter else 0.0
    grads = trainable_bytes  # gradients take the parameters' dtype (fp32 LoRA -> fp32 grads)
    optimizer, note = optimizer_state_bytes(setup.optimizer, matrices)
    if note:
        notes.append(note)
    if PAGED.match(setup.optimizer.lower()):
        notes.append(f"{setup.optimizer} can page its states to CPU RAM under pressure; counted on the GPU here")

    stream = 4 if assumptions.embeddings_fp32 else setup.act_bytes
    layer = layer_activation_bytes(facts, setup, stream)
    per_layer = sum(v for k, v in layer.items() if k != "transient")
    tokens = setup.tokens
    layers = facts.num_hidden_layers
    h = facts.hidden_size
    # final norm input (fp32) and lm_head's input
    head_inputs = (4 + setup.act_bytes) * h * tokens
    if setup.gradient_checkpointing:
        kept_layers = 0 if setup.checkpoint_offload else layers * stream * h * tokens
        activations = kept_layers + (per_layer + layer["transient"]) * tokens + head_inputs
    else:
        activations = (layers * per_layer + layer["transient"]) * tokens + head_inputs
    if setup.attention != "flash":
        # the 4-D boolean (SDPA) or additive (eager) mask, built once per forward
        activations += setup.micro_batch_size * setup.sequence_len ** 2 * (1 if setup.attention != "eager" else setup.act_bytes)
    logits = 0.0 if setup.fused_loss else assumptions.logits_bytes * tokens * facts.vocab_size
    if setup.fused_loss:
        notes.append("fused linear cross entropy: logits are never materialized")

    shapes = linear_shapes(facts)
    largest = max(a * b for a, b in shapes.values())
    # bitsandbytes dequantizes one weight at a time to a 16-bit temporary (forward and backward)
    workspace = 2 * largest * 2 if setup.quant_bits in (4, 8) else 0.0
    context = assumptions.cuda_context_gib * GIB if gpu.kind == "cuda" else (0.3 * GIB if gpu.kind == "mps" else 0.0)
    dynamic = activations + logits + workspace
    if setup.adapter is None or setup.quant_bits == 16:
        quantized, unquantized = 0.0, weights["packed"] + weights["kept_16bit"]
    else:
        quantized, unquantized = weights["packed"] + weights["constants"], weights["kept_16bit"]
    parts = {
        "quantized_weights": quantized,
        "unquantized_weights": unquantized,
        "lora_weights": lora_weights,
        "gradients": grads,
        "optimizer_states": optimizer,
        "activations": activations,
        "logits": logits,
        "workspace": workspace,
        "allocator_overhead": assumptions.fragmentation * dynamic,
        "cuda_context": context,
    }
    load_peak = 0.0
    if setup.quant_bits in (4, 8) and setup.adapter:
        # prepare_model_for_kbit_training upcasts the 16-bit layers to fp32 before Axolotl casts back
        upcast = base_weight_bytes(facts, setup.quant_bits, setup.double_quant, embeddings_fp32=True)
        load_peak = upcast["packed"] + upcast["constants"] + upcast["kept_16bit"] + context
    return Breakdown(parts, load_peak, notes), setup


# ----------------------------------------------------------------------------- the estimate

PART_LABELS = {
    "quantized_weights": "base weights, quantized (incl. constants)",
    "unquantized_weights": "base weights kept 16-bit (embeddings, lm_head, norms)",
    "lora_weights": "trainable weights (LoRA adapters)",
    "gradients": "gradients of trainable weights",
    "optimizer_states": "optimizer states",
    "activations": "activations kept for backward",
    "logits": "logits + cross-entropy (peak)",
    "workspace": "dequantization buffers",
    "allocator_overhead": "allocator fragmentation",
    "cuda_context": "CUDA context and libraries",
}


@dataclass
class MemoryEstimate:
    model: str
    gpu: GpuSpec
    setup: Setup
    parts: dict[str, float]            # GiB
    capacity_gib: float
    load_peak_gib: float = 0.0
    advice: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def total_gib(self) -> float:
        return max(sum(self.parts.values()), self.load_peak_gib)

    @property
    def verdict(self) -> str:
        if self.total_gib > self.capacity_gib:
            return "does-not-fit"
        if self.total_gib > CLOSE_FRACTION * self.capacity_gib:
            return "close"
        return "fits"

    def summary(self) -> str:
        relation = {"fits": "<=", "close": "<=", "does-not-fit": ">"}[self.verdict]
        return (f"estimated {self.total_gib:.1f} GiB {relation} {self.capacity_gib:.1f} GiB on {self.gpu.name}: "
                f"{self.verdict}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "target": self.gpu.name, "capacity_gib": round(self.capacity_gib, 2),
            "total_gib": round(self.total_gib, 2), "verdict": self.verdict,
            "parts": {k: round(v, 3) for k, v in self.parts.items()},
            "load_peak_gib": round(self.load_peak_gib, 2), "settings": asdict(self.setup),
            "advice": self.advice, "notes": self.notes,
        }

    def label(self, key: str) -> str:
        if key == "unquantized_weights" and self.parts.get("quantized_weights", 0) == 0:
            return "base weights, 16-bit"
        if key == "cuda_context" and self.gpu.kind == "mps":
            return "Metal/MPS runtime"
        return PART_LABELS.get(key, key)

    def renderable(self):
        """The breakdown table and its verdict, for the console."""
        from rich.console import Group
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"peak GPU memory: {self.model} on {self.gpu.name}", title_justify="left")
        table.add_column("part")
        table.add_column("GiB", justify="right")
        for key, value in self.parts.items():
            if value >= 0.005:
                table.add_row(self.label(key), f"{value:.2f}")
        table.add_section()
        table.add_row("total (peak)", f"{self.total_gib:.2f}")
        table.add_row(f"capacity ({self.gpu.name})", f"{self.capacity_gib:.2f}")
        style = {"fits": "green", "close": "yellow", "does-not-fit": "red"}[self.verdict]
        lines = [table, f"settings: {escape(self.setup.describe())}", f"[{style}]{escape(self.summary())}[/{style}]"]
        lines += [f"note: {escape(note)}" for note in self.notes]
        lines += [f"try: {escape(line)}" for line in self.advice]
        return Group(*lines)


def estimate(axolotl_cfg: dict, facts, gpu: GpuSpec, assumptions: Assumptions | None = None,
             with_advice: bool = True) -> MemoryEstimate:
    assumptions = assumptions or Assumptions()
    result, setup = breakdown(axolotl_cfg, facts, gpu, assumptions)
    capacity = gpu.capacity_gib
    notes = list(result.notes)
    if result.load_peak > sum(result.parts.values()):
        notes.append("loading is the peak: the 16-bit layers are upcast to fp32 before Axolotl casts them back")
    if gpu.note:
        notes.append(gpu.note)
    est = MemoryEstimate(model=facts.name, gpu=gpu, setup=setup,
                         parts={k: v / GIB for k, v in result.parts.items()},
                         capacity_gib=capacity, load_peak_gib=result.load_peak / GIB, notes=notes)
    if with_advice and est.verdict != "fits":
        est.advice = advise(axolotl_cfg, facts, gpu, assumptions)
    return est


def _total(cfg: dict, facts, gpu: GpuSpec, assumptions: Assumptions) -> float:
    return estimate(cfg, facts, gpu, assumptions, with_advice=False).total_gib


def _with(cfg: dict, **changes: Any) -> dict:
    merged = dict(cfg)
    merged.update(changes)
    return merged


def _sets(changes: dict) -> str:
    return " ".join(f"--set {k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in changes.items())


def _largest_fitting_sequence(cfg: dict, facts, gpu: GpuSpec, assumptions: Assumptions, limit: float) -> int | None:
    """Longest sequence_len (a multiple of 256) whose estimate stays under `limit` GiB."""
    low, high = 0, int(cfg.get("sequence_len") or 2048) // 256
    while low < high:
        middle = (low + high + 1) // 2
        if _total(_with(cfg, sequence_len=middle * 256), facts, gpu, assumptions) <= limit:
            low = middle
        else:
            high = middle - 1
    return low * 256 if low else None


def advise(cfg: dict, facts, gpu: GpuSpec, assumptions: Assumptions | None = None) -> list[str]:
    """Concrete --set changes that bring the estimate under 90% of capacity, cheapest first."""
    assumptions = assumptions or Assumptions()
    setup = read_setup(cfg, facts, gpu)
    limit = CLOSE_FRACTION * gpu.capacity_gib
    knobs: list[dict] = []
    if not setup.gradient_checkpointing:
        knobs.append({"gradient_checkpointing": True})
    if OPTIMIZER_STATE_BYTES.get(setup.optimizer, 8) >= 8 and gpu.kind == "cuda" and setup.optimizer not in FACTORED:
        knobs.append({"optimizer": "adamw_bnb_8bit"})
    if setup.quant_bits == 16 and setup.adapter == "lora" and gpu.bnb_4bit:
        knobs.append({"adapter": "qlora", "load_in_4bit": True})
    if setup.attention in ("eager", "math") and gpu.flash_attention:
        knobs.append({"attn_implementation": "flash_attention_2"})
    elif setup.attention == "eager":
        knobs.append({"attn_implementation": "sdpa"})
    if setup.micro_batch_size > 1:
        accumulation = setup.gradient_accumulation_steps * setup.micro_batch_size
        knobs.append({"micro_batch_size": 1, "gradient_accumulation_steps": accumulation})

    advice = []
    for changes in knobs:
        total = _total(_with(cfg, **changes), facts, gpu, assumptions)
        if total <= limit:
            advice.append(f"{_sets(changes)} (est. {total:.1f} GiB)")
    combined: dict = {}
    for changes in knobs:
        combined.update(changes)
    sequence = _largest_fitting_sequence(cfg, facts, gpu, assumptions, limit)
    if sequence:
        total = _total(_with(cfg, sequence_len=sequence), facts, gpu, assumptions)
        advice.append(f"--set sequence_len={sequence} (est. {total:.1f} GiB)")
    elif combined:
        relaxed = _with(cfg, **combined)
        sequence = _largest_fitting_sequence(relaxed, facts, gpu, assumptions, limit)
        if sequence:
            total = _total(_with(relaxed, sequence_len=sequence), facts, gpu, assumptions)
            advice.append(f"{_sets(combined)} --set sequence_len={sequence} (est. {total:.1f} GiB)")
    if not advice:
        floor = _with(cfg, **combined, sequence_len=256)
        total = _total(floor, facts, gpu, assumptions)
        advice.append(f"even at sequence_len 256 with every saving on, this needs {total:.1f} GiB: use a larger GPU "
                      f"(--target a100-80 or h100) or a smaller base model")
    return advice


# ----------------------------------------------------------------------------- verdict

def fit_check(est: MemoryEstimate, source: str) -> Check:
    """The estimate as a check: an error when it cannot fit, a warning when it is close."""
    if est.verdict == "does-not-fit":
        return Check("memory", False, "error", f"{source}: estimated {est.total_gib:.1f} GiB > {est.capacity_gib:.1f} GiB "
                     f"on {est.gpu.name}", est.advice[0] if est.advice else "use a larger GPU")
    if est.verdict == "close":
        return Check("memory", False, "warning", f"{source}: estimated {est.total_gib:.1f} GiB is above "
                     f"{CLOSE_FRACTION:.0%} of {est.capacity_gib:.1f} GiB on {est.gpu.name}",
                     f"to gain headroom: {est.advice[0]}" if est.advice else "")
    return Check("memory", True, "error", f"{source}: {est.summary()}")


def raise_unless_fits(check: Check) -> None:
    """EnvironmentProblem (exit 5) when the memory check failed: `where: what; try: fix`."""
    if check.failed_error:
        raise EnvironmentProblem(f"{check.detail}; try: {check.fix}")


# ----------------------------------------------------------------------------- disk

TOKENIZER_BYTES_PER_ENTRY = 80   # tokenizer.json + vocab/merges: ~76 B per entry for Qwen2.5, ~72 for Mistral
TRAINER_STATE_BYTES = 200 * 1024  # scheduler.pt, rng_state.pth, trainer_state.json, training_args.bin


def estimate_checkpoint_disk(axolotl_cfg: dict, facts) -> int:
    """Bytes the run's checkpoints and the final adapter take on disk at most."""
    setup = read_setup(axolotl_cfg, facts, KNOWN_GPUS["h100"])
    matrices = trainable_matrices(facts, setup)
    weights = sum(r * c * n * b for r, c, n, b in matrices)  # safetensors in the parameters' dtype
    optimizer, _ = optimizer_state_bytes(setup.optimizer, matrices)
    tokenizer = TOKENIZER_BYTES_PER_ENTRY * facts.vocab_size
    per_checkpoint = weights + optimizer + TRAINER_STATE_BYTES + tokenizer
    if str(axolotl_cfg.get("save_strategy") or "steps") == "no":
        kept = 0
    elif axolotl_cfg.get("save_total_limit"):
        kept = int(axolotl_cfg["save_total_limit"])
    else:
        steps, every = axolotl_cfg.get("max_steps"), axolotl_cfg.get("save_steps")
        kept = math.ceil(int(steps) / int(every)) if steps and every and isinstance(every, int) else 1
    final = weights + tokenizer + TRAINER_STATE_BYTES
    return int(kept * per_checkpoint + final)


# ----------------------------------------------------------------------------- throughput

# Utilization of peak bf16 FLOP/s that 4-bit QLoRA reaches, as a function of tokens per
# micro-batch: small micro-batches leave the tensor cores idle. Calibrated on the only published
# table of QLoRA step times by sequence length we found: QwenLM/Qwen README, "Profiling of Memory
# and Speed" (Qwen-7B Q-LoRA, 1x A100-SXM4-80G, batch 1, flash attention 2, gradient
# checkpointing): 3.0 s/it at 512 tokens, 7.0 at 2048, 22.3 at 8192 (8 micro-batches per it).
# With the FLOP and dequantization model below those give 0.29, 0.50 and 0.72 (see docs/memory.md).
MFU_MAX = 0.80
MFU_HALF_TOKENS = 900
DEQUANT_BYTES_PER_WEIGHT = 4.5   # read 0.5 packed, write 2 bf16, matmul reads 2 back


def default_mfu(tokens_per_micro_batch: int) -> float:
    return MFU_MAX * tokens_per_micro_batch / (tokens_per_micro_batch + MFU_HALF_TOKENS)


def flops_per_token(facts, axolotl_cfg: dict) -> float:
    """Model FLOPs per trained token: 6N (Kaplan et al. 2020), 8N when gradient checkpointing
    recomputes the forward, plus attention's 12·L·s·d (PaLM, Chowdhery et al. 2022, appendix B;
    x4/3 with recompute). N counts the matmul weights (decoder linears + lm_head)."""
    counts = parameter_counts(facts)
    n = counts["linear"] + facts.vocab_size * facts.hidden_size
    checkpointing = bool(axolotl_cfg.get("gradient_checkpointing"))
    sequence = int(axolotl_cfg.get("sequence_len") or 2048)
    width = facts.num_attention_heads * facts.head_dim
    attention = 12 * facts.num_hidden_layers * sequence * width * (4 / 3 if checkpointing else 1)
    return (8 if checkpointing else 6) * n + attention


def estimate_tokens_per_second(facts, gpu: GpuSpec, axolotl_cfg: dict, mfu: float | None = None) -> float:
    """Training tokens per second: compute time at `mfu` of peak plus the time bitsandbytes spends
    dequantizing every 4-bit weight (memory-bound) in forward, backward and the recompute.
    mfu None: default_mfu(tokens per micro-batch), calibrated as described above."""
    if gpu.peak_bf16_tflops <= 0:
        raise ValueError(f"no peak TFLOP/s known for {gpu.name}; cannot estimate throughput")
    tokens = int(axolotl_cfg.get("sequence_len") or 2048) * int(axolotl_cfg.get("micro_batch_size") or 1)
    utilization = default_mfu(tokens) if mfu is None else mfu
    compute_s = flops_per_token(facts, axolotl_cfg) * tokens / (gpu.peak_bf16_tflops * 1e12 * utilization)
    dequant_s = 0.0
    if axolotl_cfg.get("load_in_4bit") or axolotl_cfg.get("adapter") == "qlora" or axolotl_cfg.get("load_in_8bit"):
        passes = 3 if axolotl_cfg.get("gradient_checkpointing") else 2
        bandwidth = (gpu.memory_bandwidth_gbs or 1000) * 1e9
        dequant_s = parameter_counts(facts)["linear"] * DEQUANT_BYTES_PER_WEIGHT * passes / bandwidth
    return tokens / (compute_s + dequant_s)


__all__ = [
    "Assumptions", "GpuSpec", "KNOWN_GPUS", "MemoryEstimate", "Setup", "advise", "base_weight_bytes",
    "estimate", "fit_check", "raise_unless_fits", "estimate_checkpoint_disk", "estimate_tokens_per_second",
    "flops_per_token", "parameter_counts", "read_setup", "resolve_target", "spec_for_device",
]
