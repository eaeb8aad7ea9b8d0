"""`convert-nl2bash`: NL2Bash-style parallel files to locked, leak-free chat JSONL splits."""

from __future__ import annotations

import argparse

from .. import console
from ..corpus.nl2bash import convert

NAME = "convert-nl2bash"
HELP = "NL2Bash parallel files to chat JSONL splits; writes train/val/test.jsonl and their manifest.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nl", required=True, help="file with one description per line")
    parser.add_argument("--cm", required=True, help="file with one command per line")
    parser.add_argument("--out", default="data/processed", help="output folder (default %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split's shuffle")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="share of the pairs in val.jsonl")
    parser.add_argument("--test-fraction", type=float, default=0.05, help="share of the pairs in test.jsonl")
    parser.add_argument("--force", action="store_true", help="replace existing split files and manifest")


def run(args: argparse.Namespace) -> int:
    summary = convert(args.nl, args.cm, args.out, seed=args.seed, val_fraction=args.val_fraction,
                      test_fraction=args.test_fraction, force=args.force)
    dropped = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in summary["dropped"].items())
    splits = summary["splits"]
    console.out(f"read {summary['pairs_read']} pairs; dropped {dropped}; kept {summary['kept']} in {summary['groups']} groups")
    console.out(f"wrote train {splits['train']}, val {splits['val']}, test {splits['test']} to {args.out} "
                f"(seed {summary['seed']}; no description, near-duplicate description or command in two splits)")
    console.out(f"locked in {summary['manifest']} (data sha256 {summary['data_sha256'][:16]}...) in {summary['seconds']} s")
    return 0
