#!/usr/bin/env python3
"""Alias: `python scripts/validate_checkpoint.py --checkpoint DIR ...` is `entrypoint.py check-checkpoint ...`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli_tuner.cli import main  # noqa: E402 - the path above makes the package importable from anywhere

if __name__ == "__main__":
    sys.exit(main(["check-checkpoint", *sys.argv[1:]]))
