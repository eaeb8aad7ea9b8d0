"""An Ollama Modelfile whose TEMPLATE renders exactly the chat template the model was trained with.

The Jinja chat template is not translated by hand: it is rendered by the tokenizer itself
(`apply_chat_template`) for one request, with and without a system message, with sentinel text
where the request and the system prompt go; the sentinels become Ollama's `{{ .Prompt }}` and
`{{ .System }}`. So for the one-request prompts `ask` and Ollama's generate API send, the text
is the trained one, a default system prompt of the template (Qwen's) included. The leading BOS
text (Mistral's `<s>`) is left out: llama.cpp adds BOS itself when the GGUF says add_bos_token,
and a second one would change the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

PROMPT_MARK = "\u2063CLI_TUNER_PROMPT\u2063"
SYSTEM_MARK = "\u2063CLI_TUNER_SYSTEM\u2063"
# Greedy and short: one command per answer (temperature 0 is greedy in llama.cpp's sampler).
GREEDY = (("temperature", "0"), ("top_k", "1"), ("top_p", "1"), ("repeat_penalty", "1"), ("num_predict", "128"))


@dataclass(frozen=True)
class ChatTemplate:
    without_system: str          # the prompt text around PROMPT_MARK, for a request alone
    with_system: str | None      # ... with SYSTEM_MARK too; None where the template has no system role
    stops: tuple[str, ...]       # the template's end-of-turn tokens
    bos: str                     # the BOS text left out of the template ("" when none)

    def go_template(self) -> str:
        """Ollama's TEMPLATE (Go text/template): only `if .System`, `.System` and `.Prompt` actions."""
        plain = self.without_system.replace(PROMPT_MARK, "{{ .Prompt }}")
        if self.with_system is None:
            return plain
        system = self.with_system.replace(PROMPT_MARK, "{{ .Prompt }}").replace(SYSTEM_MARK, "{{ .System }}")
        return "{{ if .System }}" + system + "{{ else }}" + plain + "{{ end }}"

    def render(self, prompt: str, system: str | None = None) -> str:
        """The prompt text the template gives (what Ollama renders, BOS left to the tokenizer)."""
        if system and self.with_system is not None:
            return self.with_system.replace(SYSTEM_MARK, system).replace(PROMPT_MARK, prompt)
        return self.without_system.replace(PROMPT_MARK, prompt)


def _render(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def chat_template(tokenizer) -> ChatTemplate:
    """The tokenizer's chat template as prompt text with marks, and its end tokens."""
    user = {"role": "user", "content": PROMPT_MARK}
    plain = _render(tokenizer, [user])
    try:
        system = _render(tokenizer, [{"role": "system", "content": SYSTEM_MARK}, user])
    except Exception:  # a template that raises on a system message (some do): no system variant
        system = None
    if system is not None and SYSTEM_MARK not in system:
        system = None
    bos = tokenizer.bos_token or ""
    if bos and plain.startswith(bos) and (system is None or system.startswith(bos)):
        plain = plain[len(bos):]
        system = system[len(bos):] if system is not None else None
    else:
        bos = ""
    return ChatTemplate(plain, system, end_tokens(tokenizer), bos)


def end_tokens(tokenizer) -> tuple[str, ...]:
    """The tokens that end an answer: EOS, and the template's end-of-turn marker when it is a special token."""
    found = []
    reply = tokenizer.apply_chat_template([{"role": "user", "content": "x"}, {"role": "assistant", "content": PROMPT_MARK}],
                                          tokenize=False)
    after = reply.split(PROMPT_MARK, 1)[1] if PROMPT_MARK in reply else ""
    specials = sorted(set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "added_tokens_encoder", {})),
                      key=len, reverse=True)
    for token in specials:
        if token and after.lstrip().startswith(token):
            found.append(token)
            break
    if tokenizer.eos_token:
        found.append(tokenizer.eos_token)
    return tuple(dict.fromkeys(found))


def modelfile(source: str, template: ChatTemplate, adapter: str | None = None) -> str:
    """The Modelfile text: FROM (a GGUF path or an Ollama model), ADAPTER, TEMPLATE, stops, greedy defaults."""
    text = template.go_template()
    if '"""' in text:
        raise ValueError('the chat template contains """, which a Modelfile TEMPLATE cannot hold')
    lines = [f"FROM {source}"]
    if adapter:
        lines.append(f"ADAPTER {adapter}")
    lines.append(f'TEMPLATE """{text}"""')
    lines += [f'PARAMETER stop "{stop}"' for stop in template.stops]
    lines += [f"PARAMETER {name} {value}" for name, value in GREEDY]
    return "\n".join(lines) + "\n"
