"""The one shell parser: tree-sitter's Bash grammar, read the way Bash reads a command line.

The risk rules, the Bash checks and the answer extraction all read commands through here, so
they agree on what a word, an operator and a simple command are. tree-sitter-bash is tolerant:
a malformed line (or a sentence of prose) still gives a tree, with ERROR nodes where the grammar
could not follow. Text inside single quotes and here-documents is data; code the shell runs from
a substitution (`$(...)`, backquotes, `<(...)`) is part of the tree, so its commands are listed
like any other, with `parent` naming the command whose word holds them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache

ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

WRITE_REDIRECTIONS = {"&>>", "&>", ">>", ">|", ">&", ">", "<>"}
APPEND_REDIRECTIONS = {"&>>", ">>"}
PIPES = {"|", "|&"}
RESERVED_WORDS = {"{", "}", "!", "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "time", "coproc"}

# nodes whose text is one shell word (after quote removal); a `concatenation` joins several
_WORD_NODES = {"word", "string", "raw_string", "ansi_c_string", "translated_string", "concatenation", "number",
               "simple_expansion", "expansion", "command_substitution", "process_substitution",
               "arithmetic_expansion", "brace_expression", "extglob_pattern"}
# statements that run one simple command with these words
_COMMAND_NODES = {"command", "declaration_command", "unset_command"}
_STATEMENT_WRAPPERS = {"redirected_statement", "negated_command"}
MAX_BRACE_WORDS = 64


@lru_cache(maxsize=1)
def _parser():
    import tree_sitter_bash
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_bash.language()))


@lru_cache(maxsize=512)
def tree(text: str):
    """The root node of a command line's syntax tree (read-only; the rules read a line several times)."""
    return _parser().parse(text.encode("utf-8")).root_node


def _text(node) -> str:
    return node.text.decode("utf-8", "replace")


# ------------------------------------------------------------------ words

def word_value(node) -> str:
    """One word's text as the command receives it: quotes and escapes removed, expansions kept as written."""
    kind = node.type
    text = _text(node)
    if kind == "word":
        return re.sub(r"\\(.)", r"\1", text.replace("\\\n", ""), flags=re.DOTALL)
    if kind == "raw_string":
        return text[1:-1]
    if kind == "ansi_c_string":
        return text[2:-1]
    if kind in ("string", "translated_string"):
        inner = text[1:-1] if kind == "string" else text[2:-1]
        return re.sub(r'\\([$`"\\\n])', r"\1", inner)
    if kind == "concatenation":
        return "".join(word_value(child) for child in node.children)
    return text


def expand_braces(word: str) -> list[str]:
    """Bash brace expansion of one unquoted word: `/{etc,usr}` is `/etc /usr`, `f{1..3}` is `f1 f2 f3`."""
    match = re.search(r"\{([^{}]*)\}", word)
    if not match:
        return [word]
    body, before, after = match.group(1), word[:match.start()], word[match.end():]
    if "," in body:
        options = body.split(",")
    else:
        bounds = re.fullmatch(r"(-?\d+)\.\.(-?\d+)|([A-Za-z])\.\.([A-Za-z])", body)
        if not bounds:  # `{}` of find -exec, `${x}`-like text: not an expansion; look further on
            return [before + "{" + body + "}" + rest for rest in expand_braces(after)]
        if bounds.group(1) is not None:
            low, high = int(bounds.group(1)), int(bounds.group(2))
            step = 1 if high >= low else -1
            options = [str(n) for n in range(low, high + step, step)][:MAX_BRACE_WORDS]
        else:
            low, high = ord(bounds.group(3)), ord(bounds.group(4))
            step = 1 if high >= low else -1
            options = [chr(n) for n in range(low, high + step, step)]
    results: list[str] = []
    for option in options:
        for rest in expand_braces(before + option + after):
            results.append(rest)
            if len(results) >= MAX_BRACE_WORDS:
                return results
    return results


def argument_words(node) -> list[str]:
    """The words one argument node becomes: its value, brace-expanded when the braces are unquoted."""
    value = word_value(node)
    if node.type in ("word", "concatenation", "brace_expression") and "{" in value \
            and not re.search(r"""['"$`]""", _text(node)):
        return expand_braces(value)
    return [value]


def _tokens(node, out: list[str]) -> None:
    if node.type == "comment":
        return
    if node.type in _WORD_NODES:
        out.extend(argument_words(node))
    elif node.type == "variable_assignment":
        out.append(_text(node.child_by_field_name("name") or node) + "="
                   + "".join(word_value(c) for c in node.children[2:]))
    elif node.child_count == 0:
        if node.type == "heredoc_body" or not node.is_missing and _text(node):
            out.append(_text(node))
    else:
        for child in node.children:
            _tokens(child, out)


def words(command: str) -> list[str]:
    """Words and operators in order, quotes removed, comments dropped."""
    out: list[str] = []
    _tokens(tree(command), out)
    return out


def normalize(command: str) -> str:
    """Equal for commands that differ only in spacing or quoting style (`'*.py'` vs `"*.py"`); spacing only
    where the grammar cannot follow the line (an unclosed quote)."""
    if tree(command).has_error:
        return " ".join(command.split())
    return " ".join(words(command)) or " ".join(command.split())


def program(command: str) -> str | None:
    """The program the first simple command runs: past sudo/env and the other wrappers, their options
    and VAR=value prefixes; basename only."""
    for segment in split_commands(command):
        name = command_words(segment.words)
        if name:
            return os.path.basename(name[0]) or name[0]
    return None


# ------------------------------------------------------------------ simple commands

@dataclass(eq=False)
class Segment:
    """One simple command: its words, its redirections, and the operators around it."""

    words: list[str] = field(default_factory=list)
    redirects: list[tuple[str, str]] = field(default_factory=list)
    opened_by: str = ""        # the operator before it: "|", "&&", ";", or "$(", "`", "<(" for a substitution
    followed_by: str = ""      # the operator after it
    parent: Segment | None = None  # for a substitution: the command whose word holds it
    substitutions: list[str] = field(default_factory=list)  # code of the `$(...)`, backquote and `<(...)` in its words
    pipeline: list[Segment | None] = field(default_factory=list)  # the stages of its pipeline (None: not a simple command)
    stage: int = 0             # its index in `pipeline`
    name_type: str = "word"    # the tree node of the command name: word, command_substitution, simple_expansion...
    node: object = None        # its tree-sitter node

    @property
    def empty(self) -> bool:
        return not self.words and not self.redirects

    def upstream(self) -> list[Segment | None]:
        return self.pipeline[:self.stage]

    def downstream(self) -> list[Segment | None]:
        return self.pipeline[self.stage + 1:]


def _statement(node):
    """The node that stands in a list or pipeline for this command (its redirected/negated wrapper)."""
    while node.parent is not None and node.parent.type in _STATEMENT_WRAPPERS:
        node = node.parent
    return node


def _operator_beside(node, after: bool) -> str:
    while node is not None:
        sibling = node.next_sibling if after else node.prev_sibling
        if sibling is not None and not sibling.is_named:
            return sibling.type
        if sibling is None and node.parent is not None and node.parent.type in {"list", "pipeline"} | _STATEMENT_WRAPPERS:
            node = node.parent
            continue
        return ""
    return ""


def _redirect(child) -> tuple[str, str] | None:
    if child.type == "file_redirect":
        op = next((c.type for c in child.children if not c.is_named), "")
        target = child.child_by_field_name("destination")
        return op, word_value(target) if target is not None else ""
    if child.type in ("heredoc_redirect", "herestring_redirect"):
        return next((c.type for c in child.children if not c.is_named), "<<"), ""
    return None


def _redirects(statement) -> list[tuple[str, str]]:
    return [found for found in map(_redirect, statement.children) if found is not None]


def _stages(pipeline) -> list:
    """The stages of a pipeline, nested pipelines (`a | b 2>x | c` nests one) flattened."""
    stages = []
    for child in pipeline.named_children:
        core = child
        while core.type in _STATEMENT_WRAPPERS and core.named_children:
            core = core.named_children[0]
        if core.type == "pipeline":
            stages.extend(_stages(core))
        elif child.type != "comment":
            stages.append(core)
    return stages


def _segment(node, parent: Segment | None, opened_by: str) -> Segment:
    statement = _statement(node)
    segment = Segment(parent=parent, node=node)
    segment.opened_by = opened_by or _operator_beside(statement, after=False)
    segment.followed_by = "" if opened_by else _operator_beside(statement, after=True)
    segment.redirects = []
    wrapper = node.parent
    while wrapper is not None and wrapper.type in _STATEMENT_WRAPPERS:
        segment.redirects[:0] = _redirects(wrapper)
        wrapper = wrapper.parent
    if node.type == "variable_assignment":
        segment.words = [_assignment(node)]
        return segment
    for child in node.children:
        if child.type == "variable_assignment":
            segment.words.append(_assignment(child))
        elif child.type == "command_name":
            inner = child.named_children[0] if child.named_children else child
            segment.name_type = inner.type
            segment.words.extend(argument_words(inner) if inner is not child else [_text(child)])
        elif child.type in _WORD_NODES:
            segment.words.extend(argument_words(child))
        elif child.type in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
            segment.redirects.append(_redirect(child))
        elif not child.is_named and node.type != "command":  # `export`, `unset`, `local` ...
            segment.words.append(child.type)
        elif child.type == "variable_name":
            segment.words.append(_text(child))
    return segment


def _assignment(node) -> str:
    name = node.child_by_field_name("name")
    value = node.child_by_field_name("value")
    return (_text(name) if name is not None else "") + "=" + (word_value(value) if value is not None else "")


def split_commands(text: str) -> list[Segment]:
    """Every simple command of a command line in document order, substitutions and bodies included."""
    segments: list[Segment] = []
    by_node: dict[int, Segment] = {}
    root = tree(text)

    def visit(node, parent: Segment | None, opened_by: str) -> None:
        kind = node.type
        if kind in ("comment", "heredoc_body", "raw_string"):
            return
        if kind in _COMMAND_NODES or kind == "variable_assignment" and node.parent is not None \
                and node.parent.type not in _COMMAND_NODES and node.parent.type != "declaration_command":
            segment = _segment(node, parent, opened_by)
            segments.append(segment)
            by_node[node.id] = segment
            for child in node.children:
                visit(child, segment, "")
            return
        if kind == "redirected_statement" and node.named_children and \
                node.named_children[0].type not in _COMMAND_NODES | {"variable_assignment"} | _STATEMENT_WRAPPERS:
            redirects = _redirects(node)
            if redirects:  # `{ ...; } > file`: the redirection still writes the file
                segments.append(Segment(redirects=redirects, node=node, parent=parent))
        if kind in ("command_substitution", "process_substitution"):
            opener = next((c.type for c in node.children if not c.is_named), "$(")
            code = _text(node)
            code = code[len(opener):-1] if code.endswith((")", "`")) else code[len(opener):]
            if parent is not None:
                parent.substitutions.append(code)
            for child in node.children:
                visit(child, parent, opener)
            return
        for child in node.children:
            visit(child, parent, opened_by)

    visit(root, None, "")
    _link_pipelines(root, by_node)
    return segments


def _link_pipelines(root, by_node: dict[int, Segment]) -> None:
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "pipeline" and not _inside_pipeline(node):
            stages = [by_node.get(stage.id) for stage in _stages(node)]
            for index, segment in enumerate(stages):
                if segment is not None:
                    segment.pipeline, segment.stage = stages, index
        stack.extend(node.children)


def _inside_pipeline(node) -> bool:
    parent = node.parent
    while parent is not None and parent.type in _STATEMENT_WRAPPERS:
        parent = parent.parent
    return parent is not None and parent.type == "pipeline"


def function_definitions(text: str) -> list[tuple[str, object]]:
    """(name, body node) of each function the command line defines."""
    found, stack = [], [tree(text)]
    while stack:
        node = stack.pop()
        if node.type == "function_definition":
            name = node.child_by_field_name("name")
            found.append((_text(name) if name is not None else "", node.child_by_field_name("body")))
        stack.extend(node.children)
    return found


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
