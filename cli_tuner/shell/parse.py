"""The one shell parser: a command line split the way Bash splits it.

The risk rules, the Bash checks and the answer extraction all read commands through here, so
they agree on what a word, an operator and a simple command are. Text inside quotes is data;
code the shell runs from a substitution (`$(...)`, backquotes) is kept with the word it sits in,
so callers can check it as a command of its own.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import NamedTuple

ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def words(command: str) -> list[str] | None:
    """Words and operators as Bash would split them (quotes removed); None when quotes do not close."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = False
    try:
        return list(lexer)
    except ValueError:
        return None


def normalize(command: str) -> str:
    """Equal for commands that differ only in spacing or quoting style (`'*.py'` vs `"*.py"`)."""
    tokens = words(command)
    if tokens is None:
        return " ".join(command.split())
    return " ".join(tokens)


def program(command: str) -> str | None:
    """The program a command runs: past sudo/env and the other wrappers, their options and
    VAR=value prefixes; basename only."""
    tokens = words(command) or command.split()
    name = command_words(tokens)
    return (os.path.basename(name[0]) or name[0]) if name else None


# ------------------------------------------------------------------ splitting a command line

PUNCTUATION = "();<>|&\n"
OPERATORS = sorted(
    ["&&", "||", ";;&", ";;", ";&", "|&", "&>>", "&>", ">>", ">|", ">&", "<&", "<>", "<<<", "<<-", "<<",
     "<(", ">(", ";", "&", "|", "(", ")", "<", ">", "\n"],
    key=len, reverse=True,
)
REDIRECTIONS = {"&>>", "&>", ">>", ">|", ">&", "<&", "<>", "<<<", "<<-", "<<", "<", ">"}
WRITE_REDIRECTIONS = {"&>>", "&>", ">>", ">|", ">&", ">", "<>"}
APPEND_REDIRECTIONS = {"&>>", ">>"}
OPENERS = {"(", "<(", ">("}
PIPES = {"|", "|&"}
RESERVED_WORDS = {"{", "}", "!", "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "time", "coproc"}


class Token(NamedTuple):
    text: str
    op: bool = False                      # an operator like `|` or `&&`, not a word
    substitutions: tuple[str, ...] = ()   # code inside `$(...)` or backquotes in this word: the shell runs it

    def is_(self, text: str, op: bool) -> bool:
        return self.text == text and self.op == op


@dataclass
class Segment:
    """One simple command: its words, its redirections, and the operators around it."""

    words: list[str] = field(default_factory=list)
    redirects: list[tuple[str, str]] = field(default_factory=list)
    opened_by: str = ""        # the operator before it: "|", "&&", "<(", ...
    followed_by: str = ""      # the operator after it
    parent: Segment | None = None  # for "<(": the command the process substitution belongs to
    substitutions: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.words and not self.redirects


# Inside quotes, escapes and substitutions these characters are data; hidden as private-use
# characters while shlex splits the line, so that any operator shlex returns is a real one.
_QUOTED_DATA = PUNCTUATION + "#"
_OPAQUE = PUNCTUATION + "#'\"\\ \t`"
_HIDE = {ch: chr(0xE000 + index) for index, ch in enumerate(_OPAQUE)}
_SHOW = str.maketrans({hidden: ch for ch, hidden in _HIDE.items()} | {"\ue100": "$(", "\ue101": ")"})
_SUBSTITUTION = "\ue100{}\ue101"  # marks a real `$(...)`: the same text in single quotes is only data
_SUBSTITUTION_SPAN = re.compile("\ue100([^\ue100\ue101]*)\ue101")


def _hide(text: str, chars: str = _OPAQUE) -> str:
    return "".join(_HIDE[ch] if ch in chars else ch for ch in text)


def _matching(text: str, start: int) -> int:
    """Index of the bracket closing text[start] ('(' or '{'), skipping quoted text; the end if none."""
    opener, closer = text[start], ")" if text[start] == "(" else "}"
    depth, index, quote = 0, start, None
    while index < len(text):
        ch = text[index]
        if ch == "\\" and quote != "'":
            index += 2
            continue
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == opener:
            depth += 1
        elif ch == closer:
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return len(text) - 1


def _protect(text: str) -> str:
    """Hide quoted and escaped operators; keep each `$(...)`, `${...}` and backquote span as one opaque word."""
    out, index, quote = [], 0, None
    while index < len(text):
        ch, rest = text[index], text[index + 1:index + 2]
        if quote != "'" and ch == "$" and rest in ("(", "{"):
            end = _matching(text, index + 1)
            inner = text[index + 1:end + 1]
            out.append(_SUBSTITUTION.format(_hide(inner[1:-1])) if inner[0] == "(" else "$" + _hide(inner))
            index = end + 1
        elif quote != "'" and ch == "`":  # the old spelling of $(...)
            end = text.find("`", index + 1)
            end = len(text) if end == -1 else end
            out.append(_SUBSTITUTION.format(_hide(text[index + 1:end])))
            index = end + 1
        elif ch == "\\" and quote != "'" and rest:
            out.append("\\" + _hide(rest, _QUOTED_DATA))
            index += 2
        else:
            if quote is None and ch in "'\"":
                quote = ch
            elif quote == ch:
                quote = None
            elif quote:
                ch = _hide(ch, _QUOTED_DATA)
            out.append(ch)
            index += 1
    return "".join(out)


def lex(text: str) -> list[Token]:
    """Words and operators. Unbalanced quotes (which bash -n rejects) are closed to read the rest."""
    protected = _protect(text)
    for closing in ("", '"', "'"):
        lexer = shlex.shlex(protected + closing, posix=True, punctuation_chars=PUNCTUATION)
        lexer.whitespace = " \t\r"  # a newline ends a command, like ";"
        lexer.whitespace_split = True
        lexer.commenters = ""      # shlex would end words at a '#' inside them; split_commands drops comments
        try:
            raw = list(lexer)
            break
        except ValueError:
            continue
    else:
        raw = protected.split()
    tokens: list[Token] = []
    for token in raw:
        if token and all(ch in PUNCTUATION for ch in token):
            tokens.extend(Token(op, True) for op in _split_operators(token))
        else:
            inner = tuple(code.translate(_SHOW) for code in _SUBSTITUTION_SPAN.findall(token))
            tokens.append(Token(token.translate(_SHOW), False, inner))
    return tokens


def _split_operators(run: str) -> list[str]:
    """shlex groups a run like `)|` or `;;` into one token; bash reads the longest operators first."""
    ops = []
    while run:
        op = next(o for o in OPERATORS if run.startswith(o))  # every single character is an operator too
        ops.append(op)
        run = run[len(op):]
    return ops


def split_commands(text: str) -> list[Segment]:
    """The simple commands of a command line, in order, with subshells and substitutions flattened."""
    return segments(lex(text.replace("\\\n", "")))


def segments(tokens: list[Token]) -> list[Segment]:
    segments: list[Segment] = []
    listed: set[int] = set()
    stack: list[Segment] = []
    current = Segment()
    heredoc_ends: list[str] = []

    def close(op: str) -> None:
        current.followed_by = op
        if not current.empty and id(current) not in listed:  # a command resumed after `)` is listed once
            segments.append(current)
            listed.add(id(current))

    index = 0
    while index < len(tokens):
        token, is_op, substitutions = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else Token("")
        if not is_op:
            if token.startswith("#"):  # an unquoted '#' starting a word starts a comment
                while index < len(tokens) and not tokens[index].is_("\n", True):
                    index += 1
                continue
            current.words.append(token)
            current.substitutions.extend(substitutions)
        elif token == "\n" and heredoc_ends:
            index = _skip_heredoc_bodies(tokens, index + 1, heredoc_ends)
            heredoc_ends = []
            close("\n")
            current = Segment(opened_by="\n")
            continue
        elif token in REDIRECTIONS:
            target = following[0] if not following[1] else ""
            if token in ("<<", "<<-") and target:
                heredoc_ends.append(target)
            if current.words and current.words[-1].isdigit():
                current.words.pop()  # the file descriptor of `2>`, not an argument
            current.redirects.append((token, target))
            index += 1 if following[1] else 2
            continue
        elif token == "(" and following.is_(")", True):  # `name()` starts a function body
            close("()")
            current = Segment(opened_by="()")
            index += 2
            continue
        elif token in OPENERS:
            close(token)
            stack.append(current)
            current = Segment(opened_by=token, parent=current)
        elif token == ")":
            close(")")
            current = stack.pop() if stack else Segment(opened_by=")")
        else:
            close(token)
            current = Segment(opened_by=token)
        index += 1
    close("")
    return segments


def _skip_heredoc_bodies(tokens: list[Token], index: int, ends: list[str]) -> int:
    """Here-document lines are data: skip each body up to its delimiter line."""
    for end in ends:
        line_start = True
        while index < len(tokens):
            token = tokens[index]
            index += 1
            if line_start and token.is_(end, False) and (index == len(tokens) or tokens[index].is_("\n", True)):
                index += 1
                break
            line_start = token.is_("\n", True)
    return index


def command_words(words: list[str]) -> list[str]:
    """The words from the command name on: assignments, reserved words and wrappers like sudo removed."""
    words = list(words)
    while words:
        head = words[0]
        if ENV_ASSIGNMENT.match(head) or head in RESERVED_WORDS:
            words.pop(0)
            continue
        name = head.rsplit("/", 1)[-1]
        if name not in WRAPPERS:
            break
        words = _skip_wrapper(name, words[1:])
    return words


# wrapper command -> its options that take a separate value
WRAPPERS: dict[str, set[str]] = {
    "sudo": {"-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-U", "-T", "--user", "--group", "--prompt"},
    "doas": {"-u", "-C"}, "nohup": set(), "time": {"-f", "-o"}, "nice": {"-n"}, "ionice": {"-c", "-n", "-p"},
    "env": {"-u", "-C", "-S", "--unset", "--chdir"}, "command": set(), "builtin": set(), "exec": {"-a"},
    "stdbuf": {"-i", "-o", "-e"}, "timeout": {"-s", "-k", "--signal", "--kill-after"}, "busybox": set(),
    "xargs": {"-I", "-i", "-n", "-P", "-d", "-L", "-l", "-s", "-E", "-e", "-a", "--delimiter", "--max-args",
              "--max-procs", "--arg-file", "--replace", "--max-lines", "--max-chars", "--eof"},
    "unbuffer": set(), "chronic": set(), "caffeinate": set(), "strace": {"-o", "-e", "-p", "-s"},
}


def _skip_wrapper(name: str, rest: list[str]) -> list[str]:
    takes_value = WRAPPERS[name]
    while rest and rest[0].startswith("-") and rest[0] != "-":
        option = rest.pop(0)
        if option == "--":
            break
        if option in takes_value and rest:
            rest.pop(0)
    if name == "timeout" and rest:
        rest.pop(0)  # the duration
    if name == "env":
        while rest and ENV_ASSIGNMENT.match(rest[0]):
            rest.pop(0)
    return rest


def split_options(args: list[str]) -> tuple[list[str], list[str]]:
    """(options, operands): words starting with '-' before `--` are options."""
    options, operands, ended = [], [], False
    for arg in args:
        if not ended and arg == "--":
            ended = True
        elif not ended and arg.startswith("-") and arg != "-":
            options.append(arg)
        else:
            operands.append(arg)
    return options, operands


def has_short_flag(options: list[str], letters: str) -> bool:
    return any(o.startswith("-") and not o.startswith("--") and any(c in o[1:] for c in letters) for o in options)
