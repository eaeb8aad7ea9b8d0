"""One folder per run: its identity, what it holds, and whether a new start may use it.

A run's identity is (mode, config hash, data hash). The default folder name is derived from it,
so a pod restarted with the same inputs finds its own checkpoints and resumes; different inputs
in an existing folder, or a finished run, are refused rather than mixed or overwritten.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .. import atomic, console
from ..errors import AlreadyFinished, EnvironmentProblem, UsageError
from ..paths import IDENTITY_FILE, LOCK_FILE, PROVENANCE_FILE as PROVENANCE
from . import run_lock


CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
CHECKPOINT_FILES = ("trainer_state.json", "adapter_config.json", "optimizer.pt", "scheduler.pt")
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class Identity:
    mode: str
    config_sha256: str
    data_sha256: str

    def default_run_id(self) -> str:
        return f"{self.mode}-{self.config_sha256[:8]}-{self.data_sha256[:8]}"

    def record(self) -> dict:
        """The identity in provenance.json's shape, so either file answers `matches`."""
        return {"mode": self.mode, "config": {"sha256": self.config_sha256}, "data": {"data_sha256": self.data_sha256}}

    def matches(self, record: dict) -> bool:
        return (record.get("mode"), record.get("config", {}).get("sha256"), record.get("data", {}).get("data_sha256")) == (
            self.mode, self.config_sha256, self.data_sha256)


def rank_shards_problem(path: Path, strategy: str, ranks: range) -> str | None:
    """A checkpoint of several processes is complete only when every rank wrote its part: its RNG
    state (transformers' rng_state_<rank>.pth), and under ZeRO its optimizer partition, under FSDP
    its optimizer shard. `ranks`: the ranks whose files this machine's folder must hold."""
    if len(ranks) < 2 and ranks.start == 0:
        return None
    missing = [f"rng_state_{r}.pth" for r in ranks if not (path / f"rng_state_{r}.pth").is_file()]
    if strategy.startswith("zero"):
        missing += [f"global_step*/*zero_pp_rank_{r}_*optim_states.pt" for r in ranks
                    if not any(path.glob(f"global_step*/*zero_pp_rank_{r}_*optim_states.pt"))]
    if strategy == "fsdp2" and (path / "optimizer_0").is_dir():
        missing += [f"optimizer_0/__{r}_0.distcp" for r in ranks if not (path / "optimizer_0" / f"__{r}_0.distcp").is_file()]
    return f"missing {', '.join(missing)} (not every rank finished its part)" if missing else None


def required_files(strategy: str) -> tuple[str, ...]:
    """DeepSpeed keeps the optimizer in global_step*/ and FSDP may in optimizer_0/: no optimizer.pt."""
    if strategy == "ddp":
        return CHECKPOINT_FILES
    return tuple(name for name in CHECKPOINT_FILES if name != "optimizer.pt")


def checkpoint_problem(path: Path, strategy: str = "ddp", ranks: range = range(1)) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when it is complete and loadable."""
    missing = [name for name in required_files(strategy) if not (path / name).is_file()]
    weights = next((path / name for name in ADAPTER_WEIGHTS if (path / name).is_file()), None)
    if weights is None:
        missing.append(ADAPTER_WEIGHTS[0])
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        state = json.loads((path / "trainer_state.json").read_text())
        int(state["global_step"])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        return f"unreadable trainer_state.json ({exc})"
    if weights.suffix == ".safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(weights), framework="pt") as handle:
                list(handle.keys())
        except Exception as exc:  # a truncated file fails here, whatever the exception class
            return f"unreadable {weights.name} ({type(exc).__name__})"
    for name in ("optimizer.pt", "scheduler.pt"):
        if (path / name).is_file() and (path / name).stat().st_size == 0:
            return f"empty {name}"
    return rank_shards_problem(path, strategy, ranks)


def finished_steps(path: Path) -> int | None:
    """The step count of a checkpoint whose trainer had reached its limit (global_step >= max_steps in
    its trainer_state.json), else None. Resuming such a checkpoint trains one step past the limit:
    transformers' loop checks the limit only after a step, so the run is finished from it instead."""
    try:
        state = json.loads((path / "trainer_state.json").read_text())
        step, limit = int(state["global_step"]), int(state.get("max_steps") or 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return step if limit > 0 and step >= limit else None


def checkpoints(run_dir: Path) -> list[Path]:
    found = [p for p in run_dir.glob("checkpoint-*") if p.is_dir() and CHECKPOINT_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_PATTERN.match(p.name).group(1)))


def newest_complete_checkpoint(run_dir: Path, say=console.say, strategy: str = "ddp",
                               ranks: range = range(1)) -> Path | None:
    """The newest checkpoint that can be resumed from; broken newer ones are set aside, not deleted."""
    for path in reversed(checkpoints(run_dir)):
        problem = checkpoint_problem(path, strategy, ranks)
        if problem is None:
            return path
        # Not `checkpoint-*`: transformers globs that to rotate and to find the latest checkpoint.
        aside = path.with_name(f"incomplete-{path.name}-{int(time.time())}")
        path.rename(aside)
        say(f"skipping {path.name}: {problem} (half-written by a kill?); moved to {aside.name}")
    return None


@dataclass
class RunFolder:
    path: Path
    identity: Identity
    resume_from: Path | None
    previous: dict | None
    lock: run_lock.RunLock | None = None


def _read_record(path: Path) -> dict | None:
    """provenance.json, or the identity file of a start killed before provenance was written."""
    for name in (PROVENANCE, IDENTITY_FILE):
        try:
            return json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
    return None


def _make_folder(path: Path, what: str, fix: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot create {what} {path}: {exc.strerror}; {fix}") from exc


def _create(path: Path, identity: Identity) -> None:
    atomic.write_json(path / IDENTITY_FILE, identity.record())


def _next_free(root: Path, base: str) -> Path:
    for index in range(2, 10_000):
        candidate = root / f"{base}-{index}"
        if not candidate.exists():
            return candidate
    raise UsageError(f"{root}: too many runs named {base}-N; pass --run-id")


FINISHED = ("succeeded", "failed_gate")  # the run ended: training again would not change it


@dataclass(frozen=True)
class Layout:
    """How many processes and which engine wrote a run's checkpoints; a resume must keep both."""

    world_size: int = 1
    strategy: str = "ddp"
    ranks: range = range(1)       # the ranks whose files this machine's folder holds

    def record(self) -> dict:
        return {"world_size": self.world_size, "strategy": self.strategy}


def open_run(root: Path, identity: Identity, run_id: str | None, new_run: bool, resume: bool, say=console.say,
             layout: Layout = Layout()) -> RunFolder:
    """Pick the run folder, lock it, and decide: fresh start, resume, or refuse.

    The returned folder holds the run lock (`folder.lock`); the caller releases it when training
    ends. It is taken before anything in the folder is read or moved, so a second start can
    neither mix into the run nor set aside a checkpoint the first is still writing.
    """
    root = Path(root)
    _make_folder(root, "output folder", "mount a writable volume there")
    path = root / (run_id or identity.default_run_id())
    if new_run and path.exists():
        path = _next_free(root, path.name)
    if path.exists() and _contents(path):
        _refuse_other_or_finished(path, identity)  # before the lock: a refused folder is left as it was
    _make_folder(path, "run folder", "mount a writable volume there or choose another --output-root")
    lock = run_lock.acquire(path, say=say)
    try:
        return _decide(path, identity, resume, lock, say, layout)
    except BaseException:
        lock.release()
        raise


def _contents(path: Path) -> list[Path]:
    return [p for p in path.iterdir() if p.name != LOCK_FILE]


def _refuse_other_or_finished(path: Path, identity: Identity) -> dict:
    """The folder's record, unless the folder is someone else's, another run's, or finished."""
    previous = _read_record(path)
    if previous is None:
        raise UsageError(f"{path} exists, is not empty and has no {PROVENANCE}; choose another --run-id or empty it")
    if not identity.matches(previous):
        raise UsageError(
            f"{path} holds another run (mode {previous.get('mode')}, config {str(previous.get('config', {}).get('sha256'))[:8]}, "
            f"data {str(previous.get('data', {}).get('data_sha256'))[:8]}); refusing to mix runs: use --new-run or another --run-id"
        )
    if previous.get("status") in FINISHED:
        raise AlreadyFinished(f"{path}: already finished (status {previous.get('status')}); its outputs are kept: "
                              f"pass --new-run to train again")
    return previous


def _decide(path: Path, identity: Identity, resume: bool, lock, say, layout: Layout = Layout()) -> RunFolder:
    if not _contents(path):
        _create(path, identity)
        return RunFolder(path, identity, None, None, lock)
    previous = _refuse_other_or_finished(path, identity)
    if not resume:
        raise UsageError(f"{path} holds an unfinished run; drop --no-resume to continue it, or pass --new-run")
    _refuse_other_layout(path, previous, layout)
    checkpoint = newest_complete_checkpoint(path, say=say, strategy=layout.strategy, ranks=layout.ranks)
    if checkpoint is None:
        say(f"{path.name}: unfinished run without a usable checkpoint; starting it again from step 0")
    else:
        say(f"{path.name}: resuming from {checkpoint.name} (status was {previous.get('status')})")
    return RunFolder(path, identity, checkpoint, previous, lock)


def _refuse_other_layout(path: Path, previous: dict, layout: Layout) -> None:
    """Checkpoints hold per-rank RNG state and, under FSDP/ZeRO, per-rank shards: they resume only on
    the processes and engine that wrote them."""
    before = previous.get("layout")
    if not before or not checkpoints(path):
        return
    if (before.get("world_size"), before.get("strategy")) != (layout.world_size, layout.strategy):
        raise UsageError(f"{path}: its checkpoints were written by {before.get('world_size')} processes with "
                         f"{before.get('strategy')}, this start asks {layout.world_size} with {layout.strategy}; resume "
                         f"with the same --gpus/--nnodes and overlay, or pass --new-run")
