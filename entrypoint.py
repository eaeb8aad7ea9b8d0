#!/usr/bin/env python3
"""cli-tuner job entrypoint: `python entrypoint.py --help`. All logic lives in the cli_tuner package."""

import sys

from cli_tuner.cli import main

if __name__ == "__main__":
    sys.exit(main())
