"""What a command line becomes once the parts static analysis can know are expanded.

Bash builds words at run time: from variables, from the output of commands, from `$IFS`, from
ANSI-C quoting. The risk rules judge what a line does, so they read it the way Bash would run it
wherever the value is already fixed in the line itself:

- variables assigned earlier in the same line (`x=rm; $x -rf /`), loop variables over literal
  words (`for c in rm; do $c ...`), `$FUNCNAME` in a function, the positional parameters of
  `sh -c CODE ARG0 ARG1...`;
- command substitutions whose output is fixed: `echo`, `printf`, `cat` of a here-string or
  here-document, `base64 -d`, `xxd -r -p`, `rev` (`$(echo cm0gLXJmIC8K | base64 -d)`);
- `$IFS` (a space, tab and newline unless the line sets it), word splitting of unquoted results,
  ANSI-C strings (`$'\\x72\\x6d'`), and brace expansion where the grammar cannot read the word
  (`{rm,-rf,/}` as a command).

`expanded(text)` gives the line with each resolvable word replaced by its fields, quoted so that
they parse back as the same words; a word with a part it cannot know (`$UNSET`, `$(ls)`) stays as
written, so the rules still see that something is built at run time.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import shlex

from .parse import _text, expand_braces, tree, word_value

DEFAULT_IFS = " \t\n"
MAX_ALTERNATIVES = 8
MAX_OUTPUT = 4096
_FUNCNAME = re.compile(r"^\$\{?FUNCNAME(\[0\])?\}?$")
_EXPANDING = {"simple_expansion", "expansion", "command_substitution", "ansi_c_string"}


class Unknown(Exception):
    """A part of a word whose value static analysis cannot know."""


# ------------------------------------------------------------------ ANSI-C strings and printf

_C_ESCAPES = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
              "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}


def c_unescape(text: str, octal_needs_zero: bool = False) -> str:
    """Backslash escapes as `$'...'` and `printf %b` read them: \\n, \\xHH, \\NNN (octal), \\uHHHH."""
    def one(match: re.Match) -> str:
        body = match.group(1)
        if body[0] in "xX":
            return chr(int(body[1:], 16)) if len(body) > 1 else match.group(0)
        if body[0] in "uU":
            return chr(int(body[1:], 16)) if len(body) > 1 else match.group(0)
        if body[0].isdigit():
            digits = body[1:] if octal_needs_zero and body[0] == "0" else body
            return chr(int(digits or "0", 8) & 0xFF)
        return _C_ESCAPES.get(body, "\\" + body)
    return re.sub(r"\\([xX][0-9a-fA-F]{1,2}|u[0-9a-fA-F]{1,4}|U[0-9a-fA-F]{1,8}|0?[0-7]{1,3}|.)", one, text,
                  flags=re.DOTALL)


def printf(arguments: list[str]) -> str:
    """What `printf FORMAT ARGS...` prints, for the conversions a literal command uses."""
    if not arguments:
        raise Unknown("printf without a format")
    fmt, args = arguments[0], arguments[1:]
    out: list[str] = []
    while True:
        used = 0

        def convert(match: re.Match) -> str:
            nonlocal used
            spec = match.group(2)
            if spec == "%":
                return "%"
            value = args[used] if used < len(args) else ""
            used += 1
            if spec == "b":
                return c_unescape(value, octal_needs_zero=True)
            if spec in "di":
                return str(int(value or "0"))
            if spec == "c":
                return value[:1]
            return value  # %s and friends
        text = re.sub(r"%([-+ #0-9.]*)([sbdic%qxXoufgeE])", convert, fmt)
        out.append(c_unescape(text))
        args = args[used:]
        if not used or not args:
            break
    return "".join(out)


# ------------------------------------------------------------------ commands with a fixed output

def _decode(name: str, options: list[str], data: str) -> str:
    if name in ("base64", "base32"):
        if not any(o in ("-d", "-D", "--decode") or re.fullmatch(r"-[a-zA-Z]*[dD][a-zA-Z]*", o) for o in options):
            raise Unknown(f"{name} encodes")
        raw = re.sub(r"\s", "", data)
        try:
            decoded = base64.b64decode(raw + "=" * (-len(raw) % 4)) if name == "base64" else base64.b32decode(raw)
        except (binascii.Error, ValueError) as exc:
            raise Unknown(str(exc)) from exc
        return decoded.decode("utf-8", "replace")
    if name == "xxd":
        if not any("r" in o for o in options):
            raise Unknown("xxd dumps")
        try:
            return bytes.fromhex(re.sub(r"\s", "", data)).decode("utf-8", "replace")
        except ValueError as exc:
            raise Unknown(str(exc)) from exc
    if name == "rev":
        return "\n".join(line[::-1] for line in data.split("\n"))
    raise Unknown(name)


def _run(words: list[str], stdin: str | None) -> str:
    if not words:
        raise Unknown("no command")
    name, args = words[0].rsplit("/", 1)[-1], words[1:]
    if name == "echo":
        newline, escapes = "\n", False
        while args and re.fullmatch(r"-[neE]+", args[0]):
            newline = "" if "n" in args[0] else newline
            escapes = "e" in args[0] or escapes
            args = args[1:]
        text = " ".join(args)
        return (c_unescape(text, octal_needs_zero=True) if escapes else text) + newline
    if name == "printf":
        return printf(args)
    options = [a for a in args if a.startswith("-")]
    operands = [a for a in args if not a.startswith("-")]
    if stdin is None or operands:
        raise Unknown(f"{name} reads a file")
    if name == "cat":
        return stdin
    return _decode(name, options, stdin)


def static_output(code: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str | None:
    """What `code` prints when that is fixed by the line itself (echo, printf, their pipes through
    cat, base64 -d, xxd -r -p, rev); None when it depends on anything else."""
    try:
        return _output_of(tree(code), dict(env or {}), stdin)
    except (Unknown, RecursionError, ValueError, OverflowError):
        return None


def _output_of(node, env: dict[str, str], stdin: str | None) -> str:
    kind = node.type
    if node.has_error:
        raise Unknown("unparsable")
    if kind in ("program", "list", "compound_statement", "subshell"):
        out = ""
        for child in node.named_children:
            if child.type != "comment":
                out += _output_of(child, env, stdin)
        return out
    if kind == "pipeline":
        data = stdin
        for stage in node.named_children:
            data = _output_of(stage, env, data)
        return data or ""
    if kind == "redirected_statement":
        body = node.named_children[0]
        here = _here_text(node, env)
        if here is None and any(c.type == "file_redirect" for c in node.named_children):
            raise Unknown("reads or writes a file")
        if body.type == "pipeline":  # `cat <<EOF | sh` nests the pipeline in the redirect
            return _output_of(body, env, here if here is not None else stdin)
        return _output_of(body, env, here if here is not None else stdin)
    if kind == "command":
        words = _command_fields(node, env)
        here = _here_text(node, env)
        out = _run(words, here if here is not None else stdin)
        if len(out) > MAX_OUTPUT:
            raise Unknown("too long")
        return out
    if kind == "variable_assignment":
        name, value = _assignment(node, env)
        env[name] = value
        return ""
    raise Unknown(kind)


def _here_text(node, env: dict[str, str]) -> str | None:
    for child in node.children:
        if child.type == "herestring_redirect":
            word = child.named_children[-1] if child.named_children else None
            if word is not None:
                fields = _word_fields(word, env, split=False)
                return " ".join(fields) + "\n"
        if child.type == "heredoc_redirect":
            body = next((c for c in child.named_children if c.type == "heredoc_body"), None)
            return _text(body) if body is not None else ""
    return None


def _command_fields(node, env: dict[str, str]) -> list[str]:
    fields: list[str] = []
    for child in node.children:
        if child.type == "command_name":
            inner = child.named_children[0] if child.named_children else child
            fields.extend(_word_fields(inner, env))
        elif child.type in _WORDS:
            fields.extend(_word_fields(child, env))
        elif child.type == "variable_assignment":
            continue
        elif child.type in ("file_redirect",):
            raise Unknown("redirect")
    return fields


def _assignment(node, env: dict[str, str]) -> tuple[str, str]:
    name = node.child_by_field_name("name")
    value = node.child_by_field_name("value")
    text = "" if value is None else "".join(_word_fields(value, env, split=False))
    return (_text(name) if name is not None else ""), text


# ------------------------------------------------------------------ words

_WORDS = {"word", "string", "raw_string", "ansi_c_string", "translated_string", "concatenation", "number",
          "simple_expansion", "expansion", "command_substitution", "arithmetic_expansion", "brace_expression"}


def _parameter(node, env: dict[str, str]) -> str:
    text = _text(node)
    if node.type == "simple_expansion":
        name = text[1:]
    else:
        inner = text[2:-1]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#]|FUNCNAME\[0\]", inner):
            raise Unknown(text)  # ${x:-y}, ${x/a/b}, ${#x}...: not followed
        name = inner.replace("[0]", "")
    if name in env:
        return env[name]
    if name == "IFS":
        return DEFAULT_IFS
    raise Unknown(text)


def _pieces(node, env: dict[str, str], quoted: bool) -> list[tuple[str, bool]]:
    """(text, splittable) pieces of one word: splittable ones come from unquoted expansions."""
    kind = node.type
    if kind in ("simple_expansion", "expansion"):
        name = _text(node).lstrip("${").rstrip("}")
        if name in ("@", "*") and "@" in env:  # the positional parameters, kept apart as fields
            return [(env["@"], not quoted)]
        return [(_parameter(node, env), not quoted)]
    if kind == "command_substitution":
        code = _text(node)
        code = code[2:-1] if code.startswith("$(") else code[1:-1]
        out = static_output(code, env)
        if out is None:
            raise Unknown(code)
        return [(out.rstrip("\n"), not quoted)]
    if kind == "ansi_c_string":
        return [(c_unescape(_text(node)[2:-1]), False)]
    if kind == "string":
        pieces: list[tuple[str, bool]] = []
        for child in node.named_children:
            if child.type == "string_content":
                pieces.append((re.sub(r'\\([$`"\\\n])', r"\1", _text(child)), False))
            else:
                pieces.extend(_pieces(child, env, quoted=True))
        return pieces
    if kind == "concatenation":
        return [piece for child in node.children for piece in _pieces(child, env, quoted)]
    if kind in ("arithmetic_expansion", "process_substitution"):
        raise Unknown(kind)
    return [(word_value(node), False)]


def _word_fields(node, env: dict[str, str], split: bool = True) -> list[str]:
    """The fields one word becomes after expansion and (unquoted) word splitting."""
    pieces = _pieces(node, env, quoted=False)
    if not split:
        return ["".join(text.replace("\0", " ") for text, _ in pieces)]
    ifs = env.get("IFS", DEFAULT_IFS)
    fields: list[str] = []
    current, started = "", False
    for text, splittable in pieces:
        if not splittable and "\0" not in text:
            current, started = current + text, True
            continue
        separators = (ifs if splittable else "") + "\0"
        parts = re.split("[" + re.escape(separators) + "]+", text)
        started = started or not splittable
        for index, part in enumerate(parts):
            if index > 0:
                if started or current:
                    fields.append(current)
                current, started = "", False
            current += part
            started = started or bool(part)
    if started or current:
        fields.append(current)
    return fields


# ------------------------------------------------------------------ the line with its words expanded

def expanded(text: str, positional: list[str] | None = None) -> list[str]:
    """The line with every word static analysis can resolve replaced by what Bash makes of it; one
    line per choice of the literal loop values (at most MAX_ALTERNATIVES); [] when nothing resolves."""
    original = text
    if "IFS=" not in text:  # the grammar misreads some words with $IFS inside (`-rf$IFS/`): a space is what it is
        text = re.sub(r"\$\{IFS\}|\$IFS(?![A-Za-z0-9_])", " ", text)
    root = tree(text)
    loops = _literal_loops(root)
    names = list(loops)
    results: list[str] = []
    for choice in itertools.islice(itertools.product(*(loops[n] for n in names)), MAX_ALTERNATIVES):
        env: dict[str, str] = {}
        if positional is not None:
            env.update({str(i): v for i, v in enumerate(positional)})
            env["@"] = "\0".join(positional[1:])
            env["#"] = str(max(len(positional) - 1, 0))
        edits: list[tuple[int, int, str]] = []
        _rewrite(root, env, dict(zip(names, choice)), edits, None)
        line = _apply(text, edits)
        if line != original and line not in results:
            results.append(line)
    if text != original and not results:
        results.append(text)
    if root.has_error:
        braced = _brace_words(text)
        if braced != text:
            results.append(braced)
    return results


def _literal_loops(root) -> dict[str, list[str]]:
    loops: dict[str, list[str]] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "for_statement":
            variable = node.child_by_field_name("variable")
            values = node.children_by_field_name("value")
            try:
                words = [f for v in values for f in _word_fields(v, {})]
            except Unknown:
                words = []
            if variable is not None and words:
                loops[_text(variable)] = words[:MAX_ALTERNATIVES]
        stack.extend(node.children)
    return loops


def _rewrite(node, env: dict[str, str], loops: dict[str, str], edits: list, function: str | None) -> None:
    kind = node.type
    if kind in ("comment", "heredoc_body", "raw_string"):
        return
    if kind == "function_definition":
        name = node.child_by_field_name("name")
        inner = dict(env, FUNCNAME=_text(name)) if name is not None else env
        for child in node.children:
            _rewrite(child, inner, loops, edits, _text(name) if name is not None else None)
        return
    if kind == "for_statement":
        variable = node.child_by_field_name("variable")
        if variable is not None and _text(variable) in loops:
            env[_text(variable)] = loops[_text(variable)]
        elif variable is not None:
            env.pop(_text(variable), None)
    if kind == "variable_assignment":
        name = node.child_by_field_name("name")
        if name is not None:
            try:
                value = _assignment(node, env)[1]
            except (Unknown, RecursionError, ValueError, OverflowError):
                env.pop(_text(name), None)
            else:
                _edit_word(node.child_by_field_name("value"), env, edits, split=False)
                env[_text(name)] = value
        return
    if kind == "command":
        for child in node.children:
            if child.type == "command_name":
                inner = child.named_children[0] if child.named_children else child
                _edit_word(inner, env, edits)
            elif child.type in _WORDS:
                _edit_word(child, env, edits)
            else:
                _rewrite(child, env, loops, edits, function)
        return
    if kind == "herestring_redirect":
        for child in node.named_children:
            if child.type in _WORDS:
                _edit_word(child, env, edits, split=False)
        return
    for child in node.children:
        _rewrite(child, env, loops, edits, function)


def _edit_word(node, env: dict[str, str], edits: list, split: bool = True) -> None:
    if node is None or not _has_expansion(node):
        return
    try:
        fields = _word_fields(node, env, split=split)
    except (Unknown, RecursionError, ValueError, OverflowError):
        return
    edits.append((node.start_byte, node.end_byte, " ".join(shlex.quote(f) for f in fields)))


def _has_expansion(node) -> bool:
    if node.type in _EXPANDING:
        return True
    return any(_has_expansion(child) for child in node.children)


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    data = text.encode("utf-8")
    for start, end, replacement in sorted(edits, reverse=True):
        data = data[:start] + replacement.encode("utf-8") + data[end:]
    return data.decode("utf-8", "replace")


_BRACE_WORD = re.compile(r"""(?<![^\s;&|(])([^\s'"`;&|()]*\{[^{}\s'"]*,[^{}\s'"]*\}[^\s'"`;&|()]*)""")


def _brace_words(text: str) -> str:
    """`{rm,-rf,/}`: brace expansion of unquoted words the grammar could not read."""
    return _BRACE_WORD.sub(lambda m: " ".join(shlex.quote(w) for w in expand_braces(m.group(1))), text)


# ------------------------------------------------------------------ what a command reads as its input

def fed_input(node) -> str | None:
    """The text a command's standard input holds when the line fixes it: its here-string or
    here-document, `< <(echo ...)`, or the fixed output of the stages before it in its pipeline."""
    statement = node
    while statement.parent is not None and statement.parent.type in ("redirected_statement", "negated_command"):
        statement = statement.parent
    for owner in {node.id: node, statement.id: statement}.values():
        here = _safe(lambda: _here_text(owner, {}))
        if here is not None:
            return here
        for child in owner.children:
            if child.type == "file_redirect" and any(c.type == "<" for c in child.children):
                target = child.child_by_field_name("destination")
                if target is not None and target.type == "process_substitution":
                    return static_output(_text(target)[2:-1])
    parent = statement.parent
    if parent is None or parent.type != "pipeline":
        return None
    stages = [c for c in parent.named_children if c.type != "comment"]
    ids = [stage.id for stage in stages]
    before = stages[:ids.index(statement.id)] if statement.id in ids else []
    data: str | None = None
    owner = parent.parent
    if owner is not None and owner.type == "heredoc_redirect":  # `cat <<EOF | sh`: the pipeline sits in the redirect
        body = next((c for c in owner.named_children if c.type == "heredoc_body"), None)
        first = owner.parent.named_children[0] if owner.parent is not None else None
        if first is None or first.type != "command":
            return None
        data = _safe(lambda: _run(_command_fields(first, {}), _text(body) if body is not None else ""))
        if data is None:
            return None
    for stage in before:
        data = _safe(lambda: _output_of(stage, {}, data))
        if data is None:
            return None
    return data if (before or owner is not None and owner.type == "heredoc_redirect") else None


def _safe(compute):
    try:
        return compute()
    except (Unknown, RecursionError, ValueError, OverflowError):
        return None
