"""No import cycles between modules (the design's "ownership runs one way").

Every module under ``src/`` is read with ``ast`` (never imported), and every ``import`` and
``from ... import`` statement in it counts as an edge, wherever it stands:

- under ``if TYPE_CHECKING:`` too: a type-only import still means the module cannot be read,
  tested or changed without the one it names (the design says so explicitly);
- inside functions too: a function-local import is the usual way to hide a cycle from Python's
  import machinery, not to remove it, so it counts like any other.

``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg`` (the
name is an attribute of the package's ``__init__``). The implicit import of a module's parent
packages is not an edge: otherwise every package whose ``__init__`` re-exports its modules would
be a cycle with each of them.

The check covers the cycles that touch a module under one of ``SCOPE``'s prefixes (a cycle
leaving the scope and coming back into it counts); ``("",)``, every module of ``src/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SCOPE: tuple[str, ...] = ("",)  # all of src/
SRC = Path(__file__).resolve().parent.parent / "src"


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root`` (a package is its ``__init__``)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts:
            modules[".".join(parts)] = path
    return modules


def imported_modules(module: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that the import statements of ``module`` (at ``path``) name."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative: from the module's own package (a package's __init__ is its own package).
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = package[: len(package) - (node.level - 1)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            for alias in node.names:
                submodule = f"{prefix}.{alias.name}"
                names.add(submodule if submodule in modules else prefix)
    return {name for name in names if name in modules and name != module}


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules under ``root`` it imports."""
    files = module_files(root)
    return {module: imported_modules(module, path, set(files)) for module, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path ending where it starts) per strongly connected component of the graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan; the graph is a few hundred modules, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, component) for component in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """The shortest cycle through the component's first module (by name), as a path."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {component}")  # a component always has one


def in_scope(module: str, scope: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(f"{prefix}.") or not prefix for prefix in scope)


def cycles_in_scope(root: Path, scope: tuple[str, ...]) -> list[list[str]]:
    return [cycle for cycle in cycles(import_graph(root)) if any(in_scope(m, scope) for m in cycle)]


def test_no_import_cycle_touches_the_scope() -> None:
    """Fails naming one cycle per knot of modules that import each other (a shortest one through the
    knot's first module by name; the others of the knot are in it too)."""
    found = cycles_in_scope(SRC, SCOPE)
    assert not found, "import cycles (each module imports the next, type-only imports count):\n" + "\n".join(
        " -> ".join(cycle) for cycle in found
    )


# -- the walker itself ---------------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    "b_source",
    [
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n",
        "def f():\n    from . import a\n",
        "import pkg.a\n",
        "from .a import A\n",
    ],
    ids=["type-only", "function-local relative", "plain", "relative"],
)
def test_the_walker_names_a_cycle_however_the_import_is_written(tmp_path: Path, b_source: str) -> None:
    root = write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\n",
            "pkg/a.py": "from pkg.b import B\nA = 1\n",
            "pkg/b.py": b_source,
        },
    )
    assert cycles_in_scope(root, ("pkg",)) == [["pkg.a", "pkg.b", "pkg.a"]]
    assert cycles_in_scope(root, ("other",)) == []


def test_a_package_reexporting_its_modules_is_not_a_cycle(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\nfrom pkg.b import B\n",
            "pkg/a.py": "from pkg import b\nA = b.B\n",
            "pkg/b.py": "B = 1\n",
        },
    )
    assert import_graph(root) == {"pkg": {"pkg.a", "pkg.b"}, "pkg.a": {"pkg.b"}, "pkg.b": set()}
    assert cycles_in_scope(root, ("",)) == []
