"""`lock-data`: write the dataset manifest (SHA256 and line counts of every split)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .. import console, data
from ..config import DATA_DIR_ENV
from ..paths import DEFAULT_DATA_DIR

NAME = "lock-data"
HELP = "write the dataset manifest (SHA256 and line counts) as manifest.json in --data-dir"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV) or str(DEFAULT_DATA_DIR),
                        help="the folder of .jsonl splits to lock (env TRAIN_DATA_DIR; default %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace an existing manifest")


def run(args: argparse.Namespace) -> int:
    path, manifest = data.lock(Path(args.data_dir), force=args.force)
    console.out(f"locked {len(manifest['files'])} files in {path} (data sha256 {manifest['data_sha256'][:16]}...)")
    return 0
