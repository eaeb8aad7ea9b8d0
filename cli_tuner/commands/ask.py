"""`ask "REQUEST"`: one Bash command from the trained model, with its risk verdict; never runs it."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .. import console
from ..errors import EXIT_DANGEROUS_ANSWER, UsageError
from ..serving import ask
from . import options as shared

NAME = "ask"
HELP = ("ask the trained model for one command (transformers, a GGUF file, or an endpoint); shows its verdict, "
        "never runs it; writes nothing (--json: one object on stdout)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("request", help="what the command should do, in plain English")
    backend = parser.add_mutually_exclusive_group(required=True)
    backend.add_argument("--run", help="transformers: a finished run folder (its adapter on its base model; GPU if any)")
    backend.add_argument("--gguf", metavar="FILE", help="llama-cpp-python on the CPU: a GGUF model (export --format gguf)")
    backend.add_argument("--endpoint", metavar="URL",
                         help="an OpenAI-compatible server (vLLM, Ollama): e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--lora", metavar="FILE", help="with --gguf: a GGUF LoRA adapter to apply to the model")
    parser.add_argument("--model", default="cli-tuner", help="with --endpoint: the served model name (default %(default)s)")
    parser.add_argument("--base-model", default=None, help="with --run: the base model (default: provenance's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--verbose", action="store_true", default=shared.env_flag("CLI_TUNER_VERBOSE"),
                        help="also print the latency and the raw reply")


def _backend(args: argparse.Namespace):
    if args.lora and not args.gguf:
        raise UsageError("--lora applies to --gguf only; name the GGUF model with --gguf FILE")
    if args.gguf:
        return ask.GgufBackend(Path(args.gguf), Path(args.lora) if args.lora else None)
    if args.endpoint:
        return ask.EndpointBackend(args.endpoint, args.model, api_key=os.environ.get("OPENAI_API_KEY") or None)
    return ask.TransformersBackend(Path(args.run), args.base_model)


def run(args: argparse.Namespace) -> int:
    if not args.request.strip():
        raise UsageError("the request is empty; say what the command should do, e.g. ask --gguf FILE \"list files by size\"")
    if not args.verbose:
        console.hold_library_logs()
    backend = _backend(args)
    answer = ask.judge(args.request, backend.ask(args.request), backend.name)
    if args.json:
        console.out(json.dumps(answer.to_json()))
    else:
        if answer.refused:
            console.out(f"REFUSED (dangerous): {answer.command}")
        else:
            console.out(answer.command)
        console.out(f"verdict: {answer.verdict}" + (f" ({'; '.join(answer.reasons)})" if answer.reasons else ""))
        console.out("parses: yes" if answer.parses else f"parses: no ({'; '.join(answer.parse_problems)})")
        console.out("shellcheck: " + ("; ".join(answer.shellcheck) if answer.shellcheck else "clean"))
        if args.verbose:
            latency = answer.latency
            first = latency["first_token_seconds"]
            console.out(f"latency: {latency['total_seconds']:.3f} s total"
                        + (f", first token {first:.3f} s" if first is not None else "")
                        + (f", {latency['tokens']} chunks" if latency.get("tokens") else "") + f" ({answer.backend})")
            console.out(f"reply: {answer.reply!r}")
    return EXIT_DANGEROUS_ANSWER if answer.refused else 0
