"""The only module that prints. Library code returns findings and renderables; the commands and
the training pipeline hand them here, so the job speaks in one voice.

- `say`: the job's own progress lines, prefixed `[cli-tuner]`, on stdout.
- `out`: a plain result line on stdout (what a command found).
- `problem`: a finding or warning on stderr; `error`: the final one-line error on stderr.
- `show`: a rich renderable (table, styled text). Colour and box lines only on a terminal, so
  logs and captured output stay plain.
- `stream`: the trainer's own log lines, passed through as they come.
"""

from __future__ import annotations

import sys

PREFIX = "[cli-tuner]"


def say(message: str) -> None:
    print(f"{PREFIX} {message}", flush=True)


def out(message: str = "") -> None:
    print(message, flush=True)


def problem(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def stream(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _console(stderr: bool):
    from rich.console import Console

    return Console(file=sys.stderr if stderr else sys.stdout, highlight=False, soft_wrap=True)


def show(*renderables, stderr: bool = False) -> None:
    """Print rich renderables or markup strings (escape user text with `rich.markup.escape`)."""
    console = _console(stderr)
    for renderable in renderables:
        console.print(renderable)


def is_terminal() -> bool:
    return sys.stdout.isatty()


def to_text(renderable, width: int = 120) -> str:
    """What `show` would print off a terminal: plain text, no colour codes."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, highlight=False, soft_wrap=True).print(renderable)
    return buffer.getvalue()
