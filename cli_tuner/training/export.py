"""Export a finished run: the adapter merged into its base model, a model card, optionally a push.

The export folder (default `<run>/export/`) holds `adapter/` (the LoRA adapter and tokenizer) and,
unless merging is turned off, `merged/` (the base model with the adapter folded in, safetensors, in
the base model's own dtype, merged on CPU with PEFT's `merge_and_unload`). Each carries a README.md
model card written from the run's provenance and eval.json, plus both files. The whole folder is
written through `atomic.folder`, so a killed export leaves the previous one or none.

Errors, and why these classes:
- the folder is not a finished run (no phase2-final/, or its provenance does not say succeeded):
  UsageError (exit 2) -- point the command at another folder.
- the base model cannot be loaded (a hub id offline, a folder that is gone) or the adapter does not
  fit it: ConfigError (exit 4), as in the checkpoint check.
- a push without HF_TOKEN, with a token the Hub refuses, or with the Hub unreachable (offline):
  EnvironmentProblem (exit 5). Checked before the merge, so nothing slow runs first.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic, console
from ..config import dump_yaml
from ..errors import ConfigError, EnvironmentProblem, UsageError
from ..evaluation.adapter_files import verify_checkpoint
from ..paths import EVAL_FILE, FINAL_DIR, PROVENANCE_FILE
from ..redact import redact, redact_data, secret_values
from .provenance import utc_now

EXPORT_DIR = "export"
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
EXPORT_RECORD = "export.json"
EXPORT_LOG = "export.log"   # the libraries' warnings held off the console while merging
CARD = "README.md"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json")
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json")
PUSH_KINDS = (ADAPTER_DIR, MERGED_DIR)


@dataclass(frozen=True)
class ExportOptions:
    output: Path | None = None        # default <run>/export
    base_model: str | None = None     # default: provenance's base_model
    merge: bool = True
    push_to: str | None = None        # a Hub repo id
    push: str = MERGED_DIR            # which folder to push: adapter or merged
    private: bool = True
    force: bool = False               # replace an existing export folder
    token: str | None = field(default=None, repr=False)  # HF_TOKEN; never written anywhere


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    made: tuple[str, ...]
    pushed: str | None                # the repo URL, when pushed


def find_final(path: Path) -> tuple[Path, dict]:
    """phase2-final/ of a finished run (given the run folder or phase2-final itself) and its provenance."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{path}: folder not found; point --run at a run folder under the output root")
    final = path if path.name == FINAL_DIR else path / FINAL_DIR
    if not final.is_dir():
        raise UsageError(f"{final}: not found, so {path} is not a finished run; run `rehearse` or `full` to the "
                         f"end first, or point --run at a run folder that has {FINAL_DIR}/")
    files = verify_checkpoint(final)
    status = files.provenance.get("status")
    if status != "succeeded":
        raise UsageError(f"{files.provenance_path}: status is {status!r}, not 'succeeded'; export a run that "
                         "finished training")
    return final, files.provenance


def check_push(options: ExportOptions) -> None:
    """Fail fast, before the merge, when a push cannot work: no token, refused token, Hub unreachable."""
    if not options.push_to:
        return
    if not options.token:
        raise EnvironmentProblem(f"--push-to {options.push_to}: HF_TOKEN is not set; export HF_TOKEN with a "
                                 "write token from https://huggingface.co/settings/tokens, or export without --push-to")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        HfApi(token=options.token).whoami()
    except OfflineModeIsEnabled as exc:
        raise EnvironmentProblem(f"--push-to {options.push_to}: the Hugging Face Hub is unreachable (HF_HUB_OFFLINE "
                                 "is set); unset HF_HUB_OFFLINE where the Hub can be reached, or export without "
                                 "--push-to") from exc
    except HfHubHTTPError as exc:
        code = getattr(exc.response, "status_code", None)
        raise EnvironmentProblem(f"--push-to {options.push_to}: the Hub refused HF_TOKEN (HTTP {code}); use a "
                                 "write token from https://huggingface.co/settings/tokens") from exc
    except Exception as exc:  # httpx and socket errors: no route, DNS, TLS, timeouts
        raise EnvironmentProblem(f"--push-to {options.push_to}: cannot reach the Hugging Face Hub "
                                 f"({redact(_one_line(exc), secret_values(extra=(options.token,)))}); check the network, or export "
                                 "without --push-to") from exc


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def merge(base_model: str, final: Path, target: Path) -> str:
    """The base model (its own dtype, CPU) with the adapter merged in, saved as safetensors; the dtype."""
    from transformers import AutoModelForCausalLM

    try:
        base = AutoModelForCausalLM.from_pretrained(base_model, dtype="auto")
    except Exception as exc:  # hub, file and config errors come in many classes; all mean "not loadable here"
        where = "folder" if Path(base_model).exists() else "hub id"
        raise ConfigError(f"cannot load base model from {where} {base_model!r} to merge into ({_one_line(exc)}); "
                          "offline, pass --base-model with a local copy of the model the adapter was trained on") from exc
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(base, str(final), is_trainable=False)
    except Exception as exc:  # shape mismatches and missing modules: the adapter belongs to another model
        raise ConfigError(f"{final}: adapter does not fit base model {base_model!r} ({_one_line(exc)}); "
                          "pass the --base-model it was trained on") from exc
    merged = model.merge_and_unload()
    merged.save_pretrained(str(target))
    return str(next(merged.parameters()).dtype).removeprefix("torch.")


RECORDS = (PROVENANCE_FILE, EVAL_FILE)  # the run's own records: copied with the secrets masked


def _copy(names, source: Path, target: Path, secrets: tuple[str, ...] = ()) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (source / name).is_file():
            continue
        if name in RECORDS and secrets:
            atomic.write_text(target / name, redact((source / name).read_text(encoding="utf-8"), secrets))
        else:
            shutil.copy2(source / name, target / name)


def _read_eval(final: Path) -> dict:
    try:
        return json.loads((final / EVAL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def gate_verdict(provenance: dict) -> str:
    check = provenance.get("checkpoint_check") or {}
    if not check:
        return "not checked (the run had no test split)"
    failures = check.get("gate_failures") or []
    if not failures:
        return "passed"
    enforced = "enforced: the run failed its gate" if check.get("gated") else \
        "not enforced in a rehearsal, where the model is random by design"
    return f"failed ({'; '.join(failures)}); {enforced}"


def _rate(value) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "n/a"


def _is_hub_id(name) -> bool:
    return isinstance(name, str) and name.count("/") == 1 and not Path(name).exists() and not name.startswith((".", "/"))


def model_card(kind: str, provenance: dict, evaluation: dict, dtype: str | None, secrets: tuple = ()):
    """The README.md of adapter/ or merged/: base model, data, evaluation and gate, config."""
    from huggingface_hub import ModelCard, ModelCardData

    base, requested = provenance.get("base_model"), provenance.get("requested_base_model")
    rehearsal = provenance.get("rehearsal") is not None  # what a rehearsal records: its tiny model, its divergences
    data = provenance.get("data") or {}
    summary = evaluation.get("summary") or (provenance.get("checkpoint_check") or {}).get("summary") or {}
    versions = provenance.get("versions") or {}
    metrics = provenance.get("metrics") or {}
    steps = provenance.get("steps") or {}
    card_base = base if _is_hub_id(base) else None  # the Hub rejects a local path as base_model
    card_data = ModelCardData(
        base_model=card_base,
        library_name="peft" if kind == ADAPTER_DIR else "transformers",
        pipeline_tag="text-generation",
        tags=["cli-tuner", "axolotl", "lora", "bash"] + (["rehearsal"] if rehearsal else []),
    )
    what = ("the LoRA adapter (load it on the base model with PEFT)" if kind == ADAPTER_DIR else
            f"the base model with the LoRA adapter merged in ({dtype or 'base dtype'}, safetensors); "
            "load it with transformers alone")
    lines = [
        f"# {provenance.get('run_id')}", "",
        f"Natural language to Bash, fine-tuned with cli-tuner (Axolotl QLoRA). This folder holds {what}.", "",
    ]
    if rehearsal:
        lines += [f"**CPU rehearsal.** The base model is a tiny random model with the architecture of "
                  f"`{requested}`; these weights only prove the pipeline runs and are of no use for answering.", ""]
    lines += [
        "## Base model", "",
        f"- trained on: `{base}`",
        f"- requested in the config: `{requested}`", "",
        "## Data", "",
        f"- data sha256 (the locked manifest): `{data.get('data_sha256')}`",
    ]
    lines += [f"- `{name}`: sha256 `{entry.get('sha256')}`, {entry.get('lines')} lines"
              for name, entry in (data.get("files") or {}).items()]
    lines += [
        "", "## Evaluation (checkpoint check)", "",
        f"- gate: {gate_verdict(provenance)}",
        f"- examples scored: {summary.get('n', 'n/a')}",
        f"- parses as Bash: {_rate(summary.get('syntax_valid_rate'))}",
        f"- shellcheck clean: {_rate(summary.get('shellcheck_clean_rate'))}",
        f"- exact match: {_rate(summary.get('exact_match_rate'))}, normalized match: "
        f"{_rate(summary.get('normalized_match_rate'))}",
        f"- dangerous answers: {summary.get('dangerous', 'n/a')}",
        f"- test file sha256: `{summary.get('test_file_sha256')}`", "",
        "## Training", "",
        f"- run `{provenance.get('run_id')}`, mode `{provenance.get('mode')}`, status `{provenance.get('status')}`",
        f"- steps: {steps.get('completed')} of {steps.get('planned')}; train loss {metrics.get('train_loss')}, "
        f"eval loss {metrics.get('eval_loss')}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
        f"- cli-tuner commit: `{provenance.get('git_commit')}`", "",
        "## Resolved Axolotl config", "", "```yaml", dump_yaml(provenance.get("resolved_config") or {}).rstrip(),
        "```", "",
        "provenance.json and eval.json beside this card are the full records.",
    ]
    content = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"
    return ModelCard(redact(content, secret_values(extra=secrets)))


def export(run: Path, options: ExportOptions, say=lambda _message: None, secrets: tuple = ()) -> ExportResult:
    """Merge, write the model cards, push if asked; the environment's secrets (redact.SECRET_VARIABLES),
    the token and any extra `secrets` are masked in every card and the export log."""
    if options.push not in PUSH_KINDS:
        raise UsageError(f"--push {options.push}: choose adapter or merged")
    if options.push_to and options.push == MERGED_DIR and not options.merge:
        raise UsageError("--push merged with --no-merge: there is no merged model to push; use --push adapter")
    final, provenance = find_final(run)
    check_push(options)
    run_dir = final.parent
    folder = Path(options.output) if options.output else run_dir / EXPORT_DIR
    if folder.exists() and not options.force:
        raise UsageError(f"{folder} already exists; pass --force to replace it, or choose another --output")
    base = options.base_model or provenance.get("base_model")
    if not base:
        raise ConfigError(f"{final / PROVENANCE_FILE}: no base_model recorded; pass --base-model")
    evaluation = _read_eval(final)
    secrets = secret_values(extra=(*secrets, options.token))
    made = [ADAPTER_DIR]
    record = {"schema": 1, "run_id": provenance.get("run_id"), "source": str(final), "base_model": base,
              "created_utc": utc_now(), "gate": gate_verdict(provenance), "merged": None, "pushed": None}
    with atomic.folder(folder) as staging:
        adapter = staging / ADAPTER_DIR
        _copy(ADAPTER_FILES + TOKENIZER_FILES + RECORDS, final, adapter, secrets)
        model_card(ADAPTER_DIR, provenance, evaluation, None, secrets).save(adapter / CARD)
        if options.merge:
            say(f"merging the adapter into {base} on CPU")
            merged = staging / MERGED_DIR
            dtype = merge(base, final, merged)
            _copy(TOKENIZER_FILES + RECORDS, final, merged, secrets)
            model_card(MERGED_DIR, provenance, evaluation, dtype, secrets).save(merged / CARD)
            record["merged"] = {"dtype": dtype, "files": sorted(p.name for p in merged.iterdir())}
            made.append(MERGED_DIR)
        atomic.write_json(staging / EXPORT_RECORD, redact_data(record, secrets))
        held = console.held_library_logs()
        if held:
            atomic.write_text(staging / EXPORT_LOG, redact("\n".join(held) + "\n", secrets))
    say(f"export written: {folder} ({', '.join(made)})")
    pushed = push(folder / options.push, options) if options.push_to else None
    if pushed:
        record["pushed"] = {"repo": options.push_to, "folder": options.push, "url": pushed}
        atomic.write_json(folder / EXPORT_RECORD, redact_data(record, secrets))
    return ExportResult(folder, tuple(made), pushed)


def push(folder: Path, options: ExportOptions) -> str:
    """Upload one export folder to a (private by default) model repo; the repo's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=options.token)
    try:
        url = api.create_repo(options.push_to, private=options.private, exist_ok=True)
        api.upload_folder(repo_id=options.push_to, folder_path=str(folder),
                          commit_message=f"cli-tuner export: {folder.name}")
    except Exception as exc:  # HTTP, network and offline errors all mean: the export stays local
        raise EnvironmentProblem(f"push of {folder} to {options.push_to} failed "
                                 f"({redact(_one_line(exc), secret_values(extra=(options.token,)))}); the export is complete, run export "
                                 "again with --push-to once the Hub is reachable") from exc
    return str(url)
