"""Where the job finds a tokenizer, and loading it: one rule, which the tests follow too.

A value that looks like a path (it starts with `/`, `.` or `~`, or has more than the one `/` of a hub
id) is a folder, and only a folder. A hub id `org/name` is looked for, in order, in
`tokenizers/<name, lower case>/` of the shared data folder (`CLI_TUNER_SHARED_DATA` alone when set,
else `../shared/data` beside the checkout, else `/shared/data`), in the Hugging Face cache, and on
the hub when it is reachable (cli_tuner/hub.py). Nothing found is an environment problem (exit 5).
"""

from __future__ import annotations

import os
from pathlib import Path

from . import hub
from .errors import TokenizerNotFound
from .paths import REPO_ROOT

SHARED_DATA_ENV = "CLI_TUNER_SHARED_DATA"
SHARED_TOKENIZERS = "tokenizers"  # inside a shared data folder


def shared_data_folders() -> list[Path]:
    """$CLI_TUNER_SHARED_DATA alone when it is set, else ../shared/data beside the checkout, then
    /shared/data (where compose's test service mounts it)."""
    chosen = os.environ.get(SHARED_DATA_ENV)
    if chosen:
        return [Path(chosen).expanduser()]
    return [REPO_ROOT.parent / "shared" / "data", Path("/shared/data")]


def shared_folder_name(hub_id: str) -> str:
    """`Qwen/Qwen2.5-Coder-7B-Instruct` -> `qwen2.5-coder-7b-instruct`."""
    return hub_id.rstrip("/").split("/")[-1].lower()


def shared_candidates(hub_id: str) -> list[Path]:
    return [root / SHARED_TOKENIZERS / shared_folder_name(hub_id) for root in shared_data_folders()]


def is_path_like(value: str) -> bool:
    return value.startswith(("/", ".", "~")) or "\\" in value or value.count("/") > 1


def locate(name_or_path: str) -> str:
    """Where the tokenizer `name_or_path` names will load from, by the rule above, without loading it
    (no torch, no transformers: a command checks this before anything slow); TokenizerNotFound says
    where it looked and how to get it."""
    value = str(name_or_path)
    folder = Path(value).expanduser()
    if is_path_like(value) or folder.is_dir():
        if not folder.is_dir():
            against = "" if folder.is_absolute() else f" (resolved against {Path.cwd()})"
            raise TokenizerNotFound(f"tokenizer {value}: no such folder{against}; give the folder that holds "
                                    "tokenizer_config.json (--tokenizer DIR or tokenizer_config: DIR)")
        return str(folder)
    for candidate in shared_candidates(value):
        if (candidate / "tokenizer_config.json").is_file():
            return str(candidate)
    if _in_hf_cache(value) or hub.online():
        return value
    looked = ", ".join(str(p) for p in shared_candidates(value))
    raise TokenizerNotFound(
        f"tokenizer {value} not found: not in {looked} ({SHARED_DATA_ENV}), nor in the Hugging Face cache, and the "
        f"hub is off ({hub.why_offline()}); get it with `hf download {value} tokenizer.json tokenizer_config.json` "
        f"where the hub is reachable, or pass --tokenizer DIR")


def load(name_or_path: str):
    """The tokenizer `name_or_path` names (see `locate`)."""
    where = locate(name_or_path)
    return _from_pretrained(str(name_or_path), where, local_only=where == str(name_or_path) and not hub.online())


def _in_hf_cache(hub_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        return isinstance(try_to_load_from_cache(hub_id, "tokenizer_config.json"), str)
    except (HFValidationError, ValueError):  # not a valid repo id: nothing cached under it
        return False


def _from_pretrained(value: str, where: str, local_only: bool = False):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(where, local_files_only=local_only)
    except Exception as exc:  # transformers raises OSError, ValueError or hub errors depending on the cause
        raise TokenizerNotFound(f"tokenizer {value}: cannot load it from {where} ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}); give a folder that holds "
                                "tokenizer_config.json, or pass --tokenizer DIR") from exc
