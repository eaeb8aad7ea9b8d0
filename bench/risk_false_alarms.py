"""The risk rules over every NL2Bash command: how many are called dangerous or caution, and which.

    .venv/bin/python -m bench.risk_false_alarms                       # ../shared/data/nl2bash
    .venv/bin/python -m bench.risk_false_alarms --old-commit REV      # and what changed since REV
    .venv/bin/python -m bench.risk_false_alarms --list dangerous      # every command of one verdict

NL2Bash (12,607 commands written to answer everyday questions) holds almost nothing that is
really dangerous, so a command the rules flag there is a candidate false alarm. The ones that are
really dangerous are listed in REALLY_DANGEROUS (each read by hand, with the reason); every other
flagged command counts as a false alarm: "dangerous" ones (refused from training data, never run
in the sandbox) and "caution" ones (reported only). With --old-commit the rules at REV (read from
git, not checked out) run too, and each command whose verdict changed is printed, so a rise can be
explained command by command.
"""

from __future__ import annotations

if __package__ in (None, ""):  # `python bench/risk_false_alarms.py`: make the repo importable
    import sys
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parent.parent))
    __package__ = "bench"

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from cli_tuner.corpus import nl2bash
from cli_tuner.shell import risk

from .bench_shell import old_risk_module

REPO = Path(__file__).resolve().parent.parent
DEFAULT_NL2BASH = REPO.parent / "shared" / "data" / "nl2bash"

# NL2Bash commands that are dangerous in fact (read by hand): flagged, they are no false alarm
REALLY_DANGEROUS: dict[str, str] = {
    "history -c": "clears the shell history",
    "history -cr": "clears the shell history",
    "yes \"Hidden\" | dd of=/dev/sdb": "overwrites a disk",
    "yes \"Hidden\" | tr '\\n' '\\0' | dd of=/dev/sdb": "overwrites a disk",
    "yes \"Hidden\" | paste -d' ' -s - | dd of=/dev/sdb": "overwrites a disk",
    "cat backup.img.gz | gunzip | dd of=/dev/sdb": "overwrites a disk",
    "gzip -d --stdout file.gz | bash": "runs decoded code",
    "gzip -d --stdout file.gz | bash -s -- \"-n wordpress localhost\"": "runs decoded code",
    "source <(wget -q -O - \"http://www.modulesgarden.com/manage/dl.php?type=d&id=676\")": "runs code from the network",
    "source <(curl -s http://mywebsite.com/myscript.txt)": "runs code from the network",
    "curl https://raw.github.com/creationix/nvm/master/install.sh | sh": "runs code from the network",
    "curl https://www.npmjs.com/install.sh | sh": "runs code from the network",
    "curl -o- https://raw.githubusercontent.com/creationix/nvm/v0.31.0/install.sh | bash": "runs code from the network",
    "find / -size +100M -exec rm -rf {} \\;": "deletes every large file of the system",
    "find /  -size +100M -exec rm -rf {} \\;": "deletes every large file of the system",
    "find / -size +100M -exec /bin/rm {} \\;": "deletes every large file of the system",
    "find /usr/* -size 0c -exec rm {} \\;": "deletes the system's empty files (markers, __init__.py)",
    "find / -type f -print0 | xargs -0 grep -liwZ GUI | xargs -0 rm -f": "deletes system files that mention a word",
    "find / -newerct '1 minute ago' -print | xargs rm": "deletes every recently changed system file",
    "find /home/ -exec grep -l \u201cmp3\u201d {} \\; | xargs rm": "deletes files in every home",
    "rm -rf *": "deletes everything wherever the shell happens to be",
}


def verdict(findings) -> str:
    if any(f.severity == risk.DANGEROUS for f in findings):
        return "dangerous"
    return "caution" if findings else "safe"


def verdicts(module, commands: list[str]) -> list[str]:
    return [verdict(module.assess(command)) for command in commands]


def summary(found: list[str], commands: list[str]) -> dict:
    dangerous = [c for c, v in zip(commands, found) if v == "dangerous"]
    return {"dangerous": len(dangerous), "caution": found.count("caution"),
            "dangerous_false_alarms": sum(1 for c in dangerous if c not in REALLY_DANGEROUS)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nl2bash", type=Path, default=DEFAULT_NL2BASH, help="folder with all.cm")
    parser.add_argument("--old-commit", help="also run the rules of this git revision and list the changes")
    parser.add_argument("--list", choices=("dangerous", "caution"), help="print every command of this verdict")
    args = parser.parse_args(argv)
    commands = list(dict.fromkeys(c for c in nl2bash.read_lines(args.nl2bash / "all.cm") if c.strip()))
    risk.assess("ls")  # load the grammar before timing
    started = time.perf_counter()
    new = verdicts(risk, commands)
    seconds = round(time.perf_counter() - started, 2)
    result = {"commands": len(commands), "now": {**summary(new, commands), "seconds": seconds}}
    if args.old_commit:
        with tempfile.TemporaryDirectory() as folder:
            module = old_risk_module(args.old_commit, Path(folder))
            module.assess("ls")
            started = time.perf_counter()
            old = verdicts(module, commands)
        result["old"] = {"commit": args.old_commit, **summary(old, commands),
                         "seconds": round(time.perf_counter() - started, 2)}
        result["changed"] = [{"command": c, "old": o, "now": n} for c, o, n in zip(commands, old, new) if o != n]
    if args.list:
        result["listed"] = [c for c, v in zip(commands, new) if v == args.list]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
