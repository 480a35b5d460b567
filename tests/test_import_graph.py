"""The import graph of the package: no cycle, no import down into a deeper folder, no
import inside a function in `fastproxy/proxy/`, and no layer choosing another layer.

The graph holds every module of `fastproxy/` (.py by their syntax tree, .pyx by their
import lines), and every import in it: at the top, inside functions, under
`TYPE_CHECKING`. Imports under `TYPE_CHECKING` never run: they count for the direction
of dependencies, not for cycles.

Direction: a module may import modules of its own folder and of the folders above it
(`fastproxy/proxy/layers/http/x.py` may import `fastproxy/proxy/...` and
`fastproxy/*.py`), and the libraries every part uses (`fastproxy/io/`, `fastproxy/net/`,
`fastproxy/utils/`); reaching down or across into another folder is for the modules that
put the parts together (`COMPOSERS`). So `fastproxy/io/` and the models of
`fastproxy/*.py` import nothing from `fastproxy/proxy/`, and only `proxy/next_layer.py`
imports the layers.
"""

from __future__ import annotations

import ast
import functools
import importlib
import pathlib
import re

import pytest

import fastproxy
from fastproxy.proxy.context import Layer

ROOT = pathlib.Path(fastproxy.__file__).parent
LIBRARIES = ("fastproxy.io", "fastproxy.net", "fastproxy.utils")
"""Folders any module may import (they import nothing above the models themselves)."""
COMPOSERS = {
    "fastproxy.cli": "", "fastproxy.master": "", "fastproxy.readcmd": "",
    "fastproxy.addonmanager": "", "fastproxy.addons": "",
    "fastproxy.proxy.next_layer": "fastproxy.proxy.layers",
}
"""Modules (or packages) that may import down: into anything (""), or into one folder."""

KNOWN: dict[tuple[str, str], str] = {}
"""(rule, module) cases known to break a rule, each with its reason (a strict xfail)."""


# -- the graph ------------------------------------------------------------------------


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")) + sorted(ROOT.rglob("*.pyx")):
        found.setdefault(_module_name(path), path)
    return found


def _resolve(name: str) -> str | None:
    """The module `name` is, or is in (`a.b.C` -> `a.b`)."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


class Import:
    """One import statement's target module, and where the statement is."""

    def __init__(self, source: str, target: str, line: int, in_function: bool,
                 type_checking: bool) -> None:
        self.source, self.target, self.line = source, target, line
        self.in_function, self.type_checking = in_function, type_checking

    def __repr__(self) -> str:
        where = " (in a function)" if self.in_function else ""
        return f"{modules()[self.source].relative_to(ROOT.parent)}:{self.line} -> " \
               f"{self.target}{where}"


def _targets(source: str, base: str, names: list[str]) -> list[str]:
    """What `from base import names` imports: submodules where they are, else base."""
    found = []
    for name in names:
        target = _resolve(f"{base}.{name}")
        found.append(target if target == f"{base}.{name}" else _resolve(base))
    return [t for t in found if t is not None and t != source]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, in_function: bool, type_checking: bool):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function, type_checking
        nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                    ast.ClassDef))
        guarded = isinstance(child, ast.If) and _is_type_checking(child)
        yield from _walk(child, in_function or nested, type_checking or guarded)


def _python_imports(source: str, path: pathlib.Path) -> list[Import]:
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    found = []
    for node, in_function, type_checking in _walk(ast.parse(path.read_text()), False, False):
        if isinstance(node, ast.Import):
            targets = [_resolve(a.name) for a in node.names if a.name.startswith("fastproxy")]
            targets = [t for t in targets if t is not None and t != source]
        else:
            base = node.module or ""
            if node.level:
                prefix = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{prefix}.{base}" if base else prefix
            if not base.startswith("fastproxy"):
                targets = []
            else:
                targets = _targets(source, base, [a.name for a in node.names])
        found += [Import(source, t, node.lineno, in_function, type_checking)
                  for t in dict.fromkeys(targets)]
    return found


_PYX_IMPORT = re.compile(r"^([ \t]*)(?:from\s+(fastproxy[\w.]*)\s+import\s+([\w, ()]+)"
                         r"|import\s+(fastproxy[\w.]*))", re.MULTILINE)


def _pyx_imports(source: str, path: pathlib.Path) -> list[Import]:
    """Cython is no Python syntax: its (non-cimport) import lines, by pattern."""
    found = []
    text = path.read_text()
    for match in _PYX_IMPORT.finditer(text):
        indent, base, names, module = match.groups()
        line = text.count("\n", 0, match.start()) + 1
        if module:
            targets = [t for t in [_resolve(module)] if t is not None and t != source]
        else:
            targets = _targets(source, base, re.findall(r"\w+", names))
        found += [Import(source, t, line, bool(indent), False) for t in targets]
    return found


@functools.cache
def imports() -> list[Import]:
    found = []
    for name, path in modules().items():
        reader = _pyx_imports if path.suffix == ".pyx" else _python_imports
        found += reader(name, path)
    return found


@functools.cache
def cycles() -> dict[str, list[str]]:
    """Each module in an import cycle -> the modules of its cycle (Tarjan's SCC)."""
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    for imp in imports():
        if not imp.type_checking:
            graph[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: dict[str, list[str]] = {}

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                for member in component:
                    result[member] = sorted(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


# -- the rules ------------------------------------------------------------------------


def _folder(module: str) -> str:
    path = modules()[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _within(module: str, folder: str) -> bool:
    return module == folder or module.startswith(folder + ".")


def _allowed(imp: Import) -> bool:
    source_folder, target_folder = _folder(imp.source), _folder(imp.target)
    if _within(source_folder, target_folder):  # its own folder or one above it
        return True
    if any(_within(imp.target, library) for library in LIBRARIES):
        return True
    for composer, reach in COMPOSERS.items():
        if _within(imp.source, composer) and _within(imp.target, reach or "fastproxy"):
            return True
    return False


def _cases(rule: str, names) -> list:
    return [pytest.param(name, marks=pytest.mark.xfail(reason=KNOWN[rule, name], strict=True))
            if (rule, name) in KNOWN else name for name in names]


@pytest.mark.parametrize("module", _cases("cycle", modules()))
def test_no_import_cycle(module):
    assert module not in cycles(), f"{module} is in an import cycle: {cycles()[module]}\n" \
        + "\n".join(map(repr, (i for i in imports() if i.source in cycles()[module]
                               and i.target in cycles()[module] and not i.type_checking)))


@pytest.mark.parametrize("module", _cases("direction", modules()))
def test_no_import_down_into_another_folder(module):
    wrong = [imp for imp in imports() if imp.source == module and not _allowed(imp)]
    assert not wrong, f"{module} imports down or across into another folder: {wrong}"


PROXY_MODULES = [name for name in modules() if _within(name, "fastproxy.proxy")]


@pytest.mark.parametrize("module", _cases("function-level", PROXY_MODULES))
def test_no_function_level_import_in_the_proxy(module):
    path = modules()[module]
    if path.suffix == ".pyx":
        wrong = [imp for imp in imports() if imp.source == module and imp.in_function]
    else:
        wrong = [f"{path.name}:{node.lineno}" for node, in_function, type_checking
                 in _walk(ast.parse(path.read_text()), False, False)
                 if in_function and not type_checking]
    assert not wrong, f"imports inside functions (only next_layer chooses layers; " \
                      f"upstream*.py open upstreams): {wrong}"


LAYER_MODULES = [name for name in PROXY_MODULES
                 if _within(name, "fastproxy.proxy.layers") or name == "fastproxy.proxy.transparent"]


def _bases_and_annotations(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.ClassDef):
        return list(node.bases)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [node.returns] if node.returns is not None else []
    if isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation is not None:
        return [node.annotation]
    return []


@pytest.mark.parametrize("module", _cases("layer-choice", LAYER_MODULES))
def test_a_layer_asks_next_layer_instead_of_making_another_layer(module):
    """A layer class imported from another module is only ever a base class: which layer
    runs next is `next_layer`'s choice."""
    tree = ast.parse(modules()[module].read_text())
    loaded = importlib.import_module(module)
    imported = {alias.asname or alias.name for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) for alias in node.names}
    layers = {name for name in imported if isinstance(getattr(loaded, name, None), type)
              and issubclass(getattr(loaded, name), Layer) and getattr(loaded, name) is not Layer}
    allowed = {id(name) for node in ast.walk(tree) for part in _bases_and_annotations(node)
               for name in ast.walk(part)}
    made = [f"{node.id} (line {node.lineno})" for node in ast.walk(tree)
            if isinstance(node, ast.Name) and node.id in layers and id(node) not in allowed]
    assert not made, f"{module} uses other modules' layers: {made}"


def test_the_graph_sees_imports_everywhere():
    """The walk finds imports at the top, in functions and under TYPE_CHECKING."""
    by_source = {(i.source, i.target, i.in_function, i.type_checking) for i in imports()}
    assert ("fastproxy.proxy.server", "fastproxy.proxy.next_layer", False, False) in by_source
    assert ("fastproxy.proxy.context", "fastproxy.proxy.upstream", False, True) in by_source
    assert ("fastproxy.io._handover", "fastproxy.io._encode", False, False) in by_source
    assert any(i.in_function for i in imports())
