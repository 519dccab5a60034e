"""The import structure of the package: no circles between modules, no private names used across packages.

The graph: every module of ``transferkit`` (found with ``pkgutil.iter_modules``, nothing imported), and an edge ``a -> b`` for each
``import`` / ``from ... import`` statement of ``a`` that names a ``transferkit`` module ``b``, read from the source
with ``ast``. Rules of the graph:

- Module-level imports AND function-level imports both count: an import inside a function runs on the first call,
  and couples the two modules as much as one at the top (it only postpones the circle). Imports in class bodies
  count too. Only imports under ``if TYPE_CHECKING:`` are left out: they never run.
- ``from p import x`` is an edge to ``p.x`` when that is a module, else to ``p``; relative imports are resolved.
- Importing ``a.b.c`` runs the ``__init__`` of ``a`` and ``a.b`` first; those implicit steps are not edges (else
  every package that imports its own modules would be a circle with them).
- A registry names its built-in entries by ``"module:NAME"`` references (:mod:`transferkit._registry`), loaded on
  first use the way plugins are: that is not an import of the registry module. The entry modules import the
  registry's entry type, which is an edge.
- An import listed in ``KNOWN_CIRCLE_EDGES`` (a circle not yet broken, with the reason and what breaks it) is left
  out; a listed import that no longer closes a circle fails the test that checks the list.

Private names: ``_name`` belongs to the scope it is defined in. ``from transferkit.a.b import _c``,
``import transferkit.a._b``, ``from transferkit.a import _b`` and the attribute ``m._c`` of an imported module ``m``
are allowed only inside the same top-level unit (``transferkit.a`` and everything below it; for a module directly
in ``transferkit`` such as ``transferkit.api``, that module alone). Private modules of the root
(``transferkit._io``, ``transferkit._registry``, ``transferkit._lazy``, ``transferkit._version``) are the package's
shared helpers, open to every unit.
"""

from __future__ import annotations

import ast
import functools
import pkgutil
from dataclasses import dataclass
from pathlib import Path

import transferkit

ROOT = "transferkit"

#: (importing unit, private name as written) -> why it is allowed. Keep it empty; add one only with a reason.
PRIVATE_EXCEPTIONS: dict[tuple[str, str], str] = {}

#: Imports that close a circle not yet broken (importer, imported) -> why, and what breaks it. The circle check leaves
#: these edges out; ``test_listed_circle_edges_still_close_a_circle`` fails once one no longer closes a circle, so
#: the entry is removed the day the circle goes.
KNOWN_CIRCLE_EDGES: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the transferkit module imported
    names: tuple[str, ...]  # the full dotted names used (``transferkit.a.b._c``) for the private check
    line: int
    module_level: bool


def _modules() -> dict[str, Path]:
    """Every module of the package -> its source file (packages map to their ``__init__.py``), found with
    ``pkgutil.iter_modules`` folder by folder, so that nothing is imported."""
    root = Path(transferkit.__file__).parent
    found = {ROOT: root / "__init__.py"}
    folders = [(root, ROOT)]
    while folders:
        folder, package = folders.pop()
        for info in pkgutil.iter_modules([str(folder)]):
            name = f"{package}.{info.name}"
            if info.ispkg:
                found[name] = folder / info.name / "__init__.py"
                folders.append((folder / info.name, name))
            else:
                found[name] = folder / f"{info.name}.py"
    return found


MODULES = _modules()


def _owner(name: str) -> str:
    """The longest prefix of the dotted ``name`` that is a module of the package."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


@functools.lru_cache(maxsize=None)
def _tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(encoding="utf-8"), filename=str(MODULES[module]))


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _imports(module: str, source: str | None = None) -> list[Import]:
    """The transferkit imports of ``module`` (its file, or ``source``)."""
    tree = _tree(module) if source is None else ast.parse(source)
    found: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child, module_level)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == ROOT:
                    found.append(Import(module, _owner(alias.name), (alias.name,), node.lineno, module_level))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = _package_of(module).split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            if base.split(".")[0] == ROOT:
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in MODULES else _owner(base)
                    found.append(Import(module, target, (full,), node.lineno, module_level))
        inner = module_level and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, True)
    return [i for i in found if i.target != module]


IMPORTS = {module: _imports(module) for module in MODULES}


def _graph() -> dict[str, set[str]]:
    return {module: {i.target for i in imports} for module, imports in IMPORTS.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as one circle through them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_circle(graph, set(c)) for c in components]


def _circle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One circle through the first module of ``component`` (breadth-first back to it), for the message."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return sorted(component)


def _unit(module: str) -> str:
    """``transferkit.a`` for any module at or below ``transferkit.a``."""
    return ".".join(module.split(".")[:2])


def _private_uses() -> list[str]:
    """Every use of a private name outside the unit that owns it, as ``module:line name``."""
    bad = []
    for module, imports in IMPORTS.items():
        for item in imports:
            for name in item.names:
                bad += _private_violation(module, item.line, name)
        bad += _private_attributes(module)
    return sorted(set(bad))


def _private_violation(module: str, line: int, name: str) -> list[str]:
    parts = name.split(".")
    for position, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__") and position > 0:
            scope = ".".join(parts[:position])
            if scope == ROOT or _unit(scope) == _unit(module):
                continue
            if (_unit(module), name) in PRIVATE_EXCEPTIONS:
                continue
            return [f"{module}:{line} uses {name}, private to {scope}"]
    return []


def _private_attributes(module: str) -> list[str]:
    """``m._c`` where ``m`` is bound to a transferkit module of another unit (``import x as m``,
    ``from p import m``)."""
    tree = _tree(module)
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == ROOT and alias.asname:
                    bound[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == ROOT:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in MODULES:
                    bound[alias.asname or alias.name] = full
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                bad += _private_violation(module, node.lineno, f"{bound[node.value.id]}.{node.attr}")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            dotted = _dotted(node.value)
            if dotted and dotted.split(".")[0] == ROOT and dotted in MODULES:
                bad += _private_violation(module, node.lineno, f"{dotted}.{node.attr}")
    return bad


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def test_the_walk_finds_the_package():
    # the checks below are only as good as the walk: it must see the subpackages and their imports
    assert {"transferkit.api", "transferkit.models.artifacts", "transferkit.models.artifact_kinds",
            "transferkit.estimators.linear_probe", "transferkit.cli.main"} <= set(MODULES)
    assert "transferkit.models.folder" in _graph()["transferkit.models.artifact_kinds"]


def test_function_level_imports_count_and_type_checking_ones_do_not():
    source = ("from typing import TYPE_CHECKING\n"
              "from . import folder\n"
              "if TYPE_CHECKING:\n    import transferkit.api\n"
              "class Holder:\n    from transferkit.models import model\n"
              "def load():\n    from transferkit.models.heads import LinearHead\n")
    found = {(i.target, i.module_level) for i in _imports("transferkit.models.artifacts", source)}
    assert found == {("transferkit.models.folder", True), ("transferkit.models.model", True),
                     ("transferkit.models.heads", False)}


def _graph_without_known_edges() -> dict[str, set[str]]:
    graph = _graph()
    for importer, imported in KNOWN_CIRCLE_EDGES:
        graph[importer] = graph[importer] - {imported}
    return graph


def test_no_import_circles():
    circles = _cycles(_graph_without_known_edges())
    assert not circles, "import circles (module-level and function-level imports):\n" + "\n".join(
        " -> ".join(circle) for circle in circles)


def test_listed_circle_edges_still_close_a_circle():
    graph = _graph_without_known_edges()
    stale = []
    for importer, imported in KNOWN_CIRCLE_EDGES:
        # the edge closes a circle when the imported module reaches the importer again
        seen, queue = {imported}, [imported]
        while queue:
            for w in graph[queue.pop()] - seen:
                seen.add(w)
                queue.append(w)
        if importer not in seen or imported not in _graph()[importer]:
            stale.append((importer, imported))
    assert not stale, f"these imports no longer close a circle; remove them from KNOWN_CIRCLE_EDGES: {stale}"


def test_the_circle_check_names_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_private_names_across_packages():
    bad = _private_uses()
    assert not bad, ("private names used outside the package that owns them (make the name public where it is "
                     "defined, or move the code):\n" + "\n".join(bad))


def test_the_private_check_sees_a_violation():
    assert _private_violation("transferkit.cli.main", 1, "transferkit.api._as_model")
    assert not _private_violation("transferkit.fusion.stacking", 1, "transferkit.fusion._common.x")
    assert not _private_violation("transferkit.cli.main", 1, "transferkit._io.atomic_write_text")
    assert _private_violation("transferkit.api", 1, "transferkit.fusion._common")
