"""`ask`: one Bash command for a request, from the trained model, judged and never run.

Three backends, whichever the user names:
- `transformers`: the run's adapter on its base model (a GPU when there is one), as the checkpoint
  check generates;
- `gguf`: a GGUF file through llama-cpp-python on the CPU (the merged model, or a base model with
  `--lora` the adapter's GGUF); the prompt is the GGUF's own chat template, which the export
  copied from the trained tokenizer;
- `endpoint`: an OpenAI-compatible server (vLLM, Ollama, llama.cpp's server) at a URL, over its
  streaming /v1/chat/completions.
Each is greedy. The reply's command (`evaluation.answers.extract_command`) is judged by the same
rules as evaluation: the risk verdict (`shell.risk`), ShellCheck (`shell.syntax`), whether it
parses (`bash -n`). A dangerous command is refused: shown with the reason, never
offered to run.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError, EnvironmentProblem
from ..evaluation.answers import extract_command
from ..evaluation.generation import generate, load_checkpoint_tokenizer, load_model
from ..shell import risk, syntax
from ..training.export import find_final

MAX_NEW_TOKENS = 128
GGUF_CONTEXT = 1024


@dataclass
class Reply:
    text: str
    first_token_seconds: float | None
    total_seconds: float
    tokens: int | None = None


@dataclass
class Answer:
    request: str
    command: str
    verdict: str                 # "safe", "caution" or "dangerous"
    refused: bool
    reasons: list[str]
    parses: bool
    parse_problems: list[str]
    shellcheck: list[str]
    backend: str
    reply: str
    latency: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def judge(request: str, reply: Reply, backend: str) -> Answer:
    command = extract_command(reply.text)
    findings = risk.assess(command) if command else []
    dangerous = [f for f in findings if f.severity == risk.DANGEROUS]
    verdict = risk.DANGEROUS if dangerous else (risk.CAUTION if findings else "safe")
    # Whether it parses is bash's own word (`bash -n`), as everywhere the job judges Bash.
    if command:
        bash_error = syntax.syntax_errors([command])[0]
        problems = [f"bash -n: {bash_error}"] if bash_error else []
    else:
        problems = ["the reply holds no command"]
    checked = syntax.shellcheck([command])[0] if command else []
    latency = {"first_token_seconds": reply.first_token_seconds, "total_seconds": reply.total_seconds,
               "tokens": reply.tokens}
    return Answer(request=request, command=command, verdict=verdict, refused=bool(dangerous),
                  reasons=[f"{f.rule}: {f.message}" for f in findings], parses=not problems,
                  parse_problems=problems, shellcheck=[str(f) for f in checked], backend=backend,
                  reply=reply.text, latency=latency)


# ------------------------------------------------------------------ backends

class GgufBackend:
    """A GGUF file on the CPU through llama-cpp-python (loaded once, asked many times)."""

    name = "gguf"

    def __init__(self, model: Path, lora: Path | None = None, threads: int | None = None):
        for path in (model, lora):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{path}: GGUF file not found; run `export --format gguf` first or name another file")
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise EnvironmentProblem(f"llama-cpp-python is not installed ({exc}); install the gguf extra: "
                                     "pip install -e '.[gguf]'") from exc
        try:
            self.llm = Llama(model_path=str(model), lora_path=str(lora) if lora else None, n_ctx=GGUF_CONTEXT,
                             n_threads=threads, seed=0, verbose=False)
        except (ValueError, RuntimeError) as exc:  # llama.cpp refuses a file it cannot read
            raise ConfigError(f"{model}: llama.cpp cannot load it ({exc}); is it a GGUF model file "
                              f"(and {lora} an adapter for it)?") from exc

    def ask(self, request: str, max_tokens: int = MAX_NEW_TOKENS) -> Reply:
        start = time.monotonic()
        first = None
        parts = []
        stream = self.llm.create_chat_completion(messages=[{"role": "user", "content": request}], temperature=0.0,
                                                 top_k=1, max_tokens=max_tokens, stream=True, seed=0)
        for chunk in stream:
            delta = chunk["choices"][0].get("delta", {}).get("content")
            if delta:
                if first is None:
                    first = time.monotonic() - start
                parts.append(delta)
        return Reply("".join(parts), first, time.monotonic() - start, len(parts))


class EndpointBackend:
    """An OpenAI-compatible server's streaming chat completions."""

    name = "endpoint"

    def __init__(self, url: str, model: str, api_key: str | None = None, timeout: float = 120):
        self.url = url.rstrip("/")
        if not self.url.endswith("/v1"):
            self.url += "/v1"
        self.model, self.api_key, self.timeout = model, api_key, timeout

    def ask(self, request: str, max_tokens: int = MAX_NEW_TOKENS) -> Reply:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": request}],
                           "temperature": 0, "max_tokens": max_tokens, "stream": True}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        start = time.monotonic()
        first = None
        parts = []
        target = f"{self.url}/chat/completions"
        try:
            with urllib.request.urlopen(urllib.request.Request(target, body, headers), timeout=self.timeout) as response:
                for raw in response:
                    line = raw.decode("utf-8", "replace").strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    delta = (json.loads(data).get("choices") or [{}])[0].get("delta", {}).get("content")
                    if delta:
                        if first is None:
                            first = time.monotonic() - start
                        parts.append(delta)
        except urllib.error.HTTPError as exc:
            raise EnvironmentProblem(f"{target} answered HTTP {exc.code} ({exc.reason}); check --endpoint and "
                                     f"--model {self.model} (the name the server serves)") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise EnvironmentProblem(f"{target}: no answer ({exc}); is the server running there?") from exc
        return Reply("".join(parts), first, time.monotonic() - start, len(parts))


class TransformersBackend:
    """The run's adapter on its base model with transformers (CUDA when present, else CPU)."""

    name = "transformers"

    def __init__(self, run: Path, base_model: str | None = None):
        final, provenance = find_final(run)
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        base = base_model or provenance.get("base_model")
        self.tokenizer = load_checkpoint_tokenizer(final)
        self.model = load_model(base, final, provenance.get("resolved_config") or {}, device)

    def ask(self, request: str, max_tokens: int = MAX_NEW_TOKENS) -> Reply:
        start = time.monotonic()
        text = generate(self.model, self.tokenizer, [{"messages": [{"role": "user", "content": request}]}],
                        max_tokens, batch_size=1)[0]
        return Reply(text, None, time.monotonic() - start)
