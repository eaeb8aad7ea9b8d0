"""`ask`'s GGUF backend on this CPU: first-token time and requests per second.

    python -m bench.ask_gguf --gguf RUN/gguf/model-Q4_K_M.gguf [--requests 20] [--threads N]
    python -m bench.ask_gguf --gguf RUN/gguf/model-f16.gguf
    python -m bench.ask_gguf --gguf BASE.gguf --lora RUN/gguf/adapter-f16.gguf

The model is loaded once (its load time is printed apart), then each request goes through the same
path as `cli-tuner ask --gguf` (greedy chat completion, streamed; the judging of the answer is left
out: it is the shell checks' cost, not the backend's). Prints one JSON object: load seconds,
first-token seconds and whole-request seconds (median, p90), requests per second, tokens per second.
With the rehearsal's tiny model (2 layers, 64 wide, Qwen's 151k vocabulary) the numbers are the
backend's overhead and the vocabulary-wide output layer, not a 7B model's speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

REQUESTS = ["list files by size", "show free disk space in human units", "count the lines of notes.txt",
            "print the current directory", "find python files under src", "search logs for the word timeout",
            "show the ten largest files here", "print today's date in ISO format"]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", required=True, type=Path)
    parser.add_argument("--lora", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    from cli_tuner.serving.ask import GgufBackend

    start = time.monotonic()
    backend = GgufBackend(args.gguf, args.lora, threads=args.threads)
    load = time.monotonic() - start
    first, total, tokens = [], [], 0
    wall = time.monotonic()
    for index in range(args.requests):
        reply = backend.ask(REQUESTS[index % len(REQUESTS)], max_tokens=args.max_tokens)
        total.append(reply.total_seconds)
        if reply.first_token_seconds is not None:
            first.append(reply.first_token_seconds)
        tokens += reply.tokens or 0
    wall = time.monotonic() - wall
    result = {
        "model": args.gguf.name, "lora": args.lora.name if args.lora else None, "bytes": args.gguf.stat().st_size,
        "cpu_count": os.cpu_count(), "threads": args.threads or "llama.cpp default",
        "load_seconds": round(load, 3), "requests": args.requests, "max_tokens": args.max_tokens,
        "first_token_seconds_median": round(statistics.median(first), 4) if first else None,
        "first_token_seconds_p90": round(percentile(first, 0.9), 4) if first else None,
        "request_seconds_median": round(statistics.median(total), 4),
        "request_seconds_p90": round(percentile(total, 0.9), 4),
        "requests_per_second": round(args.requests / wall, 2),
        "streamed_chunks_per_second": round(tokens / wall, 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
