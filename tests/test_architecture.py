"""The import rules of docs/architecture.md, read from the package's own source (no imports run)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "cli_tuner"
BASE = {"errors", "atomic", "config", "data", "console", "paths", "findings", "tokenizer", "normalize", "settings", "redact", "hub",
        "training_shape", "run_spec", "plan"}
# home -> the homes it may import (the base is always allowed)
ALLOWED = {
    "base": set(),
    "facts": set(),
    "shell": set(),
    "batching": set(),
    "estimates": {"batching", "facts"},
    "checks": {"batching", "estimates", "facts", "shell"},
    "evaluation": {"shell"},
    "corpus": {"checks", "shell"},
    "training": {"batching", "checks", "estimates", "evaluation", "facts", "shell"},
    "serving": {"checks", "evaluation", "facts", "shell", "training"},
    "commands": {"batching", "checks", "corpus", "estimates", "evaluation", "facts", "serving", "shell", "training", "commands"},
    "cli": {"commands"},
}
HEAVY = ("torch", "transformers", "peft", "axolotl", "bitsandbytes", "datasets", "trl", "accelerate", "wandb", "llama_cpp")
PLUGIN = "cli_tuner.training.axolotl_plugin"
REHEARSAL_PLUGIN = "cli_tuner.training.rehearsal_plugin"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def home_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 2:
        return "cli" if parts[1] == "cli" else ("base" if parts[1] in BASE else parts[1])
    return parts[1] if len(parts) > 2 else "package"


class Imports(ast.NodeVisitor):
    """Every import of a module, with whether it sits at the top of the file."""

    def __init__(self, module: str, is_package: bool):
        self.module, self.is_package = module, is_package
        self.found: list[tuple[str, bool, int]] = []  # (imported module, at top level, line)
        self.depth = 0

    def _resolve(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = self.module.split(".")
        base = base if self.is_package else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node):
        # `if TYPE_CHECKING:` imports name types for annotations only: nothing runs them, so they are
        # no dependency (the base's Plan names the types of the homes that fill it in)
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node):
        for alias in node.names:
            self.found.append((alias.name, self.depth == 0, node.lineno))

    def visit_ImportFrom(self, node):
        target = self._resolve(node)
        if target.startswith("cli_tuner"):
            for alias in node.names:  # `from . import data` imports the module cli_tuner.data
                candidate = f"{target}.{alias.name}"
                known = (PACKAGE / Path(*candidate.split(".")[1:])).with_suffix(".py").exists() or \
                    (PACKAGE / Path(*candidate.split(".")[1:]) / "__init__.py").exists()
                self.found.append((candidate if known else target, self.depth == 0, node.lineno))
        else:
            self.found.append((target, self.depth == 0, node.lineno))


def package_imports() -> dict[str, list[tuple[str, bool, int]]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        visitor = Imports(module, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        graph[module] = visitor.found
    return graph


GRAPH = package_imports()
MODULES = sorted(GRAPH)
# the plugin and its callbacks run inside the trainer process
TRAINER_SIDE = [PLUGIN, REHEARSAL_PLUGIN] + [m for m in MODULES if m.startswith("cli_tuner.training.callbacks")]


def own(imports):
    return [(name, top, line) for name, top, line in imports if name.startswith("cli_tuner.")]


def test_the_graph_covers_every_home():
    homes = {home_of(m) for m in MODULES}
    assert {"base", "facts", "shell", "batching", "estimates", "checks", "evaluation", "training", "commands",
            "cli"} <= homes


def test_there_are_no_import_cycles():
    edges = {m: {name for name, _, _ in own(GRAPH[m]) if name in GRAPH and name != m} for m in MODULES}
    # a package's __init__ re-exporting its modules is not a cycle through them
    for m in MODULES:
        edges[m] = {n for n in edges[m] if not (m.startswith(n + ".") and n != "cli_tuner")}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle.extend(trail[trail.index(nxt):] + [node, nxt] if nxt in trail else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, trail + [node]):
                return True
        state[node] = 2
        return False

    for module in MODULES:
        if state.get(module) is None and visit(module, []):
            break
    assert not cycle, " -> ".join(cycle)


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_only_the_homes_below_it(module):
    home = home_of(module)
    if home == "package":
        return
    allowed = ALLOWED[home] | {"base", home}
    wrong = [f"line {line}: {name}" for name, _, line in own(GRAPH[module])
             if home_of(name) not in allowed and name != "cli_tuner"]
    assert not wrong, f"{module} ({home}) may import {sorted(allowed)}, but imports {wrong}"


def option_names() -> set[str]:
    """Every `dest` of every verb's parser: the names a parsed command line carries."""
    from cli_tuner import cli

    parser = cli.build_parser()
    names = set()
    for action in parser._subparsers._group_actions[0].choices.values():
        names |= {a.dest for a in action._actions if a.dest != "help"}
    return names


OPTIONS = option_names()


@pytest.mark.parametrize("module", [m for m in MODULES if home_of(m) not in ("commands", "cli")])
def test_nothing_below_the_command_layer_reads_the_command_line(module):
    imports = {name for name, _, _ in GRAPH[module]}
    assert "argparse" not in imports, f"{module} imports argparse"
    path = PACKAGE / Path(*module.split(".")[1:])
    source = (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and node.id == "Namespace":
            pytest.fail(f"{module} line {node.lineno} names argparse's Namespace")
        # `args.output_root`, `args.steps`, ...: an option of the parsed command line read down here
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "args" \
                and node.attr in OPTIONS and module not in TRAINER_SIDE:  # there `args` are the trainer's
            pytest.fail(f"{module} line {node.lineno} reads the command-line option args.{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "args":
            pytest.fail(f"{module} line {node.lineno} duck-types the command line with getattr(args, ...)")


def spec_names() -> set[str]:
    """The names of the verbs that describe themselves with a run spec (commands/<verb>.SPEC)."""
    from cli_tuner import commands

    return {verb.SPEC.name for verb in commands.ALL if hasattr(verb, "SPEC")}


SPEC_NAMES = spec_names()


def mode_name_comparisons(source: str) -> list[int]:
    """Lines that compare something with a verb's name: `mode == "smoke"`, `x in ("smoke", "full")`."""
    def names_a_verb(node) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in SPEC_NAMES
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(names_a_verb(e) for e in node.elts)
        return False

    return [node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Compare)
            and any(names_a_verb(operand) for operand in [node.left, *node.comparators])]


def test_the_check_finds_a_comparison_with_a_mode_name():
    assert {"smoke", "full", "rehearse"} <= SPEC_NAMES
    assert mode_name_comparisons('if mode == "smoke":\n    pass\nok = m in ("full", "x")\n') == [1, 3]
    assert mode_name_comparisons('if spec.publishes:\n    name = "smoke"\n') == []


@pytest.mark.parametrize("module", [m for m in MODULES if home_of(m) not in ("commands", "cli")])
def test_nothing_below_the_command_layer_asks_which_mode_runs(module):
    """The verbs' run specs say what a run does; below commands/ only the spec's fields are read
    (a mode's name is a label in provenance and the run folder, never compared)."""
    path = PACKAGE / Path(*module.split(".")[1:])
    source = (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text(encoding="utf-8")
    lines = mode_name_comparisons(source)
    assert not lines, f"{module} compares a mode's name on line(s) {lines}; read a field of the run spec"


@pytest.mark.parametrize("module", [m for m in MODULES if m not in TRAINER_SIDE])
def test_heavy_libraries_are_imported_inside_functions(module):
    top = [f"line {line}: {name}" for name, at_top, line in GRAPH[module]
           if at_top and name.split(".")[0] in HEAVY]
    assert not top, f"{module} imports at the top: {top}"


@pytest.mark.parametrize("module", MODULES)
def test_the_package_own_modules_are_imported_at_the_top(module):
    inner = [f"line {line}: {name}" for name, at_top, line in own(GRAPH[module]) if not at_top]
    assert not inner, f"{module} imports package modules inside functions: {inner}"


@pytest.mark.parametrize("module", TRAINER_SIDE)
def test_the_axolotl_plugin_imports_only_what_the_trainer_needs(module):
    ours = {name for name, _, _ in own(GRAPH[module])}
    allowed = {"cli_tuner.paths", "cli_tuner.atomic", "cli_tuner.training.callbacks"} | set(TRAINER_SIDE)
    assert ours <= allowed, ours - allowed


def test_only_the_console_prints():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "console.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
            if isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr") and \
                    isinstance(node.value, ast.Name) and node.value.id == "sys":
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} sys.{node.attr}")
    # the plugin runs inside the trainer, whose output the job captures into train.log
    offenders = [o for o in offenders if not o.startswith(("cli_tuner/training/axolotl_plugin.py",
                                                           "cli_tuner/training/rehearsal_plugin.py",
                                                           "cli_tuner/training/callbacks/"))]
    assert not offenders, offenders


def test_help_imports_no_heavy_library():
    """`--help` answers at once: it must not pull in torch, transformers, axolotl or rich."""
    result = subprocess.run([sys.executable, "-X", "importtime", str(REPO / "entrypoint.py"), "--help"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr[-500:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert not imported & set(HEAVY + ("rich", "numpy")), sorted(imported & set(HEAVY + ("rich", "numpy")))
