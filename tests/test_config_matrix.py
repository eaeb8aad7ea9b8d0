"""Every shipped config, alone and with each shipped overlay, resolved as validate, smoke and full
resolve it, passes Axolotl's schema and the job's own checks; smoke's slice trains a full optimizer
step; the CPU rehearsal differs from the pod only where the pinned list says, with a reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli_tuner import config
from cli_tuner.batching import epoch, steps
from cli_tuner.checks import config_rules, data_report, distributed, preflight
from cli_tuner.commands import smoke as smoke_command
from cli_tuner.training import rehearsal
from conftest import REPO

CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml") if p.name != "axolotl_smoke_test.yaml")
OVERLAYS = [None, *sorted((REPO / "configs" / "overlays").glob("*.yaml"))]
MODES = ("validate", "smoke", "full")
# An overlay that is not meant for a config must be refused with this key and kind (exit code),
# and pass once the named --set is given.
NOT_FOR = {("training_config_m4.yaml", "packing.yaml"): ("attn_implementation", "environment",
                                                         ["attn_implementation=sdpa"])}
# Strategy overlays: checked on 2 processes. The M4 config's MPS target has no distributed backend.
STRATEGY_OVERLAYS = ("ddp.yaml", "fsdp2-qlora.yaml", "deepspeed-zero2.yaml")
NOT_FOR.update({("training_config_m4.yaml", name): ("cli_tuner.target", "config", ["cli_tuner.target=h100"])
                for name in STRATEGY_OVERLAYS})
# The CPU rehearsal runs DDP over gloo only (checks.distributed.rules refuses the others there).
SHARDED_OVERLAYS = ("fsdp2-qlora.yaml", "deepspeed-zero2.yaml")


def test_the_matrix_covers_every_shipped_file():
    assert {p.name for p in CONFIGS} == {"axolotl_config.yaml", "training_config_h100.yaml", "training_config_m4.yaml"}
    assert [p.name for p in OVERLAYS if p] == sorted(["packing.yaml", *STRATEGY_OVERLAYS])


def resolved(mode: str, config_path: Path, overlay: Path | None, sets=()) -> config.LoadedConfig:
    overlays = ([str(overlay)] if overlay else []) + list(smoke_command.OVERLAYS if mode == "smoke" else ())
    return config.load(config_path, overlays=overlays, sets=list(sets))


def errors_of(loaded: config.LoadedConfig) -> list[config_rules.Problem]:
    facts = preflight.resolve_facts(loaded)
    target = preflight.resolve_target(loaded)
    problems = config_rules.all_problems(loaded, facts, target)
    strategy_overlay = any(p.name in STRATEGY_OVERLAYS for p in loaded.overlays)
    topology = distributed.Topology(nproc_per_node=2) if strategy_overlay else distributed.SINGLE
    problems += distributed.rules(loaded.axolotl, topology, target.kind if target else None)
    return [p for p in problems if p.level == "error"]


MATRIX = [(c, o, m) for c in CONFIGS for o in OVERLAYS for m in MODES]


def ids(value):
    return value.name if isinstance(value, Path) else str(value)


@pytest.mark.parametrize("config_path,overlay,mode", MATRIX, ids=ids)
def test_config_overlay_mode_passes_the_schema_and_the_checks(config_path, overlay, mode):
    loaded = resolved(mode, config_path, overlay)
    expected = NOT_FOR.get((config_path.name, overlay.name if overlay else None))
    errors = errors_of(loaded)
    if expected is None:
        assert errors == [], [p.line() for p in errors]
        return
    key, kind, fix = expected
    assert [(p.key, p.kind) for p in errors] == [(key, kind)], [p.line() for p in errors]
    assert errors_of(resolved(mode, config_path, overlay, fix)) == []


@pytest.mark.parametrize("config_path,overlay", [(c, o) for c in CONFIGS for o in OVERLAYS], ids=ids)
def test_smoke_is_the_full_run_shortened(config_path, overlay):
    smoke = resolved("smoke", config_path, overlay).axolotl
    full = resolved("full", config_path, overlay).axolotl
    assert smoke["max_steps"] == 10 and smoke.get("warmup_ratio") is None and smoke["warmup_steps"] == 2
    training_path = ("adapter", "load_in_4bit", "bnb_config_kwargs", "bf16", "optimizer", "gradient_checkpointing",
                     "gradient_accumulation_steps", "micro_batch_size", "sequence_len", "sample_packing",
                     "attn_implementation", "lora_r", "lora_target_modules", "chat_template", "datasets")
    assert {k: smoke.get(k) for k in training_path} == {k: full.get(k) for k in training_path}


# ----------------------------------------------------------------------------- smoke's slice

TOKENIZER_OF = {"axolotl_config.yaml": "qwen", "training_config_h100.yaml": "mistral", "training_config_m4.yaml": "mistral"}


@pytest.fixture(scope="module")
def sample_lengths(request):
    """Token lengths of the shipped sample train split, rendered with each model's real template."""
    from conftest import require_reference

    from cli_tuner import tokenizer as tokenizer_loader

    lengths = {}
    for name in ("qwen", "mistral"):
        tok = tokenizer_loader.load(str(require_reference(name)))  # skipped with how to get it when absent
        problems = data_report.Problems()
        examples = data_report.read_split("train", REPO / "data" / "processed" / "train.jsonl", problems)
        loaded = config.load(REPO / "configs" / "axolotl_config.yaml")
        measured = data_report.measure(tok, data_report.chat_template_for(loaded, tok), examples, problems)
        lengths[name] = [m.total for m in measured]
    return lengths


def optimizer_steps_axolotl_gives(cfg: dict, lengths: list[int]) -> int:
    """Full optimizer steps in one epoch of `lengths`, batched by Axolotl's own multipack sampler."""
    import numpy as np
    from torch.utils.data import SequentialSampler

    from axolotl.utils.samplers.multipack import MultipackBatchSampler

    need = steps.need_for_one_step(cfg)
    accumulation = int(cfg.get("gradient_accumulation_steps") or 1)
    micro = int(cfg.get("micro_batch_size") or 1)
    if not need.packed:
        return len(lengths) // micro // accumulation
    real_batches = not steps.attention_packs(cfg)
    sequence = int(cfg["sequence_len"])
    sampler = MultipackBatchSampler(SequentialSampler(range(len(lengths))), batch_size=micro if real_batches else 1,
                                    batch_max_len=sequence if real_batches else micro * sequence,
                                    lengths=np.array([min(x, sequence) for x in lengths]),
                                    bin_size=int(cfg.get("sample_packing_bin_size") or 200), num_processes=1)
    return len(epoch.generated_batches(sampler)) // accumulation


@pytest.mark.parametrize("config_path,overlay", [(c, o) for c in CONFIGS for o in OVERLAYS
                                                 if (c.name, o.name if o else None) not in NOT_FOR], ids=ids)
def test_smoke_slice_trains_at_least_one_full_optimizer_step(config_path, overlay, sample_lengths):
    loaded = resolved("smoke", config_path, overlay)
    cfg, asked = loaded.axolotl, loaded.settings.train_examples
    # NL2Bash-sized data (~10k examples) built from the sample split's real token lengths.
    lengths = sample_lengths[TOKENIZER_OF[config_path.name]] * 50
    count = steps.examples_for_one_step(cfg, lengths, at_least=asked)
    assert count is not None and count >= asked
    assert optimizer_steps_axolotl_gives(cfg, lengths[:count]) >= 1, (count, steps.need_for_one_step(cfg))
    if count > asked:  # grown only when the asked slice really is short of a step
        assert optimizer_steps_axolotl_gives(cfg, lengths[:asked]) == 0


def test_the_h100_config_needs_more_than_the_sample_data_for_one_step(sample_lengths):
    cfg = resolved("smoke", REPO / "configs" / "training_config_h100.yaml", None).axolotl
    assert steps.examples_for_one_step(cfg, sample_lengths["mistral"], at_least=10) is None
    assert optimizer_steps_axolotl_gives(cfg, sample_lengths["mistral"]) == 0  # Axolotl agrees: no step at all


# ----------------------------------------------------------------------------- rehearsal divergences

STEP_KEYS = {"max_steps", "save_steps", "eval_steps", "logging_steps"}
ALWAYS = {"base_model", "tokenizer_config", "device", "TrainingArguments.use_cpu", "test_datasets"} | STEP_KEYS
LORA_KERNELS = {"lora_qkv_kernel", "lora_o_kernel", "lora_mlp_kernel"}
FOUR_BIT = {"bitsandbytes Linear4bit.support_avx512bf16_for_cpu"}
# The only ways each shipped config's rehearsal may differ from its pod run. A new divergence fails here.
# Packed rows under flash attention on the pod: sdpa, the pod's bin batching, 512-token rows.
PACKED_FLASH = {"attn_implementation", "multipack_real_batches", "sequence_len"}
ALLOWED = {
    ("axolotl_config.yaml", None): ALWAYS | LORA_KERNELS | FOUR_BIT | {"tf32", "warmup_steps"},
    ("axolotl_config.yaml", "packing.yaml"): ALWAYS | LORA_KERNELS | FOUR_BIT | PACKED_FLASH | {"tf32"},
    ("training_config_h100.yaml", None): ALWAYS | LORA_KERNELS | FOUR_BIT | PACKED_FLASH | {"tf32"},
    ("training_config_h100.yaml", "packing.yaml"): ALWAYS | LORA_KERNELS | FOUR_BIT | PACKED_FLASH | {"tf32"},
    ("training_config_m4.yaml", None): ALWAYS | LORA_KERNELS,
    ("axolotl_config.yaml", "ddp.yaml"): ALWAYS | LORA_KERNELS | FOUR_BIT | {"tf32", "warmup_steps"},
    ("training_config_h100.yaml", "ddp.yaml"): ALWAYS | LORA_KERNELS | FOUR_BIT | PACKED_FLASH | {"tf32"},
}
NOT_REHEARSED = {(c.name, o) for c in CONFIGS for o in SHARDED_OVERLAYS} - set(NOT_FOR)
KEPT = ("adapter", "load_in_4bit", "load_in_8bit", "bnb_config_kwargs", "bf16", "fp16", "optimizer",
        "gradient_checkpointing", "gradient_accumulation_steps", "micro_batch_size", "sample_packing",
        "eval_sample_packing", "pad_to_sequence_len", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
        "chat_template", "datasets", "learning_rate", "lr_scheduler", "warmup_ratio", "load_best_model_at_end",
        "early_stopping_patience", "excess_length_strategy", "sample_packing_bin_size")


@pytest.mark.parametrize("pair", sorted(ALLOWED, key=str), ids=str)
def test_rehearsal_divergences_are_the_pinned_ones_each_with_a_reason(pair, tmp_path):
    config_name, overlay_name = pair
    overlay = REPO / "configs" / "overlays" / overlay_name if overlay_name else None
    loaded = resolved("rehearse", REPO / "configs" / config_name, overlay)
    cfg, divergences = rehearsal.rehearsal_config(loaded.axolotl, tmp_path / "model", 5, None, "config")
    assert {d["key"] for d in divergences} == ALLOWED[pair]
    assert all(d["reason"] and d["pod"] != d["rehearsal"] for d in divergences)
    assert len({d["key"] for d in divergences}) == len(divergences)  # each printed once
    for key in KEPT:
        assert cfg.get(key) == loaded.axolotl.get(key), key
    assert rehearsal.PLUGIN in cfg["plugins"]


def test_every_shipped_pair_has_a_pinned_rehearsal_or_a_reason_not_to():
    pairs = {(c.name, o.name if o else None) for c in CONFIGS for o in OVERLAYS}
    assert pairs == set(ALLOWED) | set(NOT_FOR) | NOT_REHEARSED


@pytest.mark.parametrize("pair", sorted(NOT_REHEARSED), ids=str)
def test_sharded_overlays_are_refused_by_the_cpu_rehearsal_with_the_reason(pair):
    loaded = resolved("rehearse", REPO / "configs" / pair[0], REPO / "configs" / "overlays" / pair[1])
    problems = distributed.rules(loaded.axolotl, distributed.Topology(nproc_per_node=2, cpu=True), None)
    assert any("DDP over gloo only" in p.message for p in problems if p.level == "error")


def test_user_set_step_keys_survive_the_rehearsal(tmp_path):
    loaded = resolved("rehearse", REPO / "configs" / "axolotl_config.yaml", None, ["save_steps=2"])
    cfg, divergences = rehearsal.rehearsal_config(loaded.axolotl, tmp_path, 4, None, "config",
                                                  kept=frozenset({"save_steps"}))
    assert cfg["save_steps"] == 2 and "save_steps" not in {d["key"] for d in divergences}


# ----------------------------------------------------------------------------- figures in the comments

def comment_figures(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    found = {"peak": re.search(r"estimate-memory: peak (\d+\.\d) GiB \(upper bound (\d+\.\d)\) of (\d+\.\d) GiB usable",
                               text),
             "tokens": re.search(r"throughput model: ([\d,]+) tokens/s", text),
             "minutes": re.search(r"tokens/s, (\d+) min for (\d+) steps \((\d+) to (\d+) min", text),
             "step": re.search(r"(\d+\.\d) s per optimizer step", text)}
    return {k: v.groups() for k, v in found.items() if v}


@pytest.mark.parametrize("config_path", CONFIGS, ids=ids)
def test_time_and_memory_figures_in_the_comments_are_the_estimators(config_path):
    from cli_tuner.estimates import memory, throughput

    loaded = config.load(config_path)
    facts, gpu = preflight.resolve_facts(loaded), preflight.resolve_target(loaded)
    figures = comment_figures(config_path)
    assert {"peak", "tokens"} <= set(figures), figures
    estimate = memory.estimate(loaded.axolotl, facts, gpu)
    assert figures["peak"] == (f"{estimate.total_gib:.1f}", f"{estimate.bound_gib:.1f}", f"{estimate.capacity_gib:.1f}")
    tokens_per_s = throughput.estimate_tokens_per_second(facts, gpu, loaded.axolotl)
    assert figures["tokens"][0] == f"{tokens_per_s:,.0f}"
    cfg = loaded.axolotl
    if "minutes" in figures:  # validate's projection (throughput.project_time) of full-length rows
        minutes, steps_said, low, high = figures["minutes"]
        full_rows = [int(cfg["sequence_len"])] * 2000
        time = throughput.project_time(cfg, facts, gpu, throughput.epoch_of(cfg, full_rows, None))
        assert int(steps_said) == time.steps == cfg["max_steps"]
        assert (minutes, low, high) == tuple(f"{t / 60:.0f}" for t in (time.seconds, *time.range_seconds))
    if "step" in figures:  # a step of full rows: the accumulation's micro batches, as project_time charges them
        rows, sequence = int(cfg["micro_batch_size"]), int(cfg["sequence_len"])
        step = int(cfg["gradient_accumulation_steps"]) * throughput.micro_batch_seconds(facts, gpu, cfg, rows, sequence)
        assert figures["step"][0] == f"{step:.1f}"
    # A figure that is not the estimator's must say it is a budget.
    for line in config_path.read_text(encoding="utf-8").splitlines():
        if re.search(r"\d+-\d+ (h|GB|min)", line):
            assert "Budget" in line, line
