"""Load an Axolotl YAML config, layer overlays and `--set` overrides, and resolve it.

The resolved config is the one thing Axolotl receives: it is written into the run folder and
hashed into provenance. Keys under `cli_tuner:` are this job's own settings and are removed
before Axolotl sees the config; they become one checked `settings.Settings` here, merged with their
environment stand-ins and command-line options (the precedence rule is in cli_tuner/settings.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from . import settings as job_settings
from .errors import ConfigError, DataError, UsageError
from .settings import TUNER_KEY, Settings
from .training_shape import TrainingShape
DEFAULT_VAL_FRACTION = 0.1


def read_yaml(path: Path | str) -> dict:
    import yaml  # 25 ms: `--help` and the commands that read no YAML do not pay it

    path = Path(path)
    if not path.is_file():
        if path.is_absolute():
            raise ConfigError(f"{path}: config file not found; pass --config with an existing YAML file")
        raise ConfigError(f"{path}: config file not found (resolved against {Path.cwd()}); run from the project "
                          "folder, or give the file's absolute path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({exc.problem}); fix the syntax on that line") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the file") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def deep_merge(base: dict, overlay: dict) -> dict:
    """Overlay wins; nested mappings merge key by key; lists and scalars are replaced whole."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_set(config: dict, assignment: str) -> None:
    """`a.b.c=value`: value is parsed as YAML, so 2 is an int, true a bool, [q_proj] a list."""
    if "=" not in assignment:
        raise UsageError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set micro_batch_size=2")
    import yaml

    dotted, raw = assignment.split("=", 1)
    try:
        value = parse_value(raw)
    except yaml.YAMLError as exc:
        raise UsageError(f"--set {dotted}: value {raw!r} is not valid YAML ({exc})") from exc
    keys = dotted.strip().split(".")
    node: Any = config
    for index, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            node = _list_item(node, key, dotted)
            continue
        if not isinstance(node.get(key), (dict, list)):
            node[key] = {}
        node = node[key]
    last = keys[-1]
    if isinstance(node, list):
        position = _list_index(node, last, dotted)
        node[position] = value
    else:
        node[last] = value


def parse_value(raw: str) -> Any:
    """A value typed on a command line or in the environment: YAML (2 is an int, true a bool)."""
    import yaml

    return _float_if_numeric(yaml.safe_load(raw)) if raw != "" else ""


def _float_if_numeric(value: Any) -> Any:
    """PyYAML (YAML 1.1) reads `1e-4` as a string; on the command line it is meant as a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _list_index(items: list, key: str, dotted: str) -> int:
    if not key.isdigit() or int(key) >= len(items):
        raise UsageError(f"--set {dotted}: {key!r} is not an index of a {len(items)}-item list")
    return int(key)


def _list_item(items: list, key: str, dotted: str) -> Any:
    return items[_list_index(items, key, dotted)]


def canonical_hash(config: dict) -> str:
    """SHA256 of the config's canonical JSON: key order and YAML formatting do not change it."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class LoadedConfig:
    path: Path
    axolotl: dict
    settings: Settings = field(default_factory=Settings)  # the checked `cli_tuner:` block
    overlays: list[Path] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    target_override: str | None = None
    gpu_memory_gb: float | None = None
    allow_trust_remote_code: bool = False
    allow_dangerous_data: bool = False
    # The one folder every split is read from (--data-dir, TRAIN_DATA_DIR, else the first train file's
    # folder), and where that came from; the config's split paths were placed in it at load.
    data_dir: Path | None = None
    data_dir_source: str = ""

    @property
    def target(self) -> str | None:
        return self.target_override or self.settings.target

    @property
    def base_model(self) -> str:
        return str(self.axolotl.get("base_model") or "")

    @property
    def tokenizer_source(self) -> str:
        return str(self.axolotl.get("tokenizer_config") or self.base_model)

    @property
    def sha256(self) -> str:
        return canonical_hash(self.axolotl)

    @property
    def allows_dangerous_data(self) -> bool:
        """Dangerous commands in the data are warnings, not errors: --allow-dangerous-data or the config's
        cli_tuner.allow_dangerous_data."""
        return self.allow_dangerous_data or self.settings.allow_dangerous_data

    @property
    def shape(self) -> TrainingShape:
        """Row length, batch and packing, with Axolotl's defaults (read from the config as it is now:
        a machine's fallback may rewrite it after loading)."""
        return TrainingShape.of(self.axolotl)

    def split_files(self) -> dict[str, list[Path]]:
        train = [Path(d["path"]) for d in self.axolotl.get("datasets") or [] if isinstance(d, dict) and d.get("path")]
        val = [Path(d["path"]) for d in self.axolotl.get("test_datasets") or [] if isinstance(d, dict) and d.get("path")]
        test_file = self.settings.test_file
        if test_file:
            test = [in_data_folder(test_file, self.data_dir)]
        else:
            test = [self.data_dir / "test.jsonl"] if self.data_dir and (self.data_dir / "test.jsonl").is_file() else []
        return {"train": train, "val": val, "test": test}

    def split_entries(self) -> list[tuple[str, Path]]:
        """(the key that names it, the file) for every split the run reads."""
        entries = [(f"{key}[{index}].path", Path(entry["path"]))
                   for key in SPLIT_KEYS for index, entry in enumerate(self.axolotl.get(key) or [])
                   if isinstance(entry, dict) and entry.get("path")]
        return entries + [(key_name("test_file"), path) for path in self.split_files()["test"]]

    def training_files(self) -> list[Path]:
        files = self.split_files()
        return files["train"] + files["val"]


SPLIT_KEYS = ("datasets", "test_datasets")
DATA_DIR_ENV = "TRAIN_DATA_DIR"


def in_data_folder(value: str, folder: Path | None) -> Path:
    """Where a split the config names is read from: a relative path by its file name in the data
    folder (the config's folders stand for the data folder), an absolute one as it is."""
    path = Path(str(value)).expanduser()
    if path.is_absolute() or folder is None:
        return path
    return folder / path.name


def data_folder_of(axolotl_cfg: dict, data_dir: Path | str | None) -> tuple[Path | None, str]:
    """The run's data folder and where it came from: --data-dir, else the first train file's folder."""
    if data_dir:
        return Path(str(data_dir)).expanduser(), f"--data-dir or {DATA_DIR_ENV}"
    first = next((d["path"] for d in axolotl_cfg.get("datasets") or [] if isinstance(d, dict) and d.get("path")), None)
    if first is None:
        return None, ""
    return Path(str(first)).expanduser().parent, "the folder of datasets[0].path"


def place_splits(axolotl_cfg: dict, folder: Path | None) -> None:
    """Rewrite each split path to the file the run reads, so Axolotl reads what was verified."""
    for key in SPLIT_KEYS:
        for entry in axolotl_cfg.get(key) or []:
            if isinstance(entry, dict) and entry.get("path"):
                entry["path"] = str(in_data_folder(entry["path"], folder))


def resolve(raw: dict) -> tuple[dict, dict]:
    """Split off our namespace and fill the defaults the job relies on."""
    config = copy.deepcopy(raw)
    tuner = config.pop(TUNER_KEY, None) or {}
    if not isinstance(tuner, dict):
        raise ConfigError(f"`{TUNER_KEY}:` must be a mapping, got {type(tuner).__name__}")
    # No validation file: hold out 10% of train, as the configs promise.
    if not config.get("test_datasets") and not config.get("val_set_size"):
        config["val_set_size"] = DEFAULT_VAL_FRACTION
    return config, tuner


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings' environment stand-ins that are set (an empty value is unset), typed as `--set` types."""
    values = {}
    for name, key in job_settings.environment_names().items():
        raw = str(environ.get(name) or "")
        if raw.strip():
            try:
                values[key] = parse_value(raw)
            except Exception:  # noqa: BLE001 - not YAML: kept as text, which the key's type check names
                values[key] = raw
    return values


def load(config_path: Path | str, overlays: list | None = None, sets: list | None = None, *,
         on_finish: str | None = None, known_target: Callable[[str], bool] | None = None, target_names: str = "",
         environ: Mapping[str, str] | None = None, **options: Any) -> LoadedConfig:
    """The config, its overlays in order, then `--set`; its `cli_tuner:` block checked into Settings
    with the environment stand-ins and `on_finish` (the `--on-finish` option). `known_target`: whether
    a `cli_tuner.target` names a known GPU (None: not checked)."""
    config_path = Path(config_path)
    raw = read_yaml(config_path)
    overlay_paths = [Path(p) for p in overlays or []]
    layers = [_file_layer(config_path, raw)]
    for overlay in overlay_paths:
        layer = read_yaml(overlay)
        layers.append(_file_layer(overlay, layer))
        raw = deep_merge(raw, layer)
    for assignment in sets or []:
        apply_set(raw, assignment)
    axolotl_cfg, tuner = resolve(raw)
    data_dir, data_dir_source = data_folder_of(axolotl_cfg, options.pop("data_dir", None))
    place_splits(axolotl_cfg, data_dir)
    dotted = [a.split("=", 1)[0].strip().split(".") for a in sets or []]
    set_keys = {parts[1] for parts in dotted if len(parts) > 1 and parts[0] == TUNER_KEY}
    env_names = {key: name for name, key in job_settings.environment_names().items()}
    layers += [
        (lambda key: env_names[key], from_environment(os.environ if environ is None else environ)),
        (lambda key: f"--set {key_name(key)}", {k: v for k, v in tuner.items() if k in set_keys}),
        (lambda key: "--on-finish", {"on_finish": on_finish} if on_finish else {}),
    ]
    if options.get("gpu_memory_gb") is not None:
        known_target = None  # an unlisted GPU of that size may have any name
    checked = job_settings.build(layers, {"known_target": known_target, "target_names": target_names})
    return LoadedConfig(config_path, axolotl_cfg, checked, overlay_paths, list(sets or []), **options,
                        data_dir=data_dir, data_dir_source=data_dir_source)


def key_name(key: str) -> str:
    return f"{TUNER_KEY}.{key}"


def _file_layer(path: Path, raw: dict) -> tuple[Callable[[str], str], dict]:
    """One file's `cli_tuner:` block, each key named with the file it came from."""
    block = raw.get(TUNER_KEY) or {}
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: `{TUNER_KEY}:` must be a mapping of keys, got {type(block).__name__}")
    return (lambda key: f"{path}: {key_name(key)}"), block


def require_local_datasets(loaded: LoadedConfig) -> None:
    """Every split is a file of the one data folder (only a locked folder can be verified, so hub
    datasets are refused by name); DataError names the split, the file and the folder otherwise."""
    for key in SPLIT_KEYS:
        for index, entry in enumerate(loaded.axolotl.get(key) or []):
            if not isinstance(entry, dict) or not entry.get("path"):
                raise ConfigError(f"{loaded.path}: {key}[{index}] has no `path`; give the local JSONL file")
    if not loaded.axolotl.get("datasets"):
        raise ConfigError(f"{loaded.path}: no `datasets:` entries; add the train file (see configs/axolotl_config.yaml)")
    folder = loaded.data_dir
    if not folder.is_dir():
        if folder.is_absolute():
            fix = "create it and run lock-data there, or pass --data-dir FOLDER"
        else:
            fix = (f"resolved against {Path.cwd()}; run from the project folder, or pass --data-dir FOLDER "
                   f"(env {DATA_DIR_ENV}) with your locked splits")
        raise DataError(f"data folder {folder} ({loaded.data_dir_source}) does not exist, {fix}")
    for key, path in loaded.split_entries():
        if path.parent.resolve() != folder.resolve():
            raise DataError(f"{key}: {path} is outside the data folder {folder}; a run reads every split from one "
                            "locked folder: put the file in it and run lock-data --force there, or pass --data-dir "
                            "with a locked folder that holds every split")
        if not path.exists():
            raise DataError(f"{loaded.path}: {key} {path} does not exist; put the file in the data folder {folder} "
                            "and run lock-data --force there, or fix the path")


def dump_yaml(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True)
