"""The fixture tree commands run on: generated from a seed, the same tree on every machine.

NL2Bash commands are mostly `find`, `grep`, `ls`, `wc`, `du`, `sort`, `head`, `tar`, `chmod`,
`xargs`... over "the current directory". To tell a right command from a wrong one they need
something real to work on: files of many extensions (including the ones NL2Bash names: *.txt,
*.html, *.c, *.php, *.mp3, file.txt, foo.txt...), sizes from empty to over a megabyte, text with
words, numbers, IP addresses and e-mail addresses to grep, CSV columns to cut, permissions from
0400 to 0777, hidden files and folders, symlinks (one dangling), empty folders, nesting seven deep,
names with spaces, and archives (tar.gz, gz) to unpack.

Modification times are fixed offsets before the moment the tree is built (minutes to years),
so `find -mtime -7` finds the same files on every machine on every day; `fingerprint()` is over
what is seeded (paths, kinds, modes, sizes, contents, link targets, time offsets), not the clock.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SEED = 24
WORDS = ("alpha beta gamma delta error warning info debug foo bar baz hello world user admin root config "
         "server client request response timeout connection failed success value key name path file "
         "data test line number apple banana cherry linux bash shell script python java string").split()
EXTENSIONS = ("txt", "log", "py", "sh", "c", "h", "cpp", "java", "js", "php", "html", "css", "xml", "json",
              "csv", "md", "conf", "ini", "sql", "bak", "tmp", "jpg", "png", "mp3", "pdf", "bin", "text", "dat")
BINARY = {"jpg", "png", "mp3", "pdf", "bin", "dat"}
FOLDERS = ("src", "docs", "logs", "data", "backup", "test", "images", "music", "scripts", "build", "Desktop",
           "Documents", "Messages", "node_modules", "project", "tmp", "www", "old files", "lib", "include")
FIXED_FILES = {  # names NL2Bash commands ask for by name
    "file.txt": "text", "foo.txt": "text", "list.txt": "list", "Output.txt": "text", "input.txt": "text",
    "a.txt": "text", "b.txt": "text", "data.csv": "csv", "error.log": "log", "access.log": "log",
    "testscript.sh": "script", "foo.cpp": "code", "main.c": "code", "index.html": "html", "style.css": "code",
    "README.md": "text", "numbers.txt": "numbers", "names.txt": "list", "file": "text", "empty.txt": "empty",
}
MODES = (0o644, 0o644, 0o644, 0o600, 0o640, 0o664, 0o755, 0o700, 0o444, 0o400, 0o666, 0o777)
DIR_MODES = (0o755, 0o755, 0o755, 0o750, 0o700, 0o775, 0o777)
AGES = (60, 3600, 6 * 3600, 86400, 2 * 86400, 5 * 86400, 10 * 86400, 40 * 86400, 100 * 86400, 400 * 86400,
        800 * 86400)


@dataclass(frozen=True)
class Entry:
    path: str           # relative, "/"-separated
    kind: str           # "f" file, "d" folder, "l" symlink
    mode: int = 0o644
    content: bytes = b""
    target: str = ""    # a symlink's target
    age: int = 0        # seconds before the build time


def _line(rng: random.Random) -> str:
    kind = rng.random()
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9)))
    if kind < 0.1:
        return f"{rng.randint(1, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)} {words}"
    if kind < 0.18:
        return f"{rng.choice(WORDS)}.{rng.choice(WORDS)}@example.com {words}"
    if kind < 0.3:
        return f"{rng.randint(0, 99999)} {words}"
    if kind < 0.36:
        return ""
    if kind < 0.42:
        return words.upper()
    return words


def _text(rng: random.Random, style: str) -> bytes:
    if style == "empty":
        return b""
    if style == "numbers":
        return "".join(f"{rng.randint(-50, 1000)}\n" for _ in range(rng.randint(10, 40))).encode()
    if style == "list":
        return "".join(f"{rng.choice(WORDS)}{rng.randint(1, 20)}\n" for _ in range(rng.randint(5, 25))).encode()
    if style == "csv":
        rows = ["id,name,score,city"] + [f"{i},{rng.choice(WORDS)},{rng.randint(0, 100)},{rng.choice(WORDS)}"
                                          for i in range(1, rng.randint(8, 30))]
        return ("\n".join(rows) + "\n").encode()
    if style == "log":
        return "".join(f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)} {rng.choice(('INFO', 'WARN', 'ERROR', 'DEBUG'))} "
                       f"{_line(rng)}\n" for _ in range(rng.randint(5, 60))).encode()
    if style == "script":
        return ("#!/bin/bash\n" + "".join(f"echo {rng.choice(WORDS)}\n" for _ in range(rng.randint(1, 6)))).encode()
    if style == "code":
        return "".join(f"int {rng.choice(WORDS)}_{i} = {rng.randint(0, 99)}; // {rng.choice(WORDS)}\n"
                       for i in range(rng.randint(3, 30))).encode()
    if style == "html":
        return ("<html>\n<body>\n" + "".join(f"<p>{_line(rng)}</p>\n" for _ in range(rng.randint(2, 12)))
                + "</body>\n</html>\n").encode()
    lines = [_line(rng) for _ in range(rng.randint(1, 80))]
    return ("\n".join(lines) + ("\n" if rng.random() < 0.9 else "")).encode()


def _file_content(rng: random.Random, extension: str) -> bytes:
    if extension in BINARY:
        size = rng.choice((0, 17, 1024, 4096, 30_000, 120_000))
        return rng.randbytes(size)
    style = {"log": "log", "sh": "script", "c": "code", "h": "code", "cpp": "code", "java": "code", "js": "code",
             "css": "code", "html": "html", "csv": "csv"}.get(extension, "text")
    return _text(rng, style if rng.random() > 0.05 else "empty")


def _archive(entries: list[Entry]) -> bytes:
    """A tar.gz of some text files, fixed times and owners, so its bytes depend only on the seed."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.path.rsplit("/", 1)[-1])
            info.size, info.mode, info.mtime, info.uname, info.gname = len(entry.content), 0o644, 1_600_000_000, "user", "user"
            tar.addfile(info, io.BytesIO(entry.content))
    return gzip.compress(buffer.getvalue(), mtime=0)


def entries(seed: int = DEFAULT_SEED) -> list[Entry]:
    """The tree's entries, parents before children."""
    rng = random.Random(seed)
    tree: list[Entry] = []
    folders = [""]
    for name in FOLDERS:  # top-level folders, some with nested chains
        tree.append(Entry(name, "d", rng.choice(DIR_MODES), age=rng.choice(AGES)))
        folders.append(name)
        path = name
        for _ in range(rng.choice((0, 0, 1, 2, 3, 6))):
            path = f"{path}/{rng.choice(FOLDERS + ('sub', 'deep', 'a', 'b', '.cache')).lower()}"
            if any(e.path == path for e in tree):
                break
            tree.append(Entry(path, "d", 0o755, age=rng.choice(AGES)))
            folders.append(path)
    for hidden in (".config", ".git", ".hidden dir", "empty", "src/empty"):
        tree.append(Entry(hidden, "d", 0o755, age=rng.choice(AGES)))
    folders.extend((".config", ".git", ".hidden dir"))
    for name, style in FIXED_FILES.items():
        tree.append(Entry(name, "f", 0o644, _text(rng, style), age=rng.choice(AGES)))
    used = {e.path for e in tree}
    for _ in range(170):
        folder = rng.choice(folders)
        extension = rng.choice(EXTENSIONS)
        stem = rng.choice(WORDS) + rng.choice(("", "", str(rng.randint(1, 99)), "_old", "-2", " copy", "_TEST"))
        name = ("." if rng.random() < 0.06 else "") + stem + ("" if rng.random() < 0.04 else f".{extension}")
        if rng.random() < 0.05:
            name = name.upper()
        path = f"{folder}/{name}" if folder else name
        if path in used:
            continue
        used.add(path)
        tree.append(Entry(path, "f", rng.choice(MODES), _file_content(rng, extension), age=rng.choice(AGES)))
    tree.append(Entry("data/big.bin", "f", 0o644, rng.randbytes(1_300_000), age=AGES[6]))
    tree.append(Entry("logs/huge.log", "f", 0o644, _text(rng, "log") * 40, age=AGES[2]))
    texts = [e for e in tree if e.kind == "f" and e.path.endswith(".txt")][:5]
    tree.append(Entry("backup/data.tar.gz", "f", 0o644, _archive(texts), age=AGES[7]))
    tree.append(Entry("backup/blah.gz", "f", 0o644, gzip.compress(_text(rng, "text"), mtime=0), age=AGES[7]))
    for link, target in (("link_to_file.txt", "file.txt"), ("docs/link_to_src", "../src"),
                         ("dangling_link", "no/such/file"), (".config/current.log", "../logs/huge.log")):
        tree.append(Entry(link, "l", 0o777, target=target, age=rng.choice(AGES)))
    return tree


def build(dest: Path, seed: int = DEFAULT_SEED, now: float | None = None) -> Path:
    """Write the tree under `dest` (an empty or missing folder) and return it."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    now = time.time() if now is None else now
    tree = entries(seed)
    for entry in tree:
        path = dest / entry.path
        if entry.kind == "d":
            path.mkdir(exist_ok=True)
        elif entry.kind == "f":
            path.write_bytes(entry.content)
        else:
            os.symlink(entry.target, path)
    # times and modes last, deepest first: writing into a folder would move its time, and a read-only
    # folder could not be written into
    for entry in sorted(tree, key=lambda e: -e.path.count("/")):
        path = dest / entry.path
        stamp = now - entry.age
        os.utime(path, (stamp, stamp), follow_symlinks=False)
        if entry.kind != "l":
            os.chmod(path, entry.mode)
    os.utime(dest, (now, now))
    return dest


def fingerprint(seed: int = DEFAULT_SEED) -> str:
    """The sha256 of what the seed decides; equal on every machine for the same seed."""
    digest = hashlib.sha256()
    for entry in entries(seed):
        digest.update(f"{entry.path}\0{entry.kind}\0{entry.mode:o}\0{entry.target}\0{entry.age}\0".encode())
        digest.update(hashlib.sha256(entry.content).digest())
    return digest.hexdigest()
