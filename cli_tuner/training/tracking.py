"""Experiment tracking: W&B online with a key, offline without, TensorBoard always possible.

Keys come from the environment or `.env` (python-dotenv); only their presence is ever reported.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import console

SECRET_VARIABLES = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def load_env_file(path: Path | str = ".env") -> bool:
    """Read `.env` if present (a missing file is fine); the environment wins over the file."""
    from dotenv import load_dotenv

    return load_dotenv(dotenv_path=Path(path), override=False)


def training_environment(cfg: dict, run_dir: Path, say=console.say) -> tuple[dict, dict]:
    """(environment for the training process, tracking summary for provenance)."""
    env = dict(os.environ)
    env["AXOLOTL_DO_NOT_TRACK"] = "1"
    env["WANDB_DIR"] = str(run_dir)
    summary = {"tensorboard": bool(cfg.get("use_tensorboard")), "wandb_project": cfg.get("wandb_project")}
    if not cfg.get("wandb_project"):
        summary["wandb"] = "disabled"
        return env, summary
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
