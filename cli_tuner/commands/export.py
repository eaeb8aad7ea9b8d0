"""`export`: merge a finished run's adapter into its base model, write model cards, optionally push;
or (--format gguf) GGUF files and an Ollama Modelfile; or (--format vllm) a folder and a `vllm serve` command."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .. import console
from ..serving import gguf, llama_cpp, vllm
from ..training import export as exporting
from . import options as shared

NAME = "export"
HELP = ("merge the final adapter into the base model with model cards (RUN/export/), or write GGUF files and an "
        "Ollama Modelfile (RUN/gguf/), or vLLM's folder (RUN/vllm/); pushes to the Hub only with --push-to")
FORMATS = ("hf", "gguf", "vllm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a finished run folder (or its phase2-final/)")
    parser.add_argument("--format", choices=FORMATS, default="hf",
                        help="hf: merged safetensors + model cards ; gguf: GGUF adapter, f16 and quantized "
                             "model, Ollama Modelfile (needs the gguf extra); vllm: adapter folder + `vllm serve` command")
    parser.add_argument("--quant", choices=tuple(llama_cpp.QUANT_TYPES), default=llama_cpp.DEFAULT_QUANT,
                        help="--format gguf: llama.cpp quantization of the merged model")
    parser.add_argument("--output", default=None, help="export folder (default: RUN/export, RUN/gguf or RUN/vllm)")
    parser.add_argument("--force", action="store_true", help="replace an existing export folder")
    parser.add_argument("--base-model", default=None,
                        help="base model folder or hub id to merge into (default: provenance's base_model)")
    parser.add_argument("--no-merge", action="store_true", help="export only the adapter with its model card")
    parser.add_argument("--push-to", default=None, metavar="REPO_ID",
                        help="push to this Hugging Face model repo (needs HF_TOKEN; created private if missing)")
    parser.add_argument("--push", choices=exporting.PUSH_KINDS, default=exporting.MERGED_DIR,
                        help="what to push: the adapter or the merged model (default %(default)s)")
    parser.add_argument("--public", action="store_true", help="create the repo public (default private)")
    parser.add_argument("--verbose", action="store_true", default=shared.env_flag("CLI_TUNER_VERBOSE"),
                        help="show the libraries' warnings and loading bars (default: held off the console and written "
                             "to export.log in the export folder when there are any)")


def run(args: argparse.Namespace) -> int:
    if not args.verbose:
        console.hold_library_logs()
    output = Path(args.output) if args.output else None
    if args.format == "gguf":
        console.out(str(gguf.export(Path(args.run), gguf.GgufOptions(output, args.base_model, args.quant),
                                    say=console.say)))
        return 0
    if args.format == "vllm":
        folder, command = vllm.export(Path(args.run), vllm.VllmOptions(output, args.base_model), say=console.say)
        console.say("serve it with:")
        console.out(command)
        return 0
    options = exporting.ExportOptions(
        output=Path(args.output) if args.output else None, base_model=args.base_model, merge=not args.no_merge,
        push_to=args.push_to, push=args.push, private=not args.public, force=args.force, token=os.environ.get("HF_TOKEN") or None)
    result = exporting.export(Path(args.run), options, say=console.say)
    if result.pushed:
        console.say(f"pushed {args.push}/ to {result.pushed}")
    console.out(str(result.folder))
    return 0
