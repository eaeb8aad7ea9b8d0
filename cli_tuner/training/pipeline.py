"""Training: from a checked plan to a run folder, `axolotl train`, the final adapter and its record.

Preflight has already verified the data, the config and the machine (in that order, so nothing
costly runs on a bad input); this module picks the run folder, builds the resolved config, runs
the trainer in its own process, and records every outcome in provenance.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from .. import atomic, console, data
from ..checks import distributed
from ..checks.distributed import SINGLE, Topology
from ..config import TUNER_KEY, LoadedConfig, canonical_hash, dump_yaml
from ..errors import CheckpointGateFailed, Interrupted, TrainingFailed
from ..evaluation import evaluate as evaluation
from ..evaluation import sandbox
from ..evaluation.report import GateSettings
from ..facts import gpus
from ..paths import (DEFAULT_OUTPUT_ROOT, EVAL_FILE, FINAL_DIR, PREPARED_DIR, PROGRESS_FILE, PROVENANCE_FILE, REHEARSAL_MODEL_DIR,
                     REPO_ROOT, RESOLVED_CONFIG, TRAIN_LOG)
from ..plan import Plan
from ..redact import redact, redact_data, secret_values
from ..run_spec import RunSpec
from . import attempts, launcher, lifecycle, measurements, rehearsal, run_folder, slices, tracking
from .provenance import Provenance

PLUGIN = "cli_tuner.training.axolotl_plugin.CliTunerPlugin"
FINAL_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "vocab.json",
               "merges.txt", "tokenizer.model", "generation_config.json")
say = console.say


@dataclass(frozen=True)
class RunOptions:
    """Where a run lives and whether it may continue an earlier one."""

    output_root: Path = Path(DEFAULT_OUTPUT_ROOT)
    run_id: str | None = None     # the folder name; default mode-confighash-datahash
    new_run: bool = False         # a fresh folder even when this config and data finished before
    resume: bool = True           # continue from the newest complete checkpoint
    verbose: bool = False         # stream Axolotl's log to the console, not only to train.log


@dataclass(frozen=True)
class RehearsalOptions:
    """What a CPU rehearsal changes besides the model: its length and, optionally, the tokenizer."""

    tokenizer: str | None = None
    steps: int = rehearsal.DEFAULT_STEPS
    save_steps: int | None = None
    packing: str = "config"       # "config", "on" or "off"
    # Val examples evaluated (first of each file): more than rehearsal.VAL_EXAMPLES when one eval batch
    # needs more. Derived from the config and data, so not part of the run's identity.
    val_examples: int = rehearsal.VAL_EXAMPLES

    def as_record(self) -> dict:
        return {"steps": self.steps, "save_steps": self.save_steps, "packing": self.packing, "tokenizer": self.tokenizer}


def prepared_dataset_path(cfg: dict, output_root: Path, data_sha256: str) -> str:
    """Axolotl keys its tokenized cache on file paths and tokenizer name, not file contents: a
    user who edits and re-locks the data would train on the stale cache. Keying the folder on the
    locked data hash closes that, and it sits on the output volume so a restarted pod keeps it."""
    configured = cfg.get("dataset_prepared_path")
    root = Path(configured) if configured and Path(configured).is_absolute() else Path(output_root) / PREPARED_DIR
    return str(root / data_sha256[:16])


def identity_of(spec: RunSpec, loaded: LoadedConfig, verified: data.VerifiedData,
                rehearsal_options: RehearsalOptions | None = None, processes: int = 1) -> run_folder.Identity:
    """(mode, config hash, data hash). A rehearsal's options are part of its config, and so is its
    process count: `rehearse --processes 2` after a one-process rehearsal is another run, not a
    finished one. (On a pod the processes are the GPUs; a restart with another count keeps the run
    and is refused by its checkpoints' layout, so their work is not silently started over.)"""
    options = rehearsal_options.as_record() if spec.cpu_rehearsal and rehearsal_options else {}
    if spec.cpu_rehearsal and processes > 1:  # one process keeps the identity it always had
        options = {**options, "processes": processes}
    config_hash = canonical_hash({"axolotl": loaded.axolotl, TUNER_KEY: loaded.settings.identity(),
                                  "options": options})
    return run_folder.Identity(spec.name, config_hash, verified.data_sha256)


# Axolotl's own floor when it saves a prepared set (utils/data/shared.py, min_rows_per_proc): below
# this many rows per process, starting a process (and pickling the tokenizer into it) costs more
# than the rows it tokenizes. Its tokenization, filters and maps take dataset_num_proc, which
# defaults to the machine's CPU count: 16 processes for smoke's 10 rows on the measured H200 pod.
ROWS_PER_PROCESS = 256
PROCESS_KEYS = ("dataset_num_proc", "dataset_processes")
PROCESS_ENV = ("AXOLOTL_DATASET_NUM_PROC", "AXOLOTL_DATASET_PROCESSES")


def preprocessing_processes(cfg: dict, env=os.environ, cpus: int | None = None) -> int | None:
    """Axolotl's dataset_num_proc for this config's train rows: one process per ROWS_PER_PROCESS
    rows, at most the CPU count; None when the user chose (config key or Axolotl's environment
    variables) or the train files cannot be counted."""
    if any(cfg.get(key) is not None for key in PROCESS_KEYS) or any(env.get(name) for name in PROCESS_ENV):
        return None
    rows = 0
    for entry in cfg.get("datasets") or []:
        try:
            with open(entry["path"], encoding="utf-8") as handle:
                rows += sum(1 for line in handle if line.strip())
        except (OSError, KeyError, TypeError, UnicodeDecodeError):
            return None
    cpus = cpus or int(env.get("RUNPOD_CPU_COUNT") or 0) or os.cpu_count() or 1
    return max(1, min(cpus, rows // ROWS_PER_PROCESS))


def prepare_rehearsal(options: RehearsalOptions, loaded: LoadedConfig, facts, run_dir: Path, cfg: dict) -> tuple[dict, dict]:
    model_dir = run_dir / REHEARSAL_MODEL_DIR
    if (model_dir / "config.json").is_file():
        description = "reused from the interrupted run"
        say(f"rehearsal model: {model_dir} ({description})")
    else:
        tokenizer, description = rehearsal.choose_tokenizer(options.tokenizer, loaded)
        say(f"rehearsal tokenizer: {description}")
        rehearsal.build_model(facts, tokenizer, model_dir)
    kept = frozenset(assignment.split("=", 1)[0].strip() for assignment in loaded.sets)
    target = gpus.KNOWN_GPUS.get(str(loaded.target or "").lower())
    cfg, divergences = rehearsal.rehearsal_config(cfg, model_dir, options.steps, options.save_steps, options.packing,
                                                  kept=kept, pod_device=target.kind if target else "cuda",
                                                  val_examples=options.val_examples)
    say(f"rehearsal differs from the pod in {len(divergences)} ways; everything else runs as configured:")
    for divergence in divergences:
        say(f"  {rehearsal.describe(divergence)}")
    return cfg, {"tokenizer": description, "divergences": divergences, "architecture": facts.model_type,
                 "model_dir": str(model_dir)}


# A tqdm line of Axolotl's preprocessing or model loading: "Tokenizing Prompts (num_proc=2):  50%|██ | 110/220 [...]"
TQDM_LINE = re.compile(r"(?P<what>[A-Z][^:|\r\n]{2,80}?):\s+\d+%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)")
PROGRESS_BAR = re.compile(r"\d+%\|[^|]*\|\s*\d+/\d+")  # any tqdm redraw, with or without a description
POLL_SECONDS = 0.5
LOG_TAIL_LINES = 15


class TrainingView:
    """What the console shows of `axolotl train` when its log goes only to train.log: a
    preparation phase (tokenizing, packing, loading the model) until the trainer's first
    progress.json, then a training phase driven by progress.json (step, loss, tokens/s)."""

    def __init__(self, progress_path: Path):
        self.progress_path = progress_path
        self.stale = _mtime(progress_path)  # a resumed run's old file must not end preparation
        self.preparation = console.phase("preparation", detail="Axolotl tokenizes and packs the data, loads the model")
        self.training = None
        self.progress: dict = {}

    def saw(self, line: str) -> None:
        """A line of the trainer's output (from the reader thread): names the preparation step."""
        if self.training is None:
            found = None
            for found in TQDM_LINE.finditer(line):
                pass
            if found:
                self.preparation.update(detail=f"{found['what'].strip()} {found['done']}/{found['total']}")

    def poll(self) -> None:
        mtime = _mtime(self.progress_path)
        if mtime is None or mtime == self.stale:
            self.preparation.update()
            return
        progress = progress_of(self.progress_path.parent)
        if not progress.get("max_steps"):
            return
        self.progress = progress
        if self.training is None:
            self.preparation.done("done")
            self.training = console.phase("training", total=progress["max_steps"], unit="steps", every_percent=10)
        self.training.update(completed=progress.get("step") or 0, total=progress["max_steps"],
                             detail=training_detail(progress, measurements.read(self.progress_path.parent)))

    def finish(self, returncode: int) -> None:
        self.poll()
        if self.training is None:
            self.preparation.done("done" if returncode == 0 else "failed")
            return
        step, total = self.progress.get("step"), self.progress.get("max_steps")
        detail = training_detail(self.progress, measurements.read(self.progress_path.parent))
        self.training.done(f"step {step}/{total}" + (f", {detail}" if detail else "")
                           + ("" if returncode == 0 else ", stopped"))


def training_detail(progress: dict, measured: dict | None = None) -> str:
    """The training bar's detail: loss and the measurement callback's rates, each named.

    processed = every token slot of the micro-batches (padding included), real = the non-padding
    ones (measurements.json, after the first step). Axolotl's own per-GPU rate counts only the
    tokens with a loss (the answers), so it is shown only under that name."""
    parts = []
    if isinstance(progress.get("train_loss"), (int, float)):
        parts.append(f"loss {progress['train_loss']:.4g}")
    measured = measured or {}
    processed, real = measured.get("processed_tokens_per_second"), measured.get("real_tokens_per_second")
    if isinstance(processed, (int, float)):
        parts.append(f"{processed:,.0f} processed tokens/s")
    if isinstance(real, (int, float)):
        parts.append(f"{real:,.0f} real tokens/s")
    trainable = progress.get("trainable_tokens_per_second")
    if isinstance(trainable, (int, float)):
        parts.append(f"{trainable:,.0f} trainable tokens/s (Axolotl)")
    return ", ".join(parts)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def write_held_library_logs(log_path: Path) -> None:
    """This process's library warnings (held off the console) into the run's log."""
    held = console.held_library_logs()
    if held:
        with open(log_path, "a", encoding="utf-8") as log:
            log.writelines(f"[cli-tuner, this process] {line}\n" for line in held)


def run_training(resolved_path: Path, run_dir: Path, env: dict, verbose: bool = False,
                 pass_fds: tuple[int, ...] = (), topology: Topology = SINGLE,
                 strategy: str = "ddp") -> tuple[int, int | None]:
    """Run `axolotl train` in its own session; (exit code, signal we received or None).

    Its whole output goes to train.log; the console gets it too with `verbose`, else the
    preparation and training bars, and on failure the log's last lines. `pass_fds`: the run
    lock, so the folder stays locked while a trainer orphaned by a killed parent still writes
    into it. `topology`: one process, or torchrun's ranks (training.launcher)."""
    env = launcher.environment(env, topology)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    command = launcher.command(resolved_path, topology, strategy)
    received: list[int] = []
    log_path = run_dir / TRAIN_LOG
    write_held_library_logs(log_path)
    with open(log_path, "a", encoding="utf-8", buffering=1) as log:
        # Own session: a terminal's Ctrl-C reaches only us, and we decide what the trainer hears.
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                 text=True, errors="replace", start_new_session=True, pass_fds=pass_fds)
        view = None if verbose else TrainingView(run_dir / PROGRESS_FILE)

        def on_signal(signum, _frame):
            received.append(signum)
            if len(received) == 1:
                reached = launcher.deliver(signal.SIGTERM, child.pid, launcher.uses_torchrun(command))
                who = f"{len(reached)} ranks" if launcher.uses_torchrun(command) else "the trainer"
                say(f"signal {signum}: asking {who} to checkpoint and stop (send again to stop at once)")
            else:
                launcher.kill_all(child.pid)

        hidden = secret_values(env)

        def read_output():
            for line in child.stdout:
                line = redact(line, hidden)
                log.write(line)
                if view is None:
                    console.stream(line)
                else:
                    view.saw(line)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        reader = threading.Thread(target=read_output, name="trainer-output", daemon=True)
        reader.start()
        try:
            while True:
                try:
                    child.wait(timeout=POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if view is not None:
                        view.poll()
            reader.join()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if view is not None:
            view.finish(child.returncode)
    if child.returncode != 0 and not received and not verbose:
        show_log_tail(log_path)
    return child.returncode, (received[0] if received else None)


def log_tail(log_path: Path, count: int = LOG_TAIL_LINES) -> list[str]:
    """The log's last lines that say something: no progress-bar redraws, no blank lines."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    lines = [l.rstrip() for l in lines if l.strip() and not PROGRESS_BAR.search(l)]
    return lines[-count:]


def show_log_tail(log_path: Path) -> None:
    tail = log_tail(log_path)
    if tail:
        console.problem(f"last lines of {log_path}:")
        for line in tail:
            console.problem(f"  {line[:300]}")


def last_error_line(log_path: Path) -> str:
    try:
        lines = [l.strip() for l in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()]
    except OSError:
        return "no log"
    # torchrun's own closing ChildFailedError names no cause; a rank's error line does
    errors = [l for l in lines if ("Error" in l or "error:" in l) and "ChildFailedError" not in l]
    return (errors or lines or ["no output"])[-1][:300]


def progress_of(run_dir: Path) -> dict:
    import json

    try:
        return json.loads((run_dir / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def adopt_finished_checkpoint(checkpoint: Path, run_dir: Path, steps: int) -> None:
    """The run's training ended in `checkpoint` (an interrupt or preemption in its last step): its
    adapter and tokenizer become the run's final files, and progress.json says training ended there,
    as the trainer's own end would have written it."""
    for name in FINAL_FILES:
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, run_dir / name)
    progress = progress_of(run_dir)
    progress.update(step=steps, max_steps=progress.get("max_steps") or steps, last_checkpoint=checkpoint.name,
                    train_end=True, stopped_by_signal=None)
    atomic.write_json(run_dir / PROGRESS_FILE, progress)


def record_run_status(eval_path: Path, status: str) -> None:
    """The check ran while the run was still running; its eval.json carries the status the run ended
    with, the one provenance records."""
    import json

    try:
        report = json.loads(eval_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(report, dict) and report.get("run_status") != status:
        atomic.write_json(eval_path, {**report, "run_status": status})


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
    """The checkpoint check on the test split; the gate's failures when the spec gates the run."""
    loaded, spec = plan.loaded, plan.spec
    test_files = loaded.split_files()["test"]
    if not test_files:
        say("checkpoint check skipped: no test split (set cli_tuner.test_file)")
        return []
    settings = GateSettings.from_settings(loaded.settings)
    baseline = spec.baseline and loaded.settings.baseline  # the base model sets the bar
    with console.phase("checkpoint check", unit="prompts") as bar:
        report = evaluation.evaluate(final, test_file=test_files[0], sample_size=spec.check_sample, baseline=baseline,
                                     device=plan.machine.torch_device,
                                     sandbox_limits=sandbox.Limits(seconds=settings.sandbox_seconds),
                                     on_progress=lambda done, total: bar.update(completed=done, total=total))
        bar.done(f"{report.summary.get('n')} prompts answered")
    write_held_library_logs(final.parent / TRAIN_LOG)
    console.show(report.renderable(console.is_terminal()))
    reasons = report.gate(settings)
    provenance.update(checkpoint_check={"summary": report.summary, "gate_failures": reasons, "gated": spec.gated,
                                        "margin_metric": settings.metric_for(report.summary),
                                        "sandbox": report.context.get("sandbox")})
    if reasons and not spec.gated:
        say("checkpoint check: a random rehearsal model fails the quality gate by design; only `full` enforces it")
    return reasons if spec.gated else []


def run(plan: Plan, options: RunOptions, rehearsal_options: RehearsalOptions | None = None) -> Path:
    """Train the plan's config in its run folder; returns the run folder. Raises the job's errors."""
    identity = identity_of(plan.spec, plan.loaded, plan.verified, rehearsal_options, plan.topology.world_size)
    # The spec decides whether the tiny model replaces the configured one; the options only shape it.
    rehearsal_options = (rehearsal_options or RehearsalOptions()) if plan.spec.cpu_rehearsal else None
    folder = run_folder.open_run(Path(options.output_root), identity, options.run_id, options.new_run,
                                 resume=options.resume, say=say, layout=layout_of(plan))
    try:
        with lifecycle.job_pid_file(Path(options.output_root)):
            attempt = attempts.begin(folder.path, plan.loaded.settings.max_identical_failures)
            return _run_locked(plan, options, rehearsal_options, identity, folder, attempt)
    finally:
        folder.lock.release()


def layout_of(plan: Plan) -> run_folder.Layout:
    topology = plan.topology
    first = topology.node_rank * topology.nproc_per_node
    return run_folder.Layout(topology.world_size, distributed.strategy_of(plan.loaded.axolotl),
                             range(first, first + topology.nproc_per_node))


def resolve_config(plan: Plan, options: RunOptions, rehearsal_options: RehearsalOptions | None,
                   folder: run_folder.RunFolder, run_dir: Path) -> tuple[dict, dict]:
    """The config `axolotl train` reads (the spec's slices, the rehearsal's model, the run folder, the
    plugin, the checkpoint to resume), and what provenance records beside it (attention, rehearsal)."""
    loaded = plan.loaded
    if plan.spec.slices_from_settings:
        cfg = slices.write(loaded, run_dir)
    elif rehearsal_options is not None:
        cfg = slices.write(loaded, run_dir, {"test_datasets": rehearsal_options.val_examples})
    else:
        cfg = dict(loaded.axolotl)
    extra: dict = {}
    if plan.attention_record() is not None:
        extra["attention"] = plan.attention_record()  # the flash-attention source, and any fallback
    if rehearsal_options is not None:
        cfg, extra["rehearsal"] = prepare_rehearsal(rehearsal_options, loaded, plan.facts, run_dir, cfg)
    processes = preprocessing_processes(cfg)
    if processes is not None:
        cfg["dataset_num_proc"] = processes
    cfg["output_dir"] = str(run_dir)
    cfg["dataset_prepared_path"] = prepared_dataset_path(cfg, Path(options.output_root).resolve(),
                                                         plan.verified.data_sha256)
    cfg["plugins"] = sorted(set(cfg.get("plugins") or []) | {PLUGIN})
    # A checkpoint that holds every step is adopted, not resumed: the trainer checks max_steps only
    # after a step, so resuming it would train one step past the limit.
    if folder.resume_from is not None and run_folder.finished_steps(folder.resume_from) is None:
        cfg["resume_from_checkpoint"] = str(folder.resume_from)
    return cfg, extra


def start_provenance(plan: Plan, cfg: dict, run_dir: Path, identity: run_folder.Identity,
                     folder: run_folder.RunFolder, attempt: attempts.Attempt, tracking_summary: dict,
                     trainer_record: dict, extra: dict) -> Provenance:
    """The run's record from the plan (config, data, machine, topology) and the resolved config."""
    loaded, verified = plan.loaded, plan.verified
    test_files = loaded.split_files()["test"]
    return Provenance.start(
        run_dir, plan.machine.as_record(),
        run_id=run_dir.name, mode=plan.spec.name, run_spec=plan.spec.as_record(),
        base_model=cfg.get("base_model"), requested_base_model=loaded.base_model,
        config={"path": str(loaded.path), "overlays": [str(p) for p in loaded.overlays], "sets": loaded.sets,
                "sha256": identity.config_sha256, "resolved_path": RESOLVED_CONFIG,
                "resolved_sha256": canonical_hash(cfg)},
        resolved_config=cfg,
        data={"data_sha256": verified.data_sha256, "files": verified.files,
              "test_file": str(test_files[0]) if test_files else None,
              # the files in RUN/data/ that training and evaluation read instead, each with its own hash
              "slices": slices.records(loaded.axolotl, cfg, verified.files)},
        resumed_from=folder.resume_from.name if folder.resume_from else None,
        previous_attempt=(folder.previous or {}).get("status"),
        attempt=len(attempt.history),
        tracking=tracking_summary,
        trainer=trainer_record,
        world_size=plan.topology.world_size,
        layout=layout_of(plan).record(),
        topology=plan.topology.record(),
        steps={"planned": cfg.get("max_steps"), "completed": None},
        # the warnings preflight let through (a torch other than the pin, say): the run's own record
        preflight_warnings=[c.line() for c in plan.findings if c.failed],
        **extra,
    )


def train(plan: Plan, options: RunOptions, folder: run_folder.RunFolder, run_dir: Path, resolved_path: Path,
          env: dict, cfg: dict) -> None:
    """`axolotl train` on the resolved config; Interrupted on a signal, TrainingFailed on a non-zero exit.
    A checkpoint that already holds every step is the run's result: training is not started again."""
    finished = run_folder.finished_steps(folder.resume_from) if folder.resume_from is not None else None
    if finished is not None:
        say(f"{folder.resume_from.name} holds all {finished} steps: training is done, not run again")
        adopt_finished_checkpoint(folder.resume_from, run_dir, finished)
        return
    returncode, received = run_training(resolved_path, run_dir, env, verbose=options.verbose,
                                        pass_fds=(folder.lock.fileno(),), topology=plan.topology,
                                        strategy=distributed.strategy_of(cfg))
    progress = progress_of(run_dir)
    if received is not None:
        raise Interrupted(f"interrupted by signal {received} at step {progress.get('step')}; "
                          f"start the same command again to resume from {progress.get('last_checkpoint') or 'the start'}",
                          record=f"signal {received} at step {progress.get('step')}")
    if returncode != 0:
        reason = last_error_line(run_dir / TRAIN_LOG)
        raise TrainingFailed(f"training failed (axolotl exit {returncode}): {reason}; full log: {run_dir / TRAIN_LOG}",
                             record=f"axolotl train exited {returncode}: {reason}")
    say(f"training finished: step {progress.get('step')}, train loss {progress.get('train_loss')}, "
        f"eval loss {progress.get('eval_loss')}")


def publish(plan: Plan, run_dir: Path) -> Path | None:
    """phase2-final/, when the spec publishes (on node 0: one writer); None otherwise."""
    if not plan.spec.publishes:
        return None
    if plan.topology.node_rank > 0:
        say(f"node {plan.topology.node_rank}: training done; node 0 saves, checks and publishes the adapter")
        return None
    return publish_final(run_dir)


def gate(plan: Plan, final: Path, provenance: Provenance) -> None:
    """The published adapter's checkpoint check; CheckpointGateFailed when the gate fails a gated run."""
    reasons = check_final(plan, final, provenance)
    if reasons:
        raise CheckpointGateFailed(f"{final}: checkpoint check failed: {'; '.join(reasons)}",
                                   record=f"checkpoint check failed: {'; '.join(reasons)}")
    say(f"final adapter: {final}")


def ending_of(exc: BaseException | None) -> tuple[str, str | None]:
    """(status, error line) that provenance and attempts.json record for what ended the run: the one
    place the status follows from the exception's type. The error line is the exception's `record`
    where it has one (the same failure then reads the same on every attempt)."""
    if exc is None:
        return "succeeded", None
    record = getattr(exc, "record", None)
    if isinstance(exc, CheckpointGateFailed):
        return "failed_gate", record or str(exc)
    if isinstance(exc, (Interrupted, KeyboardInterrupt)):
        return "interrupted", record or str(exc) or "interrupted"
    return "failed", record or f"{type(exc).__name__}: {exc}"


def _run_locked(plan: Plan, options: RunOptions, rehearsal_options: RehearsalOptions | None,
                identity: run_folder.Identity, folder: run_folder.RunFolder, attempt: attempts.Attempt) -> Path:
    run_dir = folder.path.resolve()
    say(f"run folder: {run_dir}")
    provenance, final, ended = None, None, None
    try:
        with lifecycle.signals_interrupt():  # a stop outside the trainer (rehearsal model, evaluation)
            cfg, extra = resolve_config(plan, options, rehearsal_options, folder, run_dir)
            resolved_path = atomic.write_text(run_dir / RESOLVED_CONFIG, dump_yaml(cfg))
            env, tracking_summary = tracking.training_environment(
                cfg, run_dir, say=say, identity_key=f"{identity.config_sha256}|{identity.data_sha256}")
            env, trainer_record = lifecycle.trainer_environment(env, plan.loaded.settings)
            provenance = start_provenance(plan, cfg, run_dir, identity, folder, attempt, tracking_summary,
                                          trainer_record, extra)
            measurements.write_inputs(plan, cfg, run_dir)  # the plugin's MFU needs them and may not import checks/
            train(plan, options, folder, run_dir, resolved_path, env, cfg)
            final = publish(plan, run_dir)
            if final is not None:
                gate(plan, final, provenance)  # its provenance copy is rewritten below, however the check ends
        return run_dir
    except BaseException as exc:
        ended = exc
        raise
    finally:
        status, error = ending_of(ended)
        # Every ending is final in provenance, whatever raised: succeeded, failed (with the error),
        # interrupted, or failed_gate.
        if provenance is not None:
            progress = progress_of(run_dir)
            provenance.finish(
                status, error,
                steps={"planned": progress.get("max_steps") or provenance.record["steps"]["planned"],
                       "completed": progress.get("step")},
                metrics={"train_loss": progress.get("train_loss"), "eval_loss": progress.get("eval_loss"),
                         "train_runtime_s": progress.get("train_runtime")},
                last_checkpoint=progress.get("last_checkpoint"), measurements=measurements.summary(run_dir))
            if final is not None and final.is_dir():
                atomic.write_json(final / PROVENANCE_FILE, redact_data(provenance.record))  # with the check and the status
                record_run_status(final / EVAL_FILE, status)
        attempt.end(status, error)
