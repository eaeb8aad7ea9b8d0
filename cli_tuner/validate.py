"""`validate`: everything that can be checked without a GPU, in the order a pod would hit it.

Config problems are all listed (one line each) before the command stops, so one round trip
fixes them all; the final line names the first and the exit code says which kind it was.
"""

from __future__ import annotations

import sys

from . import config_checks, model_facts
from .config import LoadedConfig, load_from_args, require_local_datasets
from .errors import ConfigError, DataError, EnvironmentProblem

KIND_ERRORS = {"data": DataError, "config": ConfigError, "environment": EnvironmentProblem}


def resolve_facts(loaded: LoadedConfig):
    facts = model_facts.lookup(loaded.base_model) if loaded.base_model else None
    if facts is None:
        raise ConfigError(
            f"{loaded.path}: base_model {loaded.base_model!r} cannot be resolved offline (no local folder, "
            "no cached config.json, not a shipped model); set base_model to a local folder or go online once"
        )
    return facts


def resolve_gpu(loaded: LoadedConfig):
    if not loaded.target and loaded.gpu_memory_gb is None:
        return None
    from . import memory

    return memory.resolve_target(loaded.target, loaded.gpu_memory_gb)


def raise_for(problems: list[config_checks.Problem], source: str) -> None:
    """Print every problem, then raise the first one's kind with a one-line summary."""
    errors = [p for p in problems if p.level == "error"]
    for problem in problems:
        print(f"  {problem.level}: {problem.line()}", file=sys.stderr)
    if not errors:
        return
    first = errors[0]
    more = f" (and {len(errors) - 1} more above)" if len(errors) > 1 else ""
    raise KIND_ERRORS[first.kind](f"{source}: {first.line()}{more}")


def check_config(loaded: LoadedConfig, facts, gpu) -> None:
    raise_for(config_checks.all_problems(loaded, facts, gpu), str(loaded.path))


def verify_data(loaded: LoadedConfig):
    from . import data

    require_local_datasets(loaded)
    return data.verify(loaded.training_files() + loaded.split_files()["test"])


def command(args) -> int:
    loaded = load_from_args(args)
    verified = verify_data(loaded)
    print(f"data: {len(verified.files)} files match their manifest (data sha256 {verified.data_sha256[:16]}...)")
    facts = resolve_facts(loaded)
    gpu = resolve_gpu(loaded)
    check_config(loaded, facts, gpu)
    print(f"config: {loaded.path} passes Axolotl's schema and the stricter checks ({facts.model_type}, {facts.source} facts)")
    if not args.no_data_report:
        from . import data_report

        report = data_report.check(loaded, tokenizer_override=args.tokenizer,
                                   allow_dangerous=loaded.allow_dangerous_data or bool(loaded.tuner.get("allow_dangerous_data")))
        if report.errors:
            raise DataError(f"data report: {report.errors[0]}" + (f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""))
    if gpu is not None:
        from . import memory

        memory.check(loaded, loaded.target, loaded.gpu_memory_gb)
    print(f"validate: OK ({loaded.path})")
    return 0
