"""The slices a run trains and evaluates on: the first N examples of each file, written into the
run folder, and sized so that one optimizer step and one eval batch of the config fit in them.

A slice that is too small trains no step at all (the sampler drops an incomplete last batch) or
makes no eval batch, so a slice is grown past the asked size when it must be, and the whole files
must hold one step and one batch (DataError, exit 3, otherwise).
"""

from __future__ import annotations

from pathlib import Path

from .. import atomic, console
from ..data import sha256_file
from ..batching import eval_batches, steps
from ..checks import data_report
from ..config import LoadedConfig
from ..errors import DataError
from ..training_shape import TrainingShape


SLICED_KEYS = ("datasets", "test_datasets")  # the config keys whose files a run may cut


def write(loaded: LoadedConfig, run_dir: Path, limits: dict | None = None) -> dict:
    """The config with `limits` (config key -> examples per file; default: cli_tuner.train_examples
    and val_examples) cut into files in the run folder."""
    cfg = dict(loaded.axolotl)
    if limits is None:
        limits = {"datasets": loaded.settings.train_examples, "test_datasets": loaded.settings.val_examples}
    for key, limit in limits.items():
        if not limit:
            continue
        entries = []
        for index, entry in enumerate(cfg.get(key) or []):
            source = Path(entry["path"])
            lines = example_lines(source)[:int(limit)]
            target = atomic.write_text(run_dir / "data" / f"{key}-{index}-{source.name}", "\n".join(lines) + "\n")
            entries.append({**entry, "path": str(target)})
        cfg[key] = entries
    return cfg


def records(full_cfg: dict, sliced_cfg: dict, verified_files: dict[str, dict]) -> dict[str, dict]:
    """Each slice file `write` put in the run folder (path -> its sha256, examples, the config key it
    stands in for, and the verified file it was cut from with that file's manifest sha256): training
    and evaluation read these, so provenance lists them with their own hashes."""
    found = {}
    for key in SLICED_KEYS:
        for index, (full, sliced) in enumerate(zip(full_cfg.get(key) or [], sliced_cfg.get(key) or [])):
            source, target = Path(full["path"]), Path(sliced["path"])
            if target == source:
                continue
            origin = verified_files.get(str(source)) or {}
            found[str(target)] = {"sha256": sha256_file(target), "lines": len(example_lines(target)),
                                  "key": f"{key}[{index}].path", "cut_from": str(source),
                                  "cut_from_sha256": origin.get("sha256") or sha256_file(source)}
    return found


def example_lines(path: Path) -> list[str]:
    """A JSONL split's examples: its non-blank lines."""
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def across(cfg: dict, processes: int) -> dict:
    """`cfg` as one optimizer step of `processes` ranks consumes data: each rank takes its own micro
    batches, so a step takes the accumulation times the processes."""
    if processes <= 1:
        return cfg
    return {**cfg, "gradient_accumulation_steps": TrainingShape.of(cfg).gradient_accumulation_steps * processes}


def require_one_step(loaded: LoadedConfig, cfg: dict, report: data_report.DataReport, who: str,
                     at_least: int = 1) -> int:
    """The examples one full optimizer step of `cfg` takes; DataError (exit 3) when the data has fewer."""
    needed = steps.examples_for_one_step(cfg, report.train_lengths, at_least=at_least)
    if needed is None:
        train = ", ".join(str(p) for p in loaded.split_files()["train"])
        raise DataError(f"{train}: {len(report.train_lengths)} examples ({sum(report.train_lengths)} tokens) are "
                        f"fewer than one optimizer step of {loaded.path} takes "
                        f"({steps.need_for_one_step(cfg).describe()}); {who} needs more training data, or "
                        "--set gradient_accumulation_steps / micro_batch_size lower")
    return needed


def val_files(loaded: LoadedConfig) -> str:
    return ", ".join(str(p) for p in loaded.split_files()["val"])


def require_eval_batch(loaded: LoadedConfig, cfg: dict, report: data_report.DataReport) -> None:
    """DataError (exit 3) when `cfg` needs eval metrics and the whole eval split makes no eval batch."""
    eval_batches.require_one_batch(cfg, eval_batches.eval_set(report.val_lengths), val_files(loaded), str(loaded.path))


def size_from_settings(loaded: LoadedConfig, report: data_report.DataReport, processes: int = 1) -> None:
    """The settings' slice must hold one full optimizer step of this config's packing, micro batch and
    accumulation on every process, and one eval batch of its eval batching; grow it past
    cli_tuner.train_examples / val_examples when it does not."""
    asked = loaded.settings.train_examples
    if asked:
        cfg = across(loaded.axolotl, processes)
        needed = require_one_step(loaded, cfg, report, "smoke", at_least=asked)
        need = steps.need_for_one_step(cfg)
        if needed != asked:
            console.say(f"smoke slice: {needed} train examples, not {asked}: one optimizer step of this config "
                        f"takes {need.describe()}")
            loaded.settings = loaded.settings.with_values(train_examples=needed)
    asked = loaded.settings.val_examples or 0
    needed = eval_examples(loaded, loaded.axolotl, report, asked)
    if needed is not None and needed != asked:
        console.say(f"smoke slice: {needed} val examples, not {asked}: one eval batch of this config takes "
                    f"{eval_batches.batching(loaded.axolotl).describe()}")
        loaded.settings = loaded.settings.with_values(val_examples=needed)


def eval_examples(loaded: LoadedConfig, cfg: dict, report: data_report.DataReport, asked: int) -> int | None:
    """The val examples per file (at least `asked`) that make one eval batch of `cfg`; None when the
    slice is not cut (`asked` 0) or nothing evaluates. DataError (exit 3) when the whole files do not."""
    require_eval_batch(loaded, cfg, report)
    if not asked or not eval_batches.evaluates(cfg) or not report.val_lengths:
        return None
    return eval_batches.examples_for_one_batch(cfg, report.val_lengths, at_least=asked)


def rehearsal_eval_examples(loaded: LoadedConfig, cfg: dict, report: data_report.DataReport, asked: int) -> int:
    """The rehearsal evaluates the first `asked` val examples with the pod's eval batching at its own
    row length (`cfg`: the rehearsal's config); more when one eval batch needs more."""
    needed = eval_examples(loaded, cfg, report, asked)
    if needed is None or needed == asked:
        return asked
    console.say(f"rehearsal eval slice: {needed} val examples, not {asked}: one eval batch of "
                f"the rehearsal takes {eval_batches.batching(cfg).describe()}")
    return needed
