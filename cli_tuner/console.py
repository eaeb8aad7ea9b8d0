"""The only module that prints. Library code returns findings and renderables; the commands and
the training pipeline hand them here, so the job speaks in one voice.

- `say`: the job's own progress lines, prefixed `[cli-tuner]`, on stdout.
- `out`: a plain result line on stdout (what a command found).
- `problem`: a finding or warning on stderr; `error`: the final one-line error on stderr.
- `show`: a rich renderable (table, styled text). Colour and box lines only on a terminal, so
  logs and captured output stay plain.
- `stream`: the trainer's own log lines, passed through as they come (`--verbose`).
- `phase`: one progress bar per phase (data check, preparation, training, evaluation) on a
  terminal; off a terminal (CI, `docker logs`) a start line, a few milestone lines and a done line,
  never carriage returns.
- `quiet_known_library_noise`: silences what libraries log at import that is known to be harmless here.
- `hold_library_logs`: keeps the warnings that libraries log in this process (torchao, bitsandbytes,
  Python warnings) off the console; `held_library_logs` hands them over for the run's train.log.
"""

from __future__ import annotations

import logging
import sys
import time

from .redact import redact

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


# --- phases -----------------------------------------------------------------------------------

def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Phase:
    """One phase of the job, shown as a live rich bar on a terminal or as a few plain lines.

    `update(completed, total, detail)` as often as you like: off a terminal it prints a milestone
    line only when another `every_percent` of the total is done, or a heartbeat after
    `heartbeat_s` of silence, so logs stay short. `done(summary)` closes it with one line.
    """

    def __init__(self, title: str, total: int | None = None, unit: str = "", *, detail: str = "",
                 live: bool | None = None, every_percent: int = 25, heartbeat_s: float = 120.0):
        self.title, self.total, self.unit = title, total, unit
        self.live = is_terminal() if live is None else live
        self.every_percent, self.heartbeat_s = every_percent, heartbeat_s
        self.started = time.monotonic()
        self.completed = 0
        self._first: int | None = None  # where this phase began (a resumed run starts past 0)
        self.detail = detail
        self._next_percent = every_percent
        self._last_line = self.started
        self._closed = False
        self._progress = None
        if self.live:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
                                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                      console=_console(False), transient=False)
            self._progress.start()
            self._task = self._progress.add_task(title, total=total, detail=detail)
        else:
            say(f"{title}: started" + (f", {total} {unit}" if total else "") + (f" ({detail})" if detail else ""))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta(self) -> float | None:
        done = self.completed - (self._first or 0)
        if not self.total or done <= 0:
            return None
        return self.elapsed() / done * max(self.total - self.completed, 0)

    def update(self, completed: int | None = None, total: int | None = None, detail: str | None = None) -> None:
        if self._closed:
            return
        if total is not None:
            self.total = total
        if completed is not None:
            self.completed = completed
            if self._first is None:
                self._first = completed
        if detail is not None:
            self.detail = detail
        if self._progress is not None:
            self._progress.update(self._task, completed=self.completed, total=self.total, detail=self.detail)
            return
        now = time.monotonic()
        percent = 100 * self.completed / self.total if self.total else None
        if percent is not None and percent >= self._next_percent and self.completed < self.total:
            while self._next_percent <= percent:
                self._next_percent += self.every_percent
            self._line(f"{self.completed}/{self.total} {self.unit} ({percent:.0f}%)")
        elif now - self._last_line >= self.heartbeat_s:
            done = f"{self.completed}/{self.total} {self.unit}, " if self.total else ""
            self._line(f"{done}still running")

    def _line(self, head: str) -> None:
        parts = [head] + ([self.detail] if self.detail else [])
        parts.append(f"elapsed {_duration(self.elapsed())}")
        if self.eta() is not None:
            parts.append(f"ETA {_duration(self.eta())}")
        say(f"{self.title}: " + ", ".join(parts))
        self._last_line = time.monotonic()

    def done(self, summary: str = "done") -> None:
        if self._closed:
            return
        self._closed = True
        if self._progress is not None:
            if self.total is not None and summary != "failed":
                self._progress.update(self._task, completed=self.total)
            self._progress.stop()
        say(f"{self.title}: {summary} ({_duration(self.elapsed())})")

    def __enter__(self) -> "Phase":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.done("failed" if exc_type else "done")


def phase(title: str, total: int | None = None, unit: str = "", **kwargs) -> Phase:
    return Phase(title, total, unit, **kwargs)


# --- library warnings -------------------------------------------------------------------------

class _Held(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append(self.format(record))
        except Exception:  # noqa: BLE001 - a broken library message must not stop the job
            self.handleError(record)


_HELD: _Held | None = None
# torch prints through its own handler; this one repeats a deprecation note for every torchao import
_QUIET_LOGGERS = ("torch.utils._pytree",)


class _KnownHarmless(logging.Filter):
    """torchao tries every compiled extension it ships when Axolotl imports it: the mxfp8 one is built
    for CPython 3.10 and the cutlass one for sm_90a CUDA, so on this 3.11 job (and without that GPU)
    they never load, and this job's QLoRA path uses neither."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Failed to load ") and "torchao/_C" in message and ".so" in message)


def quiet_known_library_noise() -> None:
    """Silence what libraries log at import that is known to be harmless here (before they are imported),
    so a command's console starts with the job's own lines."""
    torchao = logging.getLogger("torchao")
    if not any(isinstance(f, _KnownHarmless) for f in torchao.filters):
        torchao.addFilter(_KnownHarmless())
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def hold_library_logs() -> None:
    """Libraries' logged warnings and Python warnings go to a buffer instead of stderr (errors still
    print); the pipeline writes the buffer into train.log. Also turns off the hub's and transformers'
    download/loading bars in this process."""
    global _HELD
    if _HELD is not None:
        return
    _HELD = _Held()
    logging.getLogger().addHandler(_HELD)
    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.ERROR)
    logging.getLogger().addHandler(errors)
    logging.captureWarnings(True)
    quiet_known_library_noise()
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def held_library_logs() -> list[str]:
    """The held messages since the last call (empty when nothing is held), secrets masked."""
    if _HELD is None:
        return []
    records, _HELD.records = _HELD.records, []
    return [redact(record) for record in records]
