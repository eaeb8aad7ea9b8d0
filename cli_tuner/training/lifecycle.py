"""What a run costs beyond its training: what happens when it ends, and what the trainer is told.

A pod bills by the hour whether it trains or not. When a run ends (`on_finish`):
- `stop`: ask RunPod's API to stop this pod (needs RUNPOD_POD_ID and RUNPOD_API_KEY, both of which
  RunPod sets inside a pod); the volume is kept, the GPU stops billing;
- `idle`: stay up, doing nothing, until the pod is stopped (to look around over SSH: it bills);
- `exit`: end the process with the run's exit code (a container's restart policy may start it again);
- `auto` (the default): `stop` on a RunPod pod for `full` and for unattended starts (TRAIN_MODE),
  `exit` everywhere else.
The choice is the setting `on_finish` (`--on-finish`, `ON_FINISH` or `cli_tuner.on_finish`; see
cli_tuner/settings.py for which wins).
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .. import atomic, console
from ..errors import CheckpointGateFailed, CliTunerError, EnvironmentProblem, Interrupted, RunFolderBusy, TrainingFailed
from ..paths import CHECKPOINT_MINUTES_ENV, job_pid_file as pid_file_path
from ..settings import Settings
# After the stop request, wait this long for RunPod's SIGTERM: exiting at once could let the
# restart policy start the container again before the stop lands.
STOP_WAIT_S = 300
ALLOC_CONF = "expandable_segments:True"


def trainer_environment(env: dict, settings: Settings) -> tuple[dict, dict]:
    """(the trainer's environment, what of it provenance records)."""
    env = dict(env)
    # Fewer out-of-memory crashes from fragmentation with varying sequence lengths; the user's wins.
    env.setdefault("PYTORCH_CUDA_ALLOC_CONF", ALLOC_CONF)
    env[CHECKPOINT_MINUTES_ENV] = repr(float(settings.checkpoint_every_minutes))
    return env, {"PYTORCH_CUDA_ALLOC_CONF": env["PYTORCH_CUDA_ALLOC_CONF"],
                 "checkpoint_every_minutes": settings.checkpoint_every_minutes,
                 "max_identical_failures": settings.max_identical_failures}


# ------------------------------------------------------------------ on finish

@dataclass(frozen=True)
class Finish:
    action: str   # "stop", "idle" or "exit"
    source: str   # where the choice came from, for the line that announces it


def on_runpod(env=os.environ) -> bool:
    return bool(env.get("RUNPOD_POD_ID"))


def resolve_finish(settings: Settings, stops_pod_when_attended: bool, unattended: bool, env=os.environ) -> Finish:
    """The action of the (already checked) `on_finish` setting for this run and start
    (`stops_pod_when_attended`: the run spec's)."""
    choice, source = settings.on_finish, settings.source("on_finish")
    if choice == "auto":
        stop = on_runpod(env) and (unattended or stops_pod_when_attended)
        return Finish("stop" if stop else "exit", "auto")
    return Finish(choice, source)


def applies(error: BaseException | None, unattended: bool) -> bool:
    """Whether this ending follows the finish setting, or simply exits with its code."""
    if error is None or isinstance(error, CheckpointGateFailed):
        return True  # the run ended; nothing a restart could change
    if isinstance(error, (Interrupted, RunFolderBusy, KeyboardInterrupt)):
        return False  # the pod is being stopped already, or another process is training
    if isinstance(error, TrainingFailed):
        # Unattended, RunPod's restart resumes from the last checkpoint (attempts cap the retries);
        # typed in a terminal and left alone, nobody would restart it.
        return not unattended
    if isinstance(error, CliTunerError):
        # A restart cannot fix a finished run (AlreadyFinished), a refused one (RepeatedFailure),
        # or a bad config, data or machine. A person at a terminal gets the error and the prompt back.
        return unattended
    return False


def stop_pod(pod_id: str, api_key: str) -> dict:
    """RunPod's podStop through its SDK (RUNPOD_API_BASE_URL, read by the SDK, points it elsewhere).
    The SDK is the `runpod` extra (requirements-runpod.txt): the CUDA image has it, the CPU image not."""
    try:
        import runpod
    except ImportError as exc:
        raise EnvironmentProblem("the RunPod SDK is not installed (the CUDA image has it): "
                                 "pip install -r requirements-runpod.txt -c requirements-lock.txt") from exc

    runpod.api_key = api_key
    return runpod.stop_pod(pod_id)


def wait_for_stop(timeout_s: float | None) -> int | None:
    """Sleep until SIGTERM/SIGINT (the pod being stopped) or the timeout; the signal or None."""
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum))
                for s in (signal.SIGTERM, signal.SIGINT)}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while not received and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return received[0] if received else None


def carry_out(finish: Finish, exit_code: int, what: str, say=console.say, env=os.environ) -> int:
    """Do what `finish` says now that the run ended (`what`: one line on how); the exit code to end with."""
    if finish.action == "stop":
        pod_id, api_key = env.get("RUNPOD_POD_ID"), env.get("RUNPOD_API_KEY")
        if not pod_id:
            say(f"on finish ({what}): cannot stop the pod: RUNPOD_POD_ID is not set (not on RunPod?); exiting {exit_code}")
            return exit_code
        if not api_key:
            say(f"on finish ({what}): cannot stop pod {pod_id}: RUNPOD_API_KEY is not set; exiting {exit_code}, "
                f"and the pod bills until you stop it in the RunPod console")
            return exit_code
        say(f"on finish ({what}): stopping pod {pod_id} through RunPod's API (on_finish=stop, {finish.source}); "
            f"the volume is kept")
        try:
            stop_pod(pod_id, api_key)
        except EnvironmentProblem as exc:
            say(f"on finish: cannot stop pod {pod_id}: {exc}; exiting {exit_code}, stop the pod in the RunPod console")
            return exit_code
        except Exception as exc:  # noqa: BLE001 - any SDK or network failure: say it, then exit
            say(f"on finish: RunPod did not stop pod {pod_id} ({type(exc).__name__}: {exc}); exiting {exit_code}, "
                f"stop the pod in the RunPod console")
            return exit_code
        received = wait_for_stop(STOP_WAIT_S)
        say(f"pod stop {'under way (signal ' + str(received) + ')' if received else 'requested'}; exiting {exit_code}")
        return exit_code
    if finish.action == "idle":
        say(f"on finish ({what}): staying up idle (on_finish=idle, {finish.source}); "
            f"the pod bills until you stop it")
        received = wait_for_stop(None)
        say(f"signal {received}: exiting {exit_code}")
        return exit_code
    return exit_code


@contextmanager
def job_pid_file(output_root: Path) -> Iterator[Path | None]:
    """`.job-<pid>.pid` in the output root while this job runs: the container's start script
    forwards a pod stop (SIGTERM) to it, also when the job was started from a terminal."""
    path = pid_file_path(Path(output_root), os.getpid())
    try:
        atomic.write_text(path, f"{os.getpid()}\n")
    except CliTunerError:
        path = None  # an unwritable output root is reported where the run folder is made
    try:
        yield path
    finally:
        if path is not None:
            path.unlink(missing_ok=True)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM/SIGINT raise Interrupted while the job works outside the trainer (building the
    rehearsal model, evaluating the final adapter): Python's default for SIGTERM ends the process
    on the spot, and provenance would keep saying `running`."""

    def on_signal(signum, _frame):
        raise Interrupted(f"interrupted by signal {signum} outside training; start the same command again to continue")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
