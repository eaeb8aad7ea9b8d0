"""Experiment tracking: W&B online with a key, offline without, TensorBoard always possible.

Keys come from the environment or `.env` (python-dotenv); only their presence is ever reported, and
`redact` masks their values in whatever the job writes.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .. import console

def load_env_file(path: Path | str = ".env") -> bool:
    """Read `.env` if present (a missing file is fine); the environment wins over the file."""
    from dotenv import load_dotenv

    return load_dotenv(dotenv_path=Path(path), override=False)


def wandb_run_id(run_dir: Path, identity_key: str) -> str:
    """One W&B run per run folder: the same id on every restart, so a resumed run continues its
    W&B run instead of starting another. The folder name keeps it readable; the hash of folder
    and identity keeps a --new-run or a same-named folder elsewhere apart."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", Path(run_dir).name)[:40]
    digest = hashlib.sha256(f"{Path(run_dir).resolve()}|{identity_key}".encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def training_environment(cfg: dict, run_dir: Path, say=console.say, identity_key: str = "") -> tuple[dict, dict]:
    """(environment for the training process, tracking summary for provenance)."""
    env = dict(os.environ)
    env["AXOLOTL_DO_NOT_TRACK"] = "1"
    env["WANDB_DIR"] = str(run_dir)
    summary = {"tensorboard": bool(cfg.get("use_tensorboard")), "wandb_project": cfg.get("wandb_project")}
    if not cfg.get("wandb_project"):
        summary["wandb"] = "disabled"
        return env, summary
    if cfg.get("wandb_run_id"):
        summary["wandb_run_id"] = cfg["wandb_run_id"]  # Axolotl exports it as WANDB_RUN_ID itself
    else:
        # A user's WANDB_RUN_ID (template variable) wins; otherwise the run folder's own.
        env.setdefault("WANDB_RUN_ID", wandb_run_id(run_dir, identity_key))
        summary["wandb_run_id"] = env["WANDB_RUN_ID"]
    env.setdefault("WANDB_RESUME", "allow")  # continue that run if it exists, else create it
    if env.get("WANDB_MODE") in ("offline", "disabled"):
        summary["wandb"] = env["WANDB_MODE"]
        say(f"W&B: WANDB_MODE={env['WANDB_MODE']}" + (f", logging to {run_dir}/wandb" if env["WANDB_MODE"] == "offline" else ""))
    elif env.get("WANDB_API_KEY"):
        summary["wandb"] = "online"
    else:
        env["WANDB_MODE"] = "offline"
        summary["wandb"] = "offline"
        say(f"W&B: no WANDB_API_KEY, logging offline to {run_dir}/wandb (sync later with `wandb sync`)")
    return env, summary
