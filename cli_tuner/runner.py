"""`smoke`, `full` and `rehearse`: check, pick the run folder, launch `axolotl train`, record.

Order matters for people paying by the hour: the data hashes are verified first, then the
config, then the machine, and only then is a model touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from . import atomic, data, run_folder, tracking, validate
from .config import TUNER_KEY, LoadedConfig, canonical_hash, dump_yaml, load_from_args
from .errors import CheckpointGateFailed, CliTunerError, Interrupted
from .provenance import REPO_ROOT, Provenance

SMOKE_OVERLAY = REPO_ROOT / "configs" / "axolotl_smoke_test.yaml"
PLUGIN = "cli_tuner.axolotl_plugin.CliTunerPlugin"
RESOLVED_CONFIG = "resolved_config.yaml"
TRAIN_LOG = "train.log"
FINAL_DIR = "phase2-final"
FINAL_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "vocab.json",
               "merges.txt", "tokenizer.model", "generation_config.json")
REHEARSAL_CHECK_SAMPLES = 8
PREPARED_DIR = "prepared"  # beside the run folders in the output root, shared by runs of the same data


def say(message: str) -> None:
    print(f"[cli-tuner] {message}", flush=True)


def load_for_mode(args) -> LoadedConfig:
    if args.command == "smoke":
        # Last among the overlays, so a user overlay cannot stretch a smoke run; --set still wins.
        args.overlay = [*args.overlay, str(SMOKE_OVERLAY)]
    return load_from_args(args)


def prepared_dataset_path(cfg: dict, output_root: Path, data_sha256: str) -> str:
    """Axolotl keys its tokenized cache on file paths and tokenizer name, not file contents: a
    user who edits and re-locks the data would train on the stale cache. Keying the folder on the
    locked data hash closes that, and it sits on the output volume so a restarted pod keeps it."""
    configured = cfg.get("dataset_prepared_path")
    root = Path(configured) if configured and Path(configured).is_absolute() else Path(output_root) / PREPARED_DIR
    return str(root / data_sha256[:16])


def identity_of(args, loaded: LoadedConfig, verified: data.VerifiedData) -> run_folder.Identity:
    options = {}
    if args.command == "rehearse":
        options = {"steps": args.steps, "save_steps": args.save_steps, "packing": args.packing,
                   "tokenizer": args.tokenizer}
    config_hash = canonical_hash({"axolotl": loaded.axolotl, TUNER_KEY: loaded.tuner, "options": options})
    return run_folder.Identity(args.command, config_hash, verified.data_sha256)


def write_slices(loaded: LoadedConfig, run_dir: Path) -> dict:
    """Smoke runs train on the first N examples; the slices live in the run folder."""
    cfg = dict(loaded.axolotl)
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


def prepare_rehearsal(args, loaded: LoadedConfig, facts, run_dir: Path, cfg: dict) -> tuple[dict, dict]:
    from . import rehearsal

    model_dir = run_dir / "rehearsal-model"
    texts = [r.data.get("text") or " ".join(m["content"] for m in r.data.get("messages", []))
             for path in loaded.training_files() for r in data.read_records(path)]
    if (model_dir / "config.json").is_file():
        description = "reused from the interrupted run"
        say(f"rehearsal model: {model_dir} ({description})")
    else:
        tokenizer, description = rehearsal.choose_tokenizer(args.tokenizer, loaded.tokenizer_source, texts)
        say(f"rehearsal tokenizer: {description}")
        rehearsal.build_model(facts, tokenizer, model_dir)
    cfg, changes = rehearsal.rehearsal_config(cfg, model_dir, args.steps, args.save_steps, args.packing)
    say("rehearsal changes for CPU: " + "; ".join(changes))
    return cfg, {"tokenizer": description, "changes": changes, "architecture": facts.model_type,
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
                sys.stdout.write(line)
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
        return json.loads((run_dir / "progress.json").read_text())
    except (OSError, ValueError):
        return {}


def publish_final(run_dir: Path) -> Path:
    """Copy the final adapter to phase2-final/, whole or not at all."""
    final = run_dir / FINAL_DIR
    with atomic.folder(final) as staging:
        for name in FINAL_FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, staging / name)
        shutil.copy2(run_dir / "provenance.json", staging / "provenance.json")
    return final


def check_final(args, loaded: LoadedConfig, final: Path, provenance: Provenance) -> list[str]:
    from . import checkpoint

    test_files = loaded.split_files()["test"]
    if not test_files:
        say("checkpoint check skipped: no test split (set cli_tuner.test_file)")
        return []
    sample = REHEARSAL_CHECK_SAMPLES if args.command == "rehearse" else None
    report = checkpoint.evaluate(final, test_file=test_files[0], sample_size=sample)
    report.render()
    reasons = report.gate(min_syntax_rate=float(loaded.tuner.get("min_syntax_rate", 0.9)),
                          allow_dangerous=bool(loaded.tuner.get("allow_dangerous_answers", False)))
    gated = args.command == "full"
    provenance.update(checkpoint_check={"summary": report.summary, "gate_failures": reasons, "gated": gated})
    if reasons and not gated:
        say("checkpoint check: a random rehearsal model fails the quality gate by design; only `full` enforces it")
    return reasons if gated else []


def command(args) -> int:
    mode = args.command
    tracking.load_env_file()
    loaded = load_for_mode(args)
    verified = validate.verify_data(loaded)  # before anything else: no model, no GPU on bad data
    say(f"data verified: {len(verified.files)} files, data sha256 {verified.data_sha256[:16]}...")
    facts = validate.resolve_facts(loaded)
    gpu = None if mode == "rehearse" else validate.resolve_gpu(loaded)
    validate.check_config(loaded, facts, gpu)
    if not args.skip_checks:
        from . import platform

        platform.preflight(mode, gpu, loaded=loaded, output_root=args.output_root)

    identity = identity_of(args, loaded, verified)
    folder = run_folder.open_run(Path(args.output_root), identity, args.run_id, args.new_run,
                                 resume=not args.no_resume, say=say)
    run_dir = folder.path.resolve()
    say(f"run folder: {run_dir}")
    cfg = write_slices(loaded, run_dir) if mode == "smoke" else dict(loaded.axolotl)
    extra: dict = {}
    if mode == "rehearse":
        cfg, extra["rehearsal"] = prepare_rehearsal(args, loaded, facts, run_dir, cfg)
    cfg["output_dir"] = str(run_dir)
    cfg["dataset_prepared_path"] = prepared_dataset_path(cfg, Path(args.output_root).resolve(), verified.data_sha256)
    cfg["plugins"] = sorted(set(cfg.get("plugins") or []) | {PLUGIN})
    if folder.resume_from is not None:
        cfg["resume_from_checkpoint"] = str(folder.resume_from)
    resolved_path = atomic.write_text(run_dir / RESOLVED_CONFIG, dump_yaml(cfg))
    env, tracking_summary = tracking.training_environment(cfg, run_dir, say=say)

    provenance = Provenance.start(
        run_dir,
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
        reasons = check_final(args, loaded, final, provenance)
        atomic.write_json(final / "provenance.json", provenance.record)  # now with the check's summary
        if reasons:
            raise CheckpointGateFailed(f"{final}: checkpoint check failed: {'; '.join(reasons)}")
        say(f"final adapter: {final}")
    return 0
