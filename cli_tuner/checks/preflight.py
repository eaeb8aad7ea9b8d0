"""Checks before training, in the order a pod would hit them: data, config, machine, model.

`prepare` runs them once and returns the `Plan` every later step reads. Config problems are all
collected (one line each) before it stops, so one round trip fixes them all; the exception names
the first and its class says which kind it was (exit 3, 4 or 5).
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import atomic, data
from ..config import LoadedConfig, canonical_hash, require_local_datasets
from ..errors import ConfigError, DataError, EnvironmentProblem
from ..facts import attention as attention_facts, gpus, machine as machine_facts, models
from ..findings import Check, first_error
from ..paths import DEFAULT_OUTPUT_ROOT, PREPARED_DIR
from ..estimates import memory, memory_sharding
from . import attention, config_rules, data_report, distributed, environment
from .distributed import SINGLE, Topology
from ..plan import Plan
from ..run_spec import RunSpec

KIND_ERRORS = {"data": DataError, "config": ConfigError, "environment": EnvironmentProblem}


def resolve_facts(loaded: LoadedConfig) -> models.ModelFacts:
    facts = models.lookup(loaded.base_model) if loaded.base_model else None
    if facts is None:
        raise ConfigError(
            f"{loaded.path}: base_model {loaded.base_model!r} cannot be resolved offline (no local folder, "
            "no cached config.json, not a shipped model); set base_model to a local folder or go online once"
        )
    return facts


def resolve_target(loaded: LoadedConfig) -> gpus.GpuSpec | None:
    if not loaded.target and loaded.gpu_memory_gb is None:
        return None
    return gpus.resolve_target(loaded.target, loaded.gpu_memory_gb)


def verify_data(loaded: LoadedConfig) -> data.VerifiedData:
    require_local_datasets(loaded)
    return data.verify(loaded.training_files() + loaded.split_files()["test"])


def as_checks(problems: list[config_rules.Problem]) -> list[Check]:
    return [Check(p.key, False, p.level, p.message) for p in problems]


def raise_for(problems: list[config_rules.Problem], source: str, sets: list[str] = ()) -> list[Check]:
    """The warnings among `problems`; when any is an error, raise the first one's kind with all listed
    (the list only when there is more than the one the error line names). A key the command line set
    (`sets`, the --set assignments) is blamed on its --set, not on the config file."""
    errors = [p for p in problems if p.level == "error"]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more above)" if len(errors) > 1 else ""
        details = [f"  {p.level}: {p.line()}" for p in problems] if len(problems) > 1 else []
        raise KIND_ERRORS[first.kind](f"{blamed(first.key, sets) or source}: {first.line()}{more}", details=details)
    return as_checks(problems)


def blamed(key: str, sets: list[str]) -> str | None:
    """The last --set that gave `key` (or a table above it) its value, as the user typed it; None when none did."""
    found = None
    for assignment in sets:
        name = assignment.split("=", 1)[0].strip()
        if key == name or key.startswith(name + ".") or name.startswith(key + "."):
            found = f"--set {assignment}"
    return found


def deepspeed_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is not None


def check_config(loaded: LoadedConfig, facts, gpu, topology: Topology = SINGLE) -> list[Check]:
    problems = config_rules.all_problems(loaded, facts, gpu)
    problems += distributed.rules(loaded.axolotl, topology, gpu.kind if gpu is not None else None,
                                  deepspeed_installed())
    return raise_for(problems, str(loaded.path), loaded.sets)


def memory_on(loaded: LoadedConfig, facts, gpu: gpus.GpuSpec, topology: Topology = SINGLE,
              strategy: str | None = None) -> tuple[memory.MemoryEstimate, Check]:
    """The peak on one GPU; on several processes, on each of them (`strategy`: the config's by default)."""
    estimate = memory.estimate(loaded.axolotl, facts, gpu)
    strategy = strategy or distributed.strategy_of(loaded.axolotl)
    if topology.distributed or strategy != "ddp":
        if strategy not in distributed.STRATEGIES:
            raise ConfigError(f"{loaded.path}: no per-GPU estimate for strategy {strategy}; "
                              f"one of {', '.join(distributed.STRATEGIES)}")
        estimate = memory_sharding.per_gpu(estimate, facts, strategy, topology.world_size)
    return estimate, memory.fit_check(estimate, str(loaded.path))


def environment_checks(spec: RunSpec, found: machine_facts.Machine, target, loaded: LoadedConfig, facts,
                       output_root: Path | str, topology: Topology = SINGLE) -> tuple[list[Check], memory.MemoryEstimate | None]:
    """The environment checks `spec` needs on this machine, and the memory estimate on its GPU."""
    disk_need = memory.estimate_checkpoint_disk(loaded.axolotl, facts)
    results = environment.checks(found, gpu=spec.on_gpu, probes=spec.on_gpu, output_root=output_root,
                                 bitsandbytes_needed=environment.needs_bitsandbytes(loaded), disk_need_bytes=disk_need)
    estimate = None
    if spec.on_gpu:
        results = environment.device_checks(found, target, loaded) + results
        if found.kind in ("cuda", "mps"):
            estimate, check = memory_on(loaded, facts, machine_facts.gpu_spec(found), topology)
            results.append(check)
    return results, estimate


def raise_environment(source: str, results: list[Check]) -> None:
    first = first_error(results)
    if first is not None:
        details = [f"  {c.level}: {c.line()}" for c in results if c.failed]
        raise EnvironmentProblem(f"{source}: {first.line()}", details=details)


def require_device(spec: RunSpec, found: machine_facts.Machine) -> None:
    """A run on this machine's GPU needs one: checked before the data, the model facts and the config, so
    a machine without one is told so at once (EnvironmentProblem, exit 5), not after the data checks."""
    first = first_error(environment.device_checks(found, None, None)) if spec.on_gpu else None
    if first is not None:
        raise EnvironmentProblem(f"{spec.name} preflight: {first.line()}")


def prepare(spec: RunSpec, loaded: LoadedConfig, *, output_root: Path | str | None = None,
            check_environment: bool = True, topology: Topology = SINGLE,
            verified: data.VerifiedData | None = None) -> Plan:
    """Data, config, machine, model: verified in that order, so nothing costly runs on a bad input.
    The machine is detected before the config is checked, so the checks see its fallback (checks/attention.py).
    `verified`: the data, when the caller verified it first (validate, before it looks for the tokenizer)."""
    verified = verified or verify_data(loaded)  # first: no model, no GPU on bad data
    facts = resolve_facts(loaded)
    target = resolve_target(loaded) if spec.checks_target else None
    found = machine_facts.detect() if spec.detects_machine else None
    source, fallbacks = None, []
    if found is not None and found.kind == "cuda" and spec.on_gpu:
        # Before anything reads the config (Axolotl's schema, which refuses flash_attention_2 on a CUDA
        # machine without a source; the step arithmetic; memory; the resolved config): a config asking
        # for flash attention on a CUDA machine with no source for it trains with sdpa.
        source = attention_facts.detect()
        fallbacks = attention.machine_fallback(loaded.axolotl, found, source)
    findings = check_config(loaded, facts, target, topology)
    plan = Plan(spec, loaded, verified, facts, target, found, topology, findings, attention=source,
                fallbacks=fallbacks)
    if found is not None and check_environment:
        results, plan.estimate = environment_checks(spec, found, target, loaded, facts,
                                                    output_root or DEFAULT_OUTPUT_ROOT, topology)
        raise_environment(f"{spec.name} preflight", results)
        plan.findings += [c for c in results if c.failed]
    return plan


# Config keys that change what the data report finds (lengths, cuts, rendering, danger level).
DATA_REPORT_KEYS = ("sequence_len", "excess_length_strategy", "pad_to_sequence_len", "sample_packing",
                    "chat_template", "chat_template_jinja", "datasets", "test_datasets")
DATA_CHECKS_DIR = "data-checks"


def data_checks_key(loaded: LoadedConfig, verified: data.VerifiedData, tokenizer_name: str, allow_dangerous: bool) -> str:
    return canonical_hash({"schema": 2, "data_sha256": verified.data_sha256, "tokenizer": tokenizer_name,
                           "allow_dangerous": allow_dangerous, "test_file": str(loaded.settings.test_file or ""),
                           "config": {k: loaded.axolotl.get(k) for k in DATA_REPORT_KEYS}})


def check_training_data(plan: Plan, output_root: Path | str | None, *, tokenizer=None,
                        tokenizer_name: str | None = None,
                        tokenizer_override: str | None = None) -> tuple[data_report.DataReport, bool]:
    """The data checks of `validate` and of the training verbs before any model loads (risk rules,
    cut answers, leakage, Bash syntax); (report, from_cache). With an output root, cached in
    <output root>/prepared/data-checks/ by data hash and the config keys the report depends on, so a
    restarted pod does not repeat them. The caller raises on the report's errors (DataError, exit 3);
    --allow-dangerous-data turns dangerous commands into warnings."""
    loaded = plan.loaded
    allow = loaded.allows_dangerous_data
    name = tokenizer_name or tokenizer_override or loaded.tokenizer_source
    key = data_checks_key(loaded, plan.verified, name, allow)
    cache = None if output_root is None else Path(output_root) / PREPARED_DIR / DATA_CHECKS_DIR / f"{key[:32]}.json"
    report, cached = None, False
    try:
        saved = json.loads(cache.read_text(encoding="utf-8")) if cache is not None else {}
        if saved.get("key") == key:
            report, cached = data_report.from_dict(saved["report"], saved.get("train_lengths") or [],
                                                   saved.get("val_lengths") or []), True
    except (OSError, ValueError, KeyError, TypeError):
        report = None
    if report is None:
        report = data_report.check(loaded, tokenizer_override=tokenizer_override, allow_dangerous=allow,
                                   tokenizer=tokenizer, tokenizer_name=tokenizer_name)
        # a failing report is recomputed after the fix, never trusted from disk
        if not report.errors and cache is not None:
            try:
                atomic.write_json(cache, {"key": key, "report": report.as_dict(), "train_lengths": report.train_lengths,
                                          "val_lengths": report.val_lengths})
            except EnvironmentProblem as exc:
                report.notes.append(f"data checks not cached ({exc.message})")
    return report, cached
