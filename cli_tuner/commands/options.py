"""Options shared by several verbs, and their translation into the library's plain values."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .. import config, console, settings
from ..checks.distributed import Topology
from ..plan import Plan
from ..errors import UsageError
from ..config import DATA_DIR_ENV, LoadedConfig
from ..facts import gpus
from ..paths import DEFAULT_CONFIG, DEFAULT_OUTPUT_ROOT
from ..training.pipeline import RunOptions


def output_root() -> str:
    """The folder that holds the run folders when no --output-root says: OUTPUT_ROOT, else outputs
    (the one reader of the variable; doctor checks its disk, the training verbs write there)."""
    return os.environ.get("OUTPUT_ROOT") or DEFAULT_OUTPUT_ROOT


def add_config_arguments(parser: argparse.ArgumentParser, data: bool = True, *, trust_remote_code: bool = True,
                         dangerous_data: bool = True) -> None:
    """The config and its overlays; `data`: the verb reads the data, so it takes the data folder too;
    `trust_remote_code`/`dangerous_data`: whether the verb offers the permission (only where a check it
    runs reads it)."""
    parser.add_argument("--config", default=os.environ.get("TRAIN_CONFIG", DEFAULT_CONFIG),
                        help="Axolotl YAML config (env TRAIN_CONFIG; default %(default)s)")
    if data:
        parser.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV) or None, metavar="DIR",
                            help="the locked folder every split is read from: the config's dataset paths and "
                                 "cli_tuner.test_file name files in it (env TRAIN_DATA_DIR; default: the folder "
                                 "of the config's first train file)")
    parser.add_argument("--overlay", action="append", default=[], metavar="YAML",
                        help="extra YAML deep-merged over the config, in order (repeatable)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key; dotted keys reach nested tables, values are YAML-typed "
                             "(e.g. --set micro_batch_size=2 --set cli_tuner.target=h100)")
    parser.add_argument("--target", default=None,
                        help="hardware to check against: a5000, h100, m4, cpu, ... (default: the config's cli_tuner.target)")
    parser.add_argument("--gpu-memory", type=float, default=None, metavar="GB",
                        help="GPU memory of an unlisted target, in GB")
    if trust_remote_code:
        parser.add_argument("--allow-trust-remote-code", action="store_true",
                            help="permit trust_remote_code: true (runs code from the model repo)")
    if dangerous_data:
        parser.add_argument("--allow-dangerous-data", action="store_true",
                            help="train even when the data holds commands the risk check flags")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-root", default=output_root(),
                        help="folder that holds one sub-folder per run (env OUTPUT_ROOT; default %(default)s)")
    parser.add_argument("--run-id", default=os.environ.get("RUN_ID"),
                        help="name of the run folder (env RUN_ID); default: mode-confighash-datahash, "
                             "so a restarted pod resumes the same run")
    parser.add_argument("--new-run", action="store_true",
                        help="start a fresh run folder even if this config and data finished before")
    parser.add_argument("--no-resume", action="store_true",
                        help="refuse to continue from checkpoints found in the run folder")
    parser.add_argument("--skip-checks", action="store_true",
                        help="skip the environment checks before training (not recommended)")
    parser.add_argument("--verbose", action="store_true", default=env_flag("CLI_TUNER_VERBOSE"),
                        help="stream Axolotl's full log to the console as it comes (env CLI_TUNER_VERBOSE=1); "
                             "by default it goes to the run's train.log and the console shows one bar per phase")
    parser.add_argument("--on-finish", choices=settings.FINISH_CHOICES, default=None,
                        help="when the run ends: stop the RunPod pod, stay up idle, or exit (wins over ON_FINISH, "
                             "then cli_tuner.on_finish; default auto = stop on RunPod for full and TRAIN_MODE starts)")
    parser.add_argument("--unattended", action="store_true",
                        help="started by the container's TRAIN_MODE (set for you): a restart may follow, so errors "
                             "no restart can fix follow --on-finish too")


def positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1 (steps, processes, GPUs): 0 or less is a usage
    error (exit 2) at parse time, like any other malformed option."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive whole number (at least 1)")
    return value


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def load_config(args: argparse.Namespace, last_overlays: tuple[str, ...] = (), on_finish: str | None = None) -> LoadedConfig:
    """The config with the user's overlays, then `last_overlays` (a mode's own), then --set."""
    return config.load(
        args.config,
        overlays=[*args.overlay, *last_overlays],
        sets=args.sets,
        on_finish=on_finish,
        data_dir=getattr(args, "data_dir", None),
        **target_check(),
        target_override=args.target,
        gpu_memory_gb=args.gpu_memory,
        allow_trust_remote_code=getattr(args, "allow_trust_remote_code", False),  # offered where a check reads it
        allow_dangerous_data=getattr(args, "allow_dangerous_data", False),
    )


def target_check() -> dict:
    """What config.load needs to check `cli_tuner.target` against the GPU table (facts, above the base)."""
    return {"known_target": lambda name: gpus.lookup(name) is not None, "target_names": gpus.known_names()}


def settings_without_config(args: argparse.Namespace) -> settings.Settings:
    """`on_finish` from `--on-finish` and ON_FINISH alone: how a run that could not load its config ends
    (by the same precedence; a bad stand-in of another key does not change it)."""
    names = {key: name for name, key in settings.environment_names().items()}
    stand_in = {k: v for k, v in config.from_environment(os.environ).items() if k == "on_finish"}
    return settings.build([(lambda key: names[key], stand_in),
                           (lambda key: "--on-finish", {"on_finish": args.on_finish} if args.on_finish else {})])


def run_options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(output_root=Path(args.output_root), run_id=args.run_id, new_run=args.new_run,
                      resume=not args.no_resume, verbose=args.verbose)


def show_findings(plan: Plan) -> None:
    """The warnings preflight collected, on stderr, before the command goes on."""
    for finding in plan.findings:
        console.problem(f"  {finding.level}: {finding.line()}")


def add_gpus_argument(parser: argparse.ArgumentParser, default_help: str = "1") -> None:
    parser.add_argument("--gpus", type=positive_int, default=None, metavar="N",
                        help=f"training processes (one per GPU) on this machine (default {default_help}); the "
                             "effective batch is micro batch x accumulation x processes")


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    """Several machines, as torchrun takes them; each defaults to the PET_* variable torchrun reads."""
    parser.add_argument("--nnodes", type=positive_int, default=_env_int("PET_NNODES", 1),
                        help="machines in the run (env PET_NNODES; default %(default)s)")
    parser.add_argument("--node-rank", type=int, default=_env_int("PET_NODE_RANK", 0),
                        help="this machine's rank, 0 on the master (env PET_NODE_RANK; default %(default)s)")
    parser.add_argument("--master-addr", default=os.environ.get("PET_MASTER_ADDR") or os.environ.get("MASTER_ADDR"),
                        help="address of the node-rank-0 machine, reachable from all (env PET_MASTER_ADDR or MASTER_ADDR)")
    parser.add_argument("--master-port", type=int,
                        default=_env_int("PET_MASTER_PORT", None) or _env_int("MASTER_PORT", None),
                        help="free TCP port on the master (env PET_MASTER_PORT or MASTER_PORT; torchrun's default 29500)")


def _env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name}={value!r} is not a whole number; fix or unset it") from None


def topology(args: argparse.Namespace, default_processes: int = 1, cpu: bool = False) -> Topology:
    """The processes the command line asks for; --gpus defaults to `default_processes`."""
    processes = args.gpus if getattr(args, "gpus", None) is not None else default_processes
    return Topology(nproc_per_node=processes, nnodes=getattr(args, "nnodes", 1), node_rank=getattr(args, "node_rank", 0),
                    master_addr=getattr(args, "master_addr", None), master_port=getattr(args, "master_port", None),
                    cpu=cpu)
