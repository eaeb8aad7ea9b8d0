"""Training: from a checked plan to a run folder, `axolotl train`, the final adapter and its record.

Preflight has already verified the data, the config and the machine (in that order, so nothing
costly runs on a bad input); this module picks the run folder, builds the resolved config, runs
the trainer in its own process, and records every outcome in provenance.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import atomic, console, data
from ..checks.plan import Plan
from ..config import TUNER_KEY, LoadedConfig, canonical_hash, dump_yaml
from ..errors import CheckpointGateFailed, CliTunerError, Interrupted
from ..evaluation import evaluate as evaluation
from ..facts import gpus
from ..paths import (FINAL_DIR, PREPARED_DIR, PROGRESS_FILE, PROVENANCE_FILE, REHEARSAL_MODEL_DIR, REPO_ROOT,
                     RESOLVED_CONFIG, TRAIN_LOG)
from . import rehearsal, run_folder, tracking
from .provenance import Provenance

PLUGIN = "cli_tuner.training.axolotl_plugin.CliTunerPlugin"
FINAL_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "vocab.json",
               "merges.txt", "tokenizer.model", "generation_config.json")
REHEARSAL_CHECK_SAMPLES = 8
say = console.say


@dataclass(frozen=True)
class RunOptions:
    """Where a run lives and whether it may continue an earlier one."""

    output_root: Path = Path("outputs")
    run_id: str | None = None     # the folder name; default mode-confighash-datahash
    new_run: bool = False         # a fresh folder even when this config and data finished before
    resume: bool = True           # continue from the newest complete checkpoint


@dataclass(frozen=True)
class RehearsalOptions:
    """What a CPU rehearsal changes besides the model: its length and, optionally, the tokenizer."""

    tokenizer: str | None = None
    steps: int = 5
    save_steps: int | None = None
    packing: str = "config"       # "config", "on" or "off"

    def as_record(self) -> dict:
        return {"steps": self.steps, "save_steps": self.save_steps, "packing": self.packing, "tokenizer": self.tokenizer}


def prepared_dataset_path(cfg: dict, output_root: Path, data_sha256: str) -> str:
    """Axolotl keys its tokenized cache on file paths and tokenizer name, not file contents: a
    user who edits and re-locks the data would train on the stale cache. Keying the folder on the
    locked data hash closes that, and it sits on the output volume so a restarted pod keeps it."""
    configured = cfg.get("dataset_prepared_path")
    root = Path(configured) if configured and Path(configured).is_absolute() else Path(output_root) / PREPARED_DIR
    return str(root / data_sha256[:16])


def identity_of(mode: str, loaded: LoadedConfig, verified: data.VerifiedData,
                rehearsal_options: RehearsalOptions | None = None) -> run_folder.Identity:
    options = rehearsal_options.as_record() if mode == "rehearse" and rehearsal_options else {}
    config_hash = canonical_hash({"axolotl": loaded.axolotl, TUNER_KEY: loaded.tuner, "options": options})
    return run_folder.Identity(mode, config_hash, verified.data_sha256)


def write_slices(loaded: LoadedConfig, run_dir: Path, limits: dict | None = None) -> dict:
    """Smoke runs train on the first N examples (a rehearsal evaluates on the first few); the
    slices live in the run folder."""
    cfg = dict(loaded.axolotl)
    if limits is None:
        limits = {"datasets": loaded.tuner.get("train_examples"), "test_datasets": loaded.tuner.get("val_examples")}
    for key, limit in limits.items():
        if not limit:
            continue
        entries = []
        for index, entry in enumerate(cfg.get(key) or []):
            source = Path(entry["path"])
            lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()][:int(limit)]
            target = atomic.write_text(run_dir / "data" / f"{key}-{index}-{source.name}", "\n".join(lines) + "\n")
            entries.append({**entry, "path": str(target)})
        cfg[key] = entries
    return cfg


def prepare_rehearsal(options: RehearsalOptions, loaded: LoadedConfig, facts, run_dir: Path, cfg: dict) -> tuple[dict, dict]:
    model_dir = run_dir / REHEARSAL_MODEL_DIR
    texts = [r.data.get("text") or " ".join(m["content"] for m in r.data.get("messages", []))
             for path in loaded.training_files() for r in data.read_records(path)]
    if (model_dir / "config.json").is_file():
        description = "reused from the interrupted run"
        say(f"rehearsal model: {model_dir} ({description})")
    else:
        tokenizer, description = rehearsal.choose_tokenizer(options.tokenizer, loaded.tokenizer_source, texts)
        say(f"rehearsal tokenizer: {description}")
        rehearsal.build_model(facts, tokenizer, model_dir)
    kept = frozenset(assignment.split("=", 1)[0].strip() for assignment in loaded.sets)
    target = gpus.KNOWN_GPUS.get(str(loaded.target or "").lower())
    cfg, divergences = rehearsal.rehearsal_config(cfg, model_dir, options.steps, options.save_steps, options.packing,
                                                  kept=kept, pod_device=target.kind if target else "cuda")
    say(f"rehearsal differs from the pod in {len(divergences)} ways; everything else runs as configured:")
    for divergence in divergences:
        say(f"  {rehearsal.describe(divergence)}")
    return cfg, {"tokenizer": description, "divergences": divergences, "architecture": facts.model_type,
                 "model_dir": str(model_dir)}


def run_training(resolved_path: Path, run_dir: Path, env: dict) -> tuple[int, int | None]:
    """Run `axolotl train` in its own session; (exit code, signal we received or None)."""
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    command = [sys.executable, "-m", "axolotl.cli.main", "train", str(resolved_path), "--launcher", "python"]
    received: list[int] = []
    with open(run_dir / TRAIN_LOG, "a", encoding="utf-8") as log:
        # Own session: a terminal's Ctrl-C reaches only us, and we decide what the trainer hears.
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                 text=True, errors="replace", start_new_session=True)

        def on_signal(signum, _frame):
            received.append(signum)
            if len(received) == 1:
                say(f"signal {signum}: asking the trainer to checkpoint and stop (send again to stop at once)")
                child.send_signal(signal.SIGTERM)
            else:
                child.kill()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for line in child.stdout:
                log.write(line)
                console.stream(line)
            child.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    return child.returncode, (received[0] if received else None)


def last_error_line(log_path: Path) -> str:
    try:
        lines = [l.strip() for l in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()]
    except OSError:
        return "no log"
    errors = [l for l in lines if "Error" in l or "error:" in l]
    return (errors or lines or ["no output"])[-1][:300]


def progress_of(run_dir: Path) -> dict:
    import json

    try:
        return json.loads((run_dir / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def publish_final(run_dir: Path) -> Path:
    """Copy the final adapter to phase2-final/, whole or not at all."""
    final = run_dir / FINAL_DIR
    with atomic.folder(final) as staging:
        for name in FINAL_FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, staging / name)
        shutil.copy2(run_dir / PROVENANCE_FILE, staging / PROVENANCE_FILE)
    return final


def check_final(plan: Plan, final: Path, provenance: Provenance) -> list[str]:
    loaded = plan.loaded
    test_files = loaded.split_files()["test"]
    if not test_files:
        say("checkpoint check skipped: no test split (set cli_tuner.test_file)")
        return []
    sample = REHEARSAL_CHECK_SAMPLES if plan.mode == "rehearse" else None
    report = evaluation.evaluate(final, test_file=test_files[0], sample_size=sample, device=plan.machine.torch_device)
    console.show(report.renderable(console.is_terminal()))
    reasons = report.gate(min_syntax_rate=float(loaded.tuner.get("min_syntax_rate", 0.9)),
                          allow_dangerous=bool(loaded.tuner.get("allow_dangerous_answers", False)))
    gated = plan.mode == "full"
    provenance.update(checkpoint_check={"summary": report.summary, "gate_failures": reasons, "gated": gated})
    if reasons and not gated:
        say("checkpoint check: a random rehearsal model fails the quality gate by design; only `full` enforces it")
    return reasons if gated else []


def run(plan: Plan, options: RunOptions, rehearsal_options: RehearsalOptions | None = None) -> Path:
    """Train the plan's config in its run folder; returns the run folder. Raises the job's errors."""
    mode, loaded, verified, facts = plan.mode, plan.loaded, plan.verified, plan.facts
    identity = identity_of(mode, loaded, verified, rehearsal_options)
    folder = run_folder.open_run(Path(options.output_root), identity, options.run_id, options.new_run,
                                 resume=options.resume, say=say)
    run_dir = folder.path.resolve()
    say(f"run folder: {run_dir}")
    cfg = write_slices(loaded, run_dir) if mode == "smoke" else dict(loaded.axolotl)
    if mode == "rehearse":
        cfg = write_slices(loaded, run_dir, {"test_datasets": rehearsal.VAL_EXAMPLES})
    extra: dict = {}
    if mode == "rehearse":
        cfg, extra["rehearsal"] = prepare_rehearsal(rehearsal_options or RehearsalOptions(), loaded, facts, run_dir, cfg)
    cfg["output_dir"] = str(run_dir)
    cfg["dataset_prepared_path"] = prepared_dataset_path(cfg, Path(options.output_root).resolve(), verified.data_sha256)
    cfg["plugins"] = sorted(set(cfg.get("plugins") or []) | {PLUGIN})
    if folder.resume_from is not None:
        cfg["resume_from_checkpoint"] = str(folder.resume_from)
    resolved_path = atomic.write_text(run_dir / RESOLVED_CONFIG, dump_yaml(cfg))
    env, tracking_summary = tracking.training_environment(cfg, run_dir, say=say)

    provenance = Provenance.start(
        run_dir, plan.machine.as_record(),
        run_id=run_dir.name, mode=mode,
        base_model=cfg.get("base_model"), requested_base_model=loaded.base_model,
        config={"path": str(loaded.path), "overlays": [str(p) for p in loaded.overlays], "sets": loaded.sets,
                "sha256": identity.config_sha256, "resolved_path": RESOLVED_CONFIG,
                "resolved_sha256": canonical_hash(cfg)},
        resolved_config=cfg,
        data={"data_sha256": verified.data_sha256, "files": verified.files,
              "test_file": str(loaded.split_files()["test"][0]) if loaded.split_files()["test"] else None},
        resumed_from=folder.resume_from.name if folder.resume_from else None,
        previous_attempt=(folder.previous or {}).get("status"),
        tracking=tracking_summary,
        steps={"planned": cfg.get("max_steps"), "completed": None},
        **extra,
    )
    returncode, received = run_training(resolved_path, run_dir, env)
    progress = progress_of(run_dir)
    outcome = {"steps": {"planned": progress.get("max_steps") or cfg.get("max_steps"), "completed": progress.get("step")},
               "metrics": {"train_loss": progress.get("train_loss"), "eval_loss": progress.get("eval_loss"),
                           "train_runtime_s": progress.get("train_runtime")},
               "last_checkpoint": progress.get("last_checkpoint")}
    if received is not None:
        provenance.finish("interrupted", f"signal {received} at step {progress.get('step')}", **outcome)
        raise Interrupted(f"interrupted by signal {received} at step {progress.get('step')}; "
                          f"start the same command again to resume from {progress.get('last_checkpoint') or 'the start'}")
    if returncode != 0:
        reason = last_error_line(run_dir / TRAIN_LOG)
        provenance.finish("failed", f"axolotl train exited {returncode}: {reason}", **outcome)
        raise CliTunerError(f"training failed (axolotl exit {returncode}): {reason}; full log: {run_dir / TRAIN_LOG}")
    provenance.finish("succeeded", None, **outcome)
    say(f"training finished: step {progress.get('step')}, train loss {progress.get('train_loss')}, "
        f"eval loss {progress.get('eval_loss')}")
    if mode in ("full", "rehearse"):
        final = publish_final(run_dir)
        reasons = check_final(plan, final, provenance)
        atomic.write_json(final / "provenance.json", provenance.record)  # now with the check's summary
        if reasons:
            raise CheckpointGateFailed(f"{final}: checkpoint check failed: {'; '.join(reasons)}")
        say(f"final adapter: {final}")
    return run_dir
