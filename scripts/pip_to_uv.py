#!/usr/bin/env python3
"""Pass this machine's pip settings on to uv, which reads neither pip.conf nor PIP_* variables.

    eval "$(python3.11 scripts/pip_to_uv.py)"        # what scripts/setup.sh does

Reads `python -m pip config list` (pip's config files and PIP_* variables, as pip sees them) and
prints bash for setup.sh: `UV_PIP_ARGS+=(...)` for what uv takes as `uv pip install` options, and
`export NAME=...` for what it takes from the environment. Lists go in as options rather than UV_*
variables because an option given on the command line (setup.sh adds `-c requirements-lock.txt`)
replaces the variable instead of adding to it. A UV_* variable (or SSL_CERT_FILE, ...) that is
already set wins over the pip setting it stands for.

With extra indexes pip takes the best version across all of them and, for a version on several,
the wheel that fits this Python best. uv is told the first (`--index-strategy unsafe-best-match`,
unless UV_INDEX_STRATEGY says otherwise), but for a version on several indexes it takes the files
of the first index listed. So the main index (pip's index-url, else PyPI) is listed first, ahead
of the extras: a partial mirror then only fills in what the main index lacks. (Listed after it,
a mirror holding only multiprocess's py310 wheel gave Python 3.11 that wheel, which fails there.)

`--from FILE` reads saved `pip config list` output instead of running pip (the tests use it).
"""

from __future__ import annotations

import argparse
import ast
import os
import shlex
import subprocess
import sys

# pip option -> (uv option, the UV_* variable that option reads, how that variable separates items)
LIST_OPTIONS = {
    "index-url": ("--default-index", "UV_DEFAULT_INDEX", None),
    "extra-index-url": ("--index", "UV_INDEX", " "),
    "find-links": ("--find-links", "UV_FIND_LINKS", ","),
    "constraint": ("--constraint", "UV_CONSTRAINT", " "),
    "trusted-host": ("--allow-insecure-host", "UV_INSECURE_HOST", " "),
}
# pip option -> environment variable uv (or its TLS and HTTP stack) reads
ENV_OPTIONS = {
    "cert": "SSL_CERT_FILE",
    "client-cert": "SSL_CLIENT_CERT",
    "timeout": "UV_HTTP_TIMEOUT",
    "default-timeout": "UV_HTTP_TIMEOUT",
    "proxy": "HTTPS_PROXY",
}
FLAG_OPTIONS = {"no-index": "--no-index"}
# Settings that change nothing about what gets installed from where.
IGNORED = {"disable-pip-version-check", "no-input", "root-user-action", "progress-bar", "quiet", "verbose",
           "no-color", "retries", "cache-dir", "no-cache-dir", "require-virtualenv", "break-system-packages",
           "no-warn-script-location", "user", "log"}
PYPI = "https://pypi.org/simple"
# Later sections win: pip reads PIP_* variables over the [install] section over [global].
SECTION_RANK = {"global": 0, "install": 1, ":env:": 2}


def pip_config_lines(python: str) -> list[str]:
    try:
        result = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"note: cannot read pip's settings ({exc}); uv uses its defaults", file=sys.stderr)
        return []
    if result.returncode != 0:
        print(f"note: `{python} -m pip config list` failed; uv uses its defaults", file=sys.stderr)
        return []
    return result.stdout.splitlines()


def parse(lines: list[str]) -> dict[str, str]:
    """{option: value} as pip would apply it to `pip install`."""
    chosen: dict[str, tuple[int, str]] = {}
    for line in lines:
        name, sep, raw = line.partition("=")
        section, dot, option = name.strip().rpartition(".")
        if not sep or not dot or section not in SECTION_RANK:
            continue
        try:
            value = str(ast.literal_eval(raw.strip()))
        except (ValueError, SyntaxError):
            value = raw.strip().strip("'\"")
        rank = SECTION_RANK[section]
        if option not in chosen or rank >= chosen[option][0]:  # same section: the later file wins
            chosen[option] = (rank, value)
    return {option: value for option, (_, value) in chosen.items()}


def translate(settings: dict[str, str], environ: dict[str, str]) -> tuple[list[str], dict[str, str], list[str]]:
    """(uv pip install options, environment variables to export, notes)."""
    args: list[str] = []
    env: dict[str, str] = {}
    notes: list[str] = []
    lists: dict[str, list[str]] = {}
    for option, (flag, variable, separator) in LIST_OPTIONS.items():
        if environ.get(variable):  # the user's uv setting, kept: the option would hide it
            raw = environ[variable]
            values = raw.split(separator) if separator and separator != " " else raw.split()
        elif option in settings:
            values = settings[option].split()  # pip separates list items with whitespace
        else:
            continue
        lists[option] = [v.strip() for v in values if v.strip()]
    extras = lists.get("extra-index-url", [])
    if extras:
        main_index = (lists.get("index-url") or [PYPI])[0]
        lists["extra-index-url"] = [main_index] + [url for url in extras if url != main_index]
    for option, values in lists.items():
        for value in values:
            args += [LIST_OPTIONS[option][0], value]
    if extras and not environ.get("UV_INDEX_STRATEGY"):
        args += ["--index-strategy", "unsafe-best-match"]
    for option, flag in FLAG_OPTIONS.items():
        if settings.get(option, "").lower() in {"1", "true", "yes", "on"}:
            args.append(flag)
    for option, variable in ENV_OPTIONS.items():
        if option in settings and not environ.get(variable) and variable not in env:
            env[variable] = settings[option]
    for option in sorted(set(settings) - set(LIST_OPTIONS) - set(ENV_OPTIONS) - set(FLAG_OPTIONS) - IGNORED):
        notes.append(f"note: pip setting {option}={settings[option]!r} has no uv counterpart here; uv ignores it")
    return args, env, notes


def render(args: list[str], env: dict[str, str]) -> str:
    lines = [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    if args:
        lines.append("UV_PIP_ARGS+=(" + " ".join(shlex.quote(a) for a in args) + ")")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", help="saved `pip config list` output (default: run pip)")
    parser.add_argument("--python", default=sys.executable, help="whose pip to ask (default: this Python)")
    options = parser.parse_args(argv)
    if options.source:
        with open(options.source, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    else:
        lines = pip_config_lines(options.python)
    args, env, notes = translate(parse(lines), dict(os.environ))
    for note in notes:
        print(note, file=sys.stderr)
    text = render(args, env)
    if text:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
