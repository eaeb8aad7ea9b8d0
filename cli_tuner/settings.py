"""This job's own settings: the `cli_tuner:` block of a config and the environment variables that
stand in for its keys, as one typed object built once, when the config loads (`config.load`).

Every reader takes its value from `LoadedConfig.settings`; nothing below the command layer reads the
raw block or the environment for these keys. A bad value of any key stops `validate`, `smoke`, `full`
and `rehearse` at load time, before any model loads, with one line per problem naming the key, the
value, what is allowed and the fix (exit 4).

Where a value comes from, highest first (one rule for every key):
  1. the command line's own option for it (`--on-finish`);
  2. `--set cli_tuner.KEY=VALUE`;
  3. the key's environment stand-in (`ON_FINISH`, `GPU_PRICE_PER_HOUR`; the training modes read `.env`
     into the environment first);
  4. the config file, then its overlays in order (a later overlay wins; smoke's own overlay last);
  5. the default below.
Process-level switches are not settings of the job and stay out of this object: `CLI_TUNER_VERBOSE`
and `REHEARSAL_TOKENIZER`, `TRAIN_CONFIG`, `OUTPUT_ROOT`, `RUN_ID` (defaults of command-line
options), `TRAIN_MODE` (which verb), `CLI_TUNER_DEBUG` (tracebacks), `CLI_TUNER_PROBE_TIMEOUT` (doctor's
probes), secrets (`HF_TOKEN`, `WANDB_API_KEY`, `RUNPOD_API_KEY`), and
`CLI_TUNER_CHECKPOINT_EVERY_MINUTES`, which the job itself sets for the trainer process from this
object (`checkpoint_every_minutes`).

To add a key: one field on `Settings` with `Field(default, description=..., ...constraints)` and
`json_schema_extra=extra(example=..., env=..., identity=...)`; docs/settings.md's table is generated from the
fields (`python scripts/settings_table.py --write`) and tests/test_settings.py holds the two equal and
feeds every kind of bad value, derived from the field's type and constraints, to every key.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator

from .errors import ConfigError

TUNER_KEY = "cli_tuner"
FINISH_CHOICES = ("auto", "stop", "idle", "exit")
MARGIN_METRICS = ("normalized_match", "first_word_match", "exact_match", "command", "execution_accuracy")
# New tokens an answer may take when the checkpoint check generates (check-checkpoint's
# --max-new-tokens default; the data report warns of test prompts that leave the row less).
MAX_NEW_TOKENS = 64


def extra(example: Any, env: str | None = None, identity: bool = True) -> dict:
    """A field's own facts beyond pydantic's: the value its fix suggests, its environment stand-in, and
    whether it changes what is trained (False: the run's folder and smoke's calibration ignore it,
    so changing it continues the same run)."""
    return {"example": example, "env": env, "identity": identity}


class Settings(BaseModel):
    """The `cli_tuner:` block. Field descriptions are the table in docs/settings.md."""

    # defer_build: the validator is built at the first config load, not when `--help` imports this module
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False, defer_build=True)

    # --- what the job checks against and trains on
    target: Optional[str] = Field(
        None, description="hardware the memory estimate and checks are run against (`--target` wins); unset: "
                          "this machine's GPU, or none", json_schema_extra=extra("a5000"))
    test_file: Optional[str] = Field(
        None, description="held-out chat JSONL for the checkpoint check, read from the data folder by its "
                          "name (as every split is); unset: `test.jsonl` in the data folder, when there is one", json_schema_extra=extra("data/processed/test.jsonl"))
    train_examples: Optional[int] = Field(
        None, ge=1, description="train on the first N train examples only (smoke's overlay sets 10; grown to "
                                "one optimizer step when that needs more)", json_schema_extra=extra(10))
    val_examples: Optional[int] = Field(
        None, ge=1, description="evaluate on the first N validation examples only (smoke's overlay sets 5)",
        json_schema_extra=extra(5))
    allow_dangerous_data: bool = Field(
        False, description="dangerous commands in the data are warnings, not errors (as `--allow-dangerous-data`)",
        json_schema_extra=extra(True))

    # --- the quality gate of `full` (check-checkpoint has the same as options)
    min_command_rate: float = Field(
        0.9, ge=0, le=1, description="share of test answers that must be commands (known first word, no prose)",
        json_schema_extra=extra(0.9))
    min_syntax_rate: float = Field(
        0.9, ge=0, le=1, description="share of test answers that must parse as Bash (`bash -n`)",
        json_schema_extra=extra(0.9))
    allow_dangerous_answers: bool = Field(
        False, description="dangerous answers do not fail the gate", json_schema_extra=extra(True))
    min_margin_over_base: float = Field(
        0.05, ge=-1, le=1, description="with `baseline`: how much higher the adapter's `margin_metric` rate must "
                                       "be than the base model's", json_schema_extra=extra(0.05))
    margin_metric: Optional[Literal[MARGIN_METRICS]] = Field(
        None, description="the rate `min_margin_over_base` compares; unset: `execution_accuracy` where the sandbox "
                          "ran (the lower bound of the paired difference's 95% interval must clear the margin), "
                          "else `first_word_match`", json_schema_extra=extra("execution_accuracy"))
    sandbox_seconds: float = Field(
        5.0, ge=1, le=600, description="wall-time limit of one command in the execution sandbox (check-checkpoint)",
        json_schema_extra=extra(5))
    baseline: bool = Field(
        True, description="`full` also scores the base model without the adapter, which sets the margin's bar",
        json_schema_extra=extra(False))

    # --- what a run costs and how it is looked after (not part of the run's identity)
    memory_headroom: float = Field(
        0.05, ge=0, lt=0.5, description="share of GPU memory smoke's measured peak must leave free, or `full` "
                                        "refuses (exit 5)", json_schema_extra=extra(0.05, identity=False))
    price_per_hour: Optional[float] = Field(
        None, ge=0, description="the pod's price per hour, for `full`'s projected cost",
        json_schema_extra=extra(0.27, env="GPU_PRICE_PER_HOUR", identity=False))
    on_finish: Literal[FINISH_CHOICES] = Field(
        "auto", description="when a run ends: `stop` the RunPod pod, stay up `idle`, or `exit`; `auto`: stop on "
                            "RunPod for `full` and unattended starts, else exit",
        json_schema_extra=extra("exit", env="ON_FINISH", identity=False))
    checkpoint_every_minutes: float = Field(
        10.0, ge=0, description="also save a checkpoint after this many minutes of training (0: off)",
        json_schema_extra=extra(10, identity=False))
    max_identical_failures: int = Field(
        3, ge=1, description="refuse (exit 7) to start a run again after this many attempts in a row failed "
                             "with the same error", json_schema_extra=extra(3, identity=False))

    # Where each value came from ("configs/x.yaml: cli_tuner.on_finish", "ON_FINISH", "--set ...").
    _sources: dict = PrivateAttr(default_factory=dict)

    @field_validator("target")
    @classmethod
    def _target_known(cls, value: str | None, info: ValidationInfo) -> str | None:
        known = (info.context or {}).get("known_target")
        if value is not None and known is not None and not known(value):
            raise ValueError("unknown target")
        return value

    def source(self, key: str) -> str:
        return self._sources.get(key, "default")

    def identity(self) -> dict:
        """The keys set (anywhere) that change what is trained: part of the run's and calibration's identity."""
        return {key: value for key, value in self.model_dump(mode="json", exclude_unset=True).items()
                if field_extra(key)["identity"]}

    def with_values(self, **values) -> "Settings":
        """A copy with `values` set by the job itself (e.g. smoke's slice grown to one optimizer step)."""
        copy = self.model_copy(update=values)
        copy._sources = {**self._sources, **{key: "the job" for key in values}}
        return copy


def default(key: str) -> Any:
    return Settings.model_fields[key].default


def field_extra(key: str) -> dict:
    return Settings.model_fields[key].json_schema_extra or extra(None)


def environment_names() -> dict[str, str]:
    """Environment stand-in -> key."""
    return {field_extra(key)["env"]: key for key in Settings.model_fields if field_extra(key)["env"]}


# ----------------------------------------------------------------------------- building

def build(layers: list[tuple[Callable[[str], str], Mapping[str, Any]]], context: dict | None = None) -> Settings:
    """Merge the layers (lowest first; each a function naming where its key came from, and its values)
    into one checked Settings; ConfigError (exit 4) listing every problem, one line each."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for where, layer in layers:
        for key, value in layer.items():
            values[key] = value
            sources[key] = where(key)
    try:
        settings = Settings.model_validate(values, context=context or {})
    except ValidationError as exc:
        lines = [problem_line(error, values, sources, context or {}) for error in exc.errors()]
        more = f" (and {len(lines) - 1} more above)" if len(lines) > 1 else ""
        raise ConfigError(lines[0] + more, details=[f"  error: {line}" for line in lines[1:]]) from None
    settings._sources = sources
    return settings


# ----------------------------------------------------------------------------- messages

def _inner(key: str) -> tuple[Any, bool]:
    """(the annotation without Optional, whether null is allowed)."""
    annotation = Settings.model_fields[key].annotation
    args = getattr(annotation, "__args__", ())
    if type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return annotation, False


def type_name(key: str) -> str:
    inner, optional = _inner(key)
    if getattr(inner, "__origin__", None) is Literal:
        name = "choice"
    else:
        name = {bool: "boolean", int: "integer", float: "number"}.get(inner, "path" if key.endswith("_file") else "text")
    return name + (" or null" if optional else "")


def range_text(key: str) -> str:
    """The values a key takes beyond its type, from its constraints and checks (the "range" column of docs/settings.md)."""
    inner, _ = _inner(key)
    bounds = {name: getattr(m, name.lower()) for m in Settings.model_fields[key].metadata
              for name in ("Ge", "Le", "Lt") if hasattr(m, name.lower())}
    if getattr(inner, "__origin__", None) is Literal:
        return "one of " + ", ".join(inner.__args__)
    if inner is bool:
        return "true, false"
    if "Ge" in bounds and ("Le" in bounds or "Lt" in bounds):
        return f"[{bounds['Ge']:g}, {bounds['Le']:g}]" if "Le" in bounds else f"[{bounds['Ge']:g}, {bounds['Lt']:g})"
    if "Ge" in bounds:
        return f">= {bounds['Ge']:g}"
    if key.endswith("_file"):
        return "an existing file"
    if key == "target":
        return "a known GPU name (any name with `--gpu-memory`)"
    return "any"


def within(key: str, value: float) -> bool:
    """Whether `value` meets the key's bounds (ge, le, lt): for options that stand in for a key."""
    for m in Settings.model_fields[key].metadata:
        if getattr(m, "ge", None) is not None and value < m.ge or getattr(m, "le", None) is not None and value > m.le \
                or getattr(m, "lt", None) is not None and value >= m.lt:
            return False
    return True


def between(key: str) -> str:
    """"between LOW and HIGH" for a key bounded on both sides (ge and le)."""
    bounds = {name: getattr(m, name) for m in Settings.model_fields[key].metadata for name in ("ge", "le")
              if getattr(m, name, None) is not None}
    return f"between {bounds['ge']:g} and {bounds['le']:g}"


def allowed(key: str) -> str:
    """What a key takes, in words: its type and range."""
    if type_name(key).startswith("choice"):
        return range_text(key)
    return f"{type_name(key)}, {range_text(key)}"


def yaml_text(value: Any) -> str:
    return {True: "true", False: "false", None: "null"}.get(value, str(value)) if not isinstance(value, (int, float)) \
        or isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, list(Settings.model_fields), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`? " if close else ""


def problem_line(error: dict, values: dict, sources: dict, context: dict) -> str:
    key = str(error["loc"][0]) if error["loc"] else TUNER_KEY
    where = sources.get(key, f"{TUNER_KEY}.{key}")
    value = values.get(key, error.get("input"))
    if error["type"] == "extra_forbidden":
        return (f"{where}: unknown key ({value!r}); {_did_you_mean(key)}allowed: the keys in docs/settings.md; "
                f"fix: rename or remove it")
    kind = error["type"]
    if kind in ("greater_than_equal", "less_than_equal", "less_than", "greater_than", "finite_number"):
        what = "is out of range"
    elif kind == "literal_error":
        what = "is not one of the listed values"
    elif kind == "value_error":
        what = str(error["ctx"]["error"]) if error.get("ctx") else "is not allowed"
        what = {"file not found": "is not an existing file"}.get(what, what)
        if key == "target" and context.get("target_names"):
            what = f"is not a known GPU ({context['target_names']})"
    else:
        what = f"is not of type {type_name(key).split(' ')[0]}"
    example = yaml_text(field_extra(key)["example"])
    env = field_extra(key)["env"]
    if env and where == env:
        where = f"{env} (stands in for {TUNER_KEY}.{key})"
    if key == "target":
        example = "one of the listed names (or pass --gpu-memory GB for an unlisted GPU)"
    if env and where.startswith(env):
        fix = f"set {env}={example}, or unset it for the default"
    elif where.startswith("--set"):
        fix = f"--set {TUNER_KEY}.{key}={example}, or drop that --set for the default"
    else:
        file = where.split(": ")[0]
        fix = f"write `{key}: {example}` under `{TUNER_KEY}:` in {file}, or remove the key for the default"
    return f"{where}: {value!r} {what}; allowed: {allowed(key)}; fix: {fix}"


# ----------------------------------------------------------------------------- documentation

def markdown_table() -> str:
    """docs/settings.md's table of every key, generated from the fields."""
    rows = ["| key | type | default | range | environment | what it does |", "|---|---|---|---|---|---|"]
    for key, info in Settings.model_fields.items():
        default = "null" if info.default is None else (str(info.default).lower() if isinstance(info.default, bool)
                                                        else f"{info.default}")
        env = field_extra(key)["env"] or ""
        care = "" if field_extra(key)["identity"] else " Not part of the run's identity."
        rows.append(f"| `{key}` | {type_name(key)} | `{default}` | {range_text(key)} | {f'`{env}`' if env else ''} | "
                    f"{info.description}.{care} |")
    return "\n".join(rows)
