"""Peak GPU memory of an Axolotl LoRA/QLoRA config on a target, before renting the GPU.

The model follows what Axolotl 0.19 + transformers 5.16 + PEFT 0.20 + bitsandbytes 0.50 keep on
the device at the moment of the peak (the backward pass of the first micro-batch). docs/memory.md
derives every term and names the published measurements tests/test_memory.py checks it against.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import EnvironmentProblem
from ..facts.cuda_context import Context, cuda_context
from ..facts.gpus import KNOWN_GPUS, GpuSpec
from ..findings import Check
from ..training_shape import TrainingShape

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
    # CUDA context, library handles and kernel images: not counted by torch.cuda.memory_allocated
    # but taken from the board. None: from facts/cuda_context.py, by GPU generation and
    # CUDA major; a number overrides it (and counts as measured).
    cuda_context_gib: float | None = None
    # Reserved beyond allocated at the training peak, as a share of the memory that changes size
    # every step (activations, logits, buffers): the caching allocator keeps the freed blocks of the
    # loss chain's different sizes (2, 4, 4 bytes x tokens x vocabulary) reserved for the next
    # micro-batch. Measured on the second GPU run (docs/measurements/, reserved minus allocated at
    # the training peak over the allocated transient): see TRAINING_OVERHEAD_MEASURED; the largest is kept.
    allocator_overhead: float = 0.31


# case: (measured reserved - allocated at the training peak) / (allocated peak - estimated weights
# and states at rest), H200, CUDA 13, expandable_segments, 4 layers; tests/test_memory.py recomputes them.
TRAINING_OVERHEAD_MEASURED = {"a5000 (512 tokens)": 0.205, "a5000 + packing (2,048 tokens)": 0.308,
                              "h100 config under sdpa (16,384 tokens)": 0.254}


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


# ----------------------------------------------------------------------------- the bound

# The bound: the measured GPU points (the first run in the allocator's view, the second run's
# A5000, packing and M4 cases on the device, and their training peaks) sit within measured/estimated
# 0.95-1.10, the H100 config's long packed rows under sdpa at 0.93; the bound is the top of that band.
# Where the (GPU generation, CUDA major) pair was never measured, the context adds half of itself
# again: published bare contexts alone range from ~300 to ~700 MB (pytorch/pytorch#28113, #20532, #109888).
BOUND_FRACTION = 0.10
UNMEASURED_CONTEXT_FRACTION = 0.5


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
    shape = TrainingShape.of(cfg)
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
        sequence_len=shape.sequence_len,
        micro_batch_size=shape.micro_batch_size,
        gradient_accumulation_steps=shape.gradient_accumulation_steps,
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
    training: dict[str, dict[str, float]]  # bytes at the two peaks of a micro-batch's backward: "loss", "layer"
    load_parts: dict[str, float]  # bytes at the loading peak (empty when loading cannot be the peak)
    context: Context
    notes: list[str]


def load_parts(facts, setup: Setup, context_bytes: float) -> dict[str, float]:
    """What the device holds at the loading peak of a LoRA base, quantized or 16-bit.

    Axolotl 0.19 (loaders/model.py, _configure_embedding_dtypes) casts the norms, embed_tokens and
    lm_head to fp32 one module at a time (before prepare_model_for_kbit_training on a quantized
    base; outside FSDP the cast runs for a 16-bit base too), then back to bf16. While the second
    of them is cast, both fp32 copies and that module's bf16 weight are alive: the decoder's linears
    (quantized, or bf16) + every other layer at 4 B + the largest one at 2 B. The LoRA adapters
    come later. With expandable_segments (the job's PYTORCH_CUDA_ALLOC_CONF) the
    allocator maps that high-water mark in 2 MiB pages and keeps it reserved until Axolotl's
    empty_cache after the adapters load, so the device shows it.
    """
    weights = base_weight_bytes(facts, setup.quant_bits, setup.double_quant, embeddings_fp32=True)
    largest = max(facts.vocab_size * facts.hidden_size, facts.hidden_size)
    linears = "quantized_weights" if setup.quant_bits in (4, 8) else "linear_weights_16bit"
    return {
        linears: weights["packed"] + weights["constants"],
        "upcast_16bit_layers": weights["kept_16bit"],
        "cast_source": 2.0 * largest,
        "cuda_context": context_bytes,
    }


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
        kept = (0 if setup.checkpoint_offload else layers * stream * h * tokens) + head_inputs
        layer_backward = (per_layer + layer["transient"]) * tokens  # the top layer recomputed, then its backward
    else:
        kept = layers * per_layer * tokens + head_inputs
        layer_backward = layer["transient"] * tokens
    if setup.attention != "flash":
        # the 4-D boolean (SDPA) or additive (eager) mask, built once per forward
        kept += setup.micro_batch_size * setup.sequence_len ** 2 * (1 if setup.attention != "eager" else setup.act_bytes)
    logits = 0.0 if setup.fused_loss else assumptions.logits_bytes * tokens * facts.vocab_size
    if setup.fused_loss:
        notes.append("fused linear cross entropy: logits are never materialized")

    shapes = linear_shapes(facts)
    largest = max(a * b for a, b in shapes.values())
    # bitsandbytes dequantizes one weight at a time to a 16-bit temporary (forward and backward)
    workspace = 2 * largest * 2 if setup.quant_bits in (4, 8) else 0.0
    context_figure = cuda_context(gpu, assumptions.cuda_context_gib)
    context = context_figure.gib * GIB
    if setup.adapter is None or setup.quant_bits == 16:
        quantized, unquantized = 0.0, weights["packed"] + weights["kept_16bit"]
    else:
        quantized, unquantized = weights["packed"] + weights["constants"], weights["kept_16bit"]
    at_rest = {
        "quantized_weights": quantized,
        "unquantized_weights": unquantized,
        "lora_weights": lora_weights,
        "gradients": grads,
        "optimizer_states": optimizer,
    }
    # Backward runs the loss first (the logits' cross-entropy chain, then lm_head), frees it, and
    # only then recomputes and differentiates the top decoder layer: the two never overlap, so the
    # training peak is the larger of the two, each on top of what is kept across the whole backward.
    changing = {
        "loss": {"activations": kept, "logits": logits},
        "layer": {"activations": kept, "layer_backward": layer_backward, "workspace": workspace},
    }
    phases = {name: {**at_rest, **moving, "allocator_overhead": assumptions.allocator_overhead * sum(moving.values()),
                     "cuda_context": context}
              for name, moving in changing.items()}
    loading = load_parts(facts, setup, context) if setup.adapter else {}
    return Breakdown(phases, loading, context_figure, notes), setup


# ----------------------------------------------------------------------------- the estimate

PART_LABELS = {
    "quantized_weights": "base weights, quantized (incl. constants)",
    "linear_weights_16bit": "base linears, 16-bit",
    "unquantized_weights": "base weights kept 16-bit (embeddings, lm_head, norms)",
    "upcast_16bit_layers": "embeddings, lm_head, norms upcast to fp32",
    "cast_source": "16-bit copy of the layer being cast",
    "lora_weights": "trainable weights (LoRA adapters)",
    "gradients": "gradients of trainable weights",
    "optimizer_states": "optimizer states",
    "activations": "activations kept across the backward",
    "logits": "logits + cross-entropy (peak)",
    "layer_backward": "one decoder layer's backward (recomputed)",
    "workspace": "dequantization buffers",
    "allocator_overhead": "allocator: reserved beyond allocated",
    "cuda_context": "CUDA context and libraries",
}


@dataclass
class MemoryEstimate:
    model: str
    gpu: GpuSpec
    setup: Setup
    # GiB at each of the backward's two peaks, "loss" and "layer" (see breakdown); the larger is `parts`
    training_phases: dict[str, dict[str, float]]
    capacity_gib: float
    load_parts: dict[str, float] = field(default_factory=dict)  # GiB at the loading peak
    context: Context = field(default_factory=lambda: Context(0.0, True, "no GPU"))
    advice: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def training_peak(self) -> str:
        """Which of the backward's peaks decides training: "loss" or "layer"."""
        return max(self.training_phases, key=lambda name: sum(self.training_phases[name].values()))

    @property
    def parts(self) -> dict[str, float]:
        """GiB at the training peak, by part."""
        return self.training_phases[self.training_peak]

    @property
    def training_gib(self) -> float:
        return sum(self.parts.values())

    @property
    def load_peak_gib(self) -> float:
        return sum(self.load_parts.values())

    @property
    def deciding_phase(self) -> str:
        return "loading" if self.load_peak_gib > self.training_gib else "training"

    def training_note(self) -> str:
        """Which backward peak decides training, and the other one, which does not add to it."""
        other = "layer" if self.training_peak == "loss" else "loss"
        buffers = ", with the dequantization buffers" if self.training_phases["layer"].get("workspace") else ""
        names = {"loss": "the loss's backward (logits and cross-entropy)",
                 "layer": f"one decoder layer's backward ({'recomputed' if self.setup.gradient_checkpointing else 'its transients'}{buffers})"}
        return (f"training peaks in {names[self.training_peak]}, {self.training_gib:.2f} GiB; "
                f"{names[other]} comes after it, {sum(self.training_phases[other].values()):.2f} GiB, and does not add")

    @property
    def total_gib(self) -> float:
        """The expected peak on the device: the larger of the two phases."""
        return max(self.training_gib, self.load_peak_gib)

    @property
    def bound_gib(self) -> float:
        """The upper bound the verdict uses: the expected peak + BOUND_FRACTION, and half the
        context again where this GPU generation and CUDA major were never measured."""
        widening = 0.0 if self.context.measured else UNMEASURED_CONTEXT_FRACTION * self.context.gib
        return self.total_gib * (1 + BOUND_FRACTION) + widening

    @property
    def verdict(self) -> str:
        """From the bound, the safe direction: an estimate that errs low must not say `fits`."""
        if self.bound_gib > self.capacity_gib:
            return "does-not-fit"
        if self.bound_gib > CLOSE_FRACTION * self.capacity_gib:
            return "close"
        return "fits"

    def summary(self) -> str:
        relation = {"fits": "<=", "close": "<=", "does-not-fit": ">"}[self.verdict]
        return (f"expected {self.total_gib:.1f} GiB ({self.deciding_phase} peak), upper bound {self.bound_gib:.1f} GiB "
                f"{relation} {self.capacity_gib:.1f} GiB on {self.gpu.name}: {self.verdict}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "target": self.gpu.name, "capacity_gib": round(self.capacity_gib, 2),
            "total_gib": round(self.total_gib, 2), "bound_gib": round(self.bound_gib, 2), "verdict": self.verdict,
            "deciding_phase": self.deciding_phase, "training_gib": round(self.training_gib, 2),
            "parts": {k: round(v, 3) for k, v in self.parts.items()}, "training_peak": self.training_peak,
            "training_phases": {name: {k: round(v, 3) for k, v in phase.items()}
                                for name, phase in self.training_phases.items()},
            "load_peak_gib": round(self.load_peak_gib, 2),
            "load_parts": {k: round(v, 3) for k, v in self.load_parts.items()},
            "context": {"gib": round(self.context.gib, 3), "measured": self.context.measured, "source": self.context.source},
            "cuda_major": self.gpu.cuda_runtime_major if self.gpu.kind == "cuda" else None,
            "settings": asdict(self.setup), "advice": self.advice, "notes": self.notes,
        }

    def label(self, key: str) -> str:
        if key == "unquantized_weights" and self.parts.get("quantized_weights", 0) == 0:
            return "base weights, 16-bit"
        if key == "layer_backward" and not self.setup.gradient_checkpointing:
            return "one decoder layer's backward transients"
        if key == "cuda_context" and self.gpu.kind == "mps":
            return "Metal/MPS runtime"
        return PART_LABELS.get(key, key)

    def renderable(self):
        """The two phases' parts side by side, the expected peak and its bound, and the verdict."""
        from rich.console import Group
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"peak GPU memory: {self.model} on {self.gpu.name}", title_justify="left")
        table.add_column("part")
        loading = bool(self.load_parts)
        if loading:
            table.add_column("loading GiB", justify="right")
        table.add_column("training GiB", justify="right")
        keys = list(dict.fromkeys([*self.load_parts, *self.parts]))
        for key in keys:
            values = ([self.load_parts.get(key)] if loading else []) + [self.parts.get(key)]
            if any(v is not None and v >= 0.005 for v in values):
                table.add_row(self.label(key), *("" if v is None or v < 0.005 else f"{v:.2f}" for v in values))
        table.add_section()
        decides = {"loading": "load peak", "training": "training peak"}
        peaks = ([f"{self.load_peak_gib:.2f}"] if loading else []) + [f"{self.training_gib:.2f}"]
        table.add_row("peak of the phase" + (f" ({decides[self.deciding_phase]} decides)" if loading else ""), *peaks)
        blank = [""] if loading else []
        table.add_row("expected peak", *blank, f"{self.total_gib:.2f}")
        table.add_row(f"upper bound (the verdict's){'' if self.context.measured else ', widened'}", *blank,
                      f"{self.bound_gib:.2f}")
        table.add_row(f"capacity ({self.gpu.name})", *blank, f"{self.capacity_gib:.2f}")
        style = {"fits": "green", "close": "yellow", "does-not-fit": "red"}[self.verdict]
        lines = [table, f"settings: {escape(self.setup.describe())}"]
        if self.gpu.kind == "cuda":
            lines.append(f"CUDA context: {self.context.gib:.2f} GiB for CUDA {self.gpu.cuda_runtime_major}, "
                         f"{self.gpu.generation or 'unknown GPU class'}: {escape(self.context.source)}")
        lines.append(f"[{style}]{escape(self.summary())}[/{style}]")
        lines.append(f"note: {escape(self.training_note())}")
        lines += [f"note: {escape(note)}" for note in self.notes]
        lines += [f"try: {escape(line)}" for line in self.advice]
        return Group(*lines)


def estimate(axolotl_cfg: dict, facts, gpu: GpuSpec, assumptions: Assumptions | None = None,
             with_advice: bool = True) -> MemoryEstimate:
    assumptions = assumptions or Assumptions()
    result, setup = breakdown(axolotl_cfg, facts, gpu, assumptions)
    capacity = gpu.capacity_gib
    notes = list(result.notes)
    est = MemoryEstimate(model=facts.name, gpu=gpu, setup=setup,
                         training_phases={name: {k: v / GIB for k, v in phase.items()}
                                          for name, phase in result.training.items()},
                         capacity_gib=capacity, load_parts={k: v / GIB for k, v in result.load_parts.items()},
                         context=result.context, notes=notes)
    if est.deciding_phase == "loading":
        notes.append("loading is the peak: Axolotl casts embeddings and lm_head to fp32 and back while the "
                     "base is on the GPU, and the allocator keeps that memory reserved")
    if not result.context.measured and gpu.kind in ("cuda", "mps"):
        notes.append(f"no measurement for {gpu.generation or gpu.kind} with CUDA {gpu.cuda_runtime_major}: "
                     f"the bound is widened by half the context" if gpu.kind == "cuda" else
                     "the MPS runtime's share was never measured: the bound is widened by half of it")
    if gpu.note:
        notes.append(gpu.note)
    if with_advice and est.verdict != "fits":
        est.advice = advise(axolotl_cfg, facts, gpu, assumptions)
    return est


def _total(cfg: dict, facts, gpu: GpuSpec, assumptions: Assumptions) -> float:
    """The bound: advice must bring what the verdict reads under the limit."""
    return estimate(cfg, facts, gpu, assumptions, with_advice=False).bound_gib


def _with(cfg: dict, **changes: Any) -> dict:
    merged = dict(cfg)
    merged.update(changes)
    return merged


def _sets(changes: dict) -> str:
    return " ".join(f"--set {k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in changes.items())


def _largest_fitting_sequence(cfg: dict, facts, gpu: GpuSpec, assumptions: Assumptions, limit: float) -> int | None:
    """Longest sequence_len (a multiple of 256) whose bound stays under `limit` GiB."""
    low, high = 0, TrainingShape.of(cfg).sequence_len // 256
    while low < high:
        middle = (low + high + 1) // 2
        if _total(_with(cfg, sequence_len=middle * 256), facts, gpu, assumptions) <= limit:
            low = middle
        else:
            high = middle - 1
    return low * 256 if low else None


def advise(cfg: dict, facts, gpu: GpuSpec, assumptions: Assumptions | None = None) -> list[str]:
    """Concrete --set changes that bring the bound under 90% of capacity, cheapest first."""
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
            advice.append(f"{_sets(changes)} (bound {total:.1f} GiB)")
    combined: dict = {}
    for changes in knobs:
        combined.update(changes)
    sequence = _largest_fitting_sequence(cfg, facts, gpu, assumptions, limit)
    if sequence:
        total = _total(_with(cfg, sequence_len=sequence), facts, gpu, assumptions)
        advice.append(f"--set sequence_len={sequence} (bound {total:.1f} GiB)")
    elif combined:
        relaxed = _with(cfg, **combined)
        sequence = _largest_fitting_sequence(relaxed, facts, gpu, assumptions, limit)
        if sequence:
            total = _total(_with(relaxed, sequence_len=sequence), facts, gpu, assumptions)
            advice.append(f"{_sets(combined)} --set sequence_len={sequence} (bound {total:.1f} GiB)")
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
        return Check("memory", False, "error", f"{source}: upper bound {est.bound_gib:.1f} GiB (expected "
                     f"{est.total_gib:.1f}, {est.deciding_phase} peak) > {est.capacity_gib:.1f} GiB on {est.gpu.name}",
                     est.advice[0] if est.advice else "use a larger GPU")
    if est.verdict == "close":
        return Check("memory", False, "warning", f"{source}: upper bound {est.bound_gib:.1f} GiB (expected "
                     f"{est.total_gib:.1f}) is above {CLOSE_FRACTION:.0%} of {est.capacity_gib:.1f} GiB on {est.gpu.name}",
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


__all__ = [
    "Assumptions", "MemoryEstimate", "Setup", "advise", "base_weight_bytes",
    "estimate", "fit_check", "raise_unless_fits", "estimate_checkpoint_disk",
    "parameter_counts", "read_setup",
]
