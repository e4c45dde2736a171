"""The package's shape: no module imports one that (directly or not) imports it back.

Imports inside functions count too: they are how a cycle hides until the day someone moves
the import to the top (handler -> sinks -> testing -> handler did).
"""

from __future__ import annotations

import ast
from pathlib import Path

import wide_logging

PACKAGE = Path(wide_logging.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in it."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            submodules = [f"{target}.{a.name}" for a in node.names]
            named = [s for s in submodules if s in modules]
            # `from . import metrics` imports the module, not the package's own code
            targets = named if len(named) == len(submodules) else [target, *named]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def test_no_module_imports_itself_back() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "wide_logging.handler" in graph["wide_logging.middleware.asgi"]  # the parser works
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


SIDE_PRODUCTS = (
    "wide_logging.tools",
    "wide_logging.incidents",
    "wide_logging.cache",
    "wide_logging.report",
)
#: What may use a side product besides the side products: ``python -m wide_logging`` runs
#: the CLI, the pytest plugin (an entry point pytest loads) the overhead meter, and the
#: consumer runs the live incident rules on what it ships.
SIDE_PRODUCT_USERS = {
    "wide_logging.__main__",
    "wide_logging.pytest_plugin",
    "wide_logging.consumer",
}


def _is_side_product(name: str) -> bool:
    return any(name == side or name.startswith(side + ".") for side in SIDE_PRODUCTS)


def test_the_core_never_imports_a_side_product() -> None:
    modules = _modules()
    assert any(_is_side_product(name) for name in modules)  # the names still exist
    offenders = {
        name: sorted(filter(_is_side_product, _imports(name, path, modules)))
        for name, path in modules.items()
        if not _is_side_product(name) and name not in SIDE_PRODUCT_USERS
    }
    assert {name: found for name, found in offenders.items() if found} == {}
