"""What counts as a command: Bash builtins and keywords, and the programs in known_commands.txt.

The checkpoint gate asks of every answer whether its first word runs something: a builtin, a
function the answer defines, a program from the project's list (see the list's header for how
it was derived), a path to a program (`./configure`, `/usr/bin/env`) or a script file by its
extension (`deploy.sh`). "Sure," and "You" are none of these.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

KNOWN_COMMANDS_FILE = Path(__file__).with_name("known_commands.txt")

# `compgen -b` of GNU Bash 5.2, and the reserved words of `compgen -k`
BUILTINS = frozenset("""
. : [ alias bg bind break builtin caller cd command compgen complete compopt continue declare dirs disown
echo enable eval exec exit export false fc fg getopts hash help history jobs kill let local logout mapfile
popd printf pushd pwd read readarray readonly return set shift shopt source suspend test times trap true
type typeset ulimit umask unalias unset wait
""".split())
KEYWORDS = frozenset("! [[ ]] case coproc do done elif else esac fi for function if in select then time until while { }".split())
SCRIPT_FILE = re.compile(r"[\w.+-]+\.(sh|bash|zsh|ksh|py|pl|rb|php|js|lua|awk|sed|R|jl|tcl|exe|out|bin|run|AppImage)")


@lru_cache(maxsize=1)
def known_programs() -> frozenset[str]:
    names = set()
    for line in KNOWN_COMMANDS_FILE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(line)
    return frozenset(names)


def is_command(name: str, functions: frozenset[str] | set[str] = frozenset()) -> bool:
    """Whether a command name runs something Bash can find."""
    if not name:
        return False
    if name in BUILTINS or name in KEYWORDS or name in functions:
        return True
    if "/" in name:  # a path: ./configure, /usr/bin/python3, ~/bin/tool
        return bool(re.fullmatch(r"[~.]?[\w./+-]*/[\w.+-]+", name))
    return name in known_programs() or bool(SCRIPT_FILE.fullmatch(name))
