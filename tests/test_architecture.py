"""House rules of the package layout (docs/ARCHITECTURE.md): no import cycle, small modules and functions,
a core that imports without nerfstudio, and a module map that lists every module."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "relationfield"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Functions allowed past the limit, each with the reason (also in docs/ARCHITECTURE.md).
LONG_FUNCTIONS: dict[str, str] = {}
# Modules that must import without nerfstudio (the core: encoders, labels, losses, sampler maths, scene graph,
# evaluation, synthetic scenes).
CORE_MODULES = (
    "relationfield.encoders",
    "relationfield.labels",
    "relationfield.losses",
    "relationfield.sampler",
    "relationfield.scene_graph",
    "relationfield.evaluation",
    "relationfield.synth",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    """Every relationfield module a file imports, wherever the import stands (functions, TYPE_CHECKING)."""
    found: set[str] = set()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_LAZY" for t in node.targets):
            # a package's lazy map (name -> module, imported on first use) counts as importing those modules
            names = [value.value for value in getattr(node.value, "values", []) if isinstance(value, ast.Constant)]
        for name in names:
            if name.split(".")[0] == "relationfield" and (target := resolve(name)):
                found.add(target)
    return found


def import_graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for target in _imports(ast.parse(path.read_text()), modules) - {name}:
            graph.add_edge(name, target)
    return graph


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert graph.number_of_edges() > 50
    # cli imports the preprocessing stages inside a function only.
    assert any(target.startswith("relationfield.preprocess") for target in graph.successors("relationfield.cli"))


def test_no_import_cycle():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join([*cycle, cycle[0]]) for cycle in cycles[:5])


def _function_lengths(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            yield node.name, node.lineno, node.end_lineno - first + 1


def test_modules_and_functions_are_small():
    too_long = []
    for name, path in _modules().items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"module {name}: {lines} lines")
        for function, line, length in _function_lengths(path):
            if length > MAX_FUNCTION_LINES and f"{name}.{function}" not in LONG_FUNCTIONS:
                too_long.append(f"{name}:{line} {function}: {length} lines")
    assert not too_long, "\n".join(too_long)


def test_core_imports_without_nerfstudio():
    code = (
        "import importlib, sys\n"
        f"for name in {CORE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('nerfstudio', 'viser'))\n"
        "assert not loaded, loaded[:5]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def _module_map() -> dict[str, list[str]]:
    """docs/ARCHITECTURE.md's table: module -> what it may import (its third column)."""
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    rows = re.findall(r"^\| `(relationfield(?:\.\w+)*)` \|[^|]+\| ([^|]+) \|$", doc, flags=re.M)
    return {name: [item.strip() for item in allowed.split(",") if item.strip() != "-"] for name, allowed in rows}


def _allowed(importer: str, target: str, allowed: list[str]) -> bool:
    short = target.removeprefix("relationfield.")
    own = importer.split(".")[1] if importer.count(".") else None
    for item in allowed:
        if item == "own package" and own and short.split(".")[0] == own:
            return True
        if item.endswith(".*") and short.split(".")[0] == item[:-2]:
            return True
        if item == short:
            return True
    return False


def test_architecture_doc_lists_every_module():
    listed = set(_module_map())
    modules = set(_modules())
    assert not modules - listed, f"modules missing from docs/ARCHITECTURE.md: {sorted(modules - listed)}"
    assert not listed - modules, f"docs/ARCHITECTURE.md lists modules that do not exist: {sorted(listed - modules)}"


def test_modules_import_only_what_the_map_allows():
    allowed = _module_map()
    graph = import_graph()
    wrong = [
        f"{importer} imports {target}"
        for importer, target in graph.edges
        if importer in allowed and not _allowed(importer, target, allowed[importer])
    ]
    assert not wrong, "imports docs/ARCHITECTURE.md does not allow:\n" + "\n".join(wrong)
