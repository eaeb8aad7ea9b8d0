"""How long `entrypoint.py --help` takes, start to exit: the cost of the command layer's imports.

    .venv/bin/python -m bench.help_time [--runs 15]

Prints the median and the slowest of N runs, and the ten slowest imports of one run
(`python -X importtime`), so a heavy import that creeps into the command layer shows by name.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def one_run() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "entrypoint.py"), "--help"], check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - started


def slowest_imports(count: int = 10) -> list[tuple[int, str]]:
    result = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "entrypoint.py"), "--help"],
                            capture_output=True, text=True, cwd=REPO, check=True)
    rows = []
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    return sorted(rows, reverse=True)[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    one_run()  # warm the file cache, as a second invocation by a person would be
    times = [one_run() for _ in range(args.runs)]
    print(f"--help over {args.runs} runs: median {statistics.median(times) * 1000:.0f} ms, "
          f"slowest {max(times) * 1000:.0f} ms (python {sys.version.split()[0]})")
    print("slowest imports of one run (cumulative µs):")
    for micros, name in slowest_imports():
        print(f"  {micros:>8}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
