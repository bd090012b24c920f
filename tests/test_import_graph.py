"""The import rules of DEVELOPERS.md, checked on the source: no circle between modules or
packages, imports run ``rt3d_passes`` → ``schedules`` → tvm, ``rt3d_prune`` stands alone, and
no module imports another's private names.

Imports inside functions count too: a lazy import that closes a circle is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rt3d_passes", "schedules", "rt3d_prune")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """``(module, imported names)`` of every import statement, resolved to absolute names."""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                root = base[: len(base) - (node.level - 1)]
                module = ".".join(root + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [a.name for a in node.names]))
    return found


def _project_module(name: str) -> str | None:
    """The project module ``name`` (or its longest known prefix) refers to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for module, names in _imports(name, path):
            targets = {_project_module(f"{module}.{n}") for n in names} or {None}
            targets.add(_project_module(module))
            graph[name].update(t for t in targets if t and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
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
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _package(module: str) -> str:
    """The first-level (sub)package of a module: ``rt3d_passes.tuning``, ``schedules``..."""
    parts = module.split(".")
    if len(parts) > 1 and (ROOT / parts[0] / parts[1]).is_dir():
        return ".".join(parts[:2])
    return parts[0]


def test_no_module_cycle():
    assert _cycles(_graph()) == []


def _nested(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def test_no_package_cycle():
    """Between top-level packages and between sibling subpackages (a package's own top-level
    modules, such as ``rt3d_passes.sparsity``, serve its subpackages; its ``__init__``
    re-exports them: parent and child are one unit here)."""
    packages: dict[str, set[str]] = {}
    for src, targets in _graph().items():
        edges = packages.setdefault(_package(src), set())
        edges.update(_package(t) for t in targets if not _nested(_package(t), _package(src)))
    assert _cycles(packages) == []


@pytest.mark.parametrize("package,forbidden", [
    ("schedules", ("rt3d_passes", "rt3d_prune")),
    ("rt3d_prune", ("rt3d_passes", "schedules", "tvm")),
    ("rt3d_passes.tuning", ("rt3d_passes.pipeline",)),
    ("rt3d_passes.pipeline", ("rt3d_passes.tuning.tune", "rt3d_passes.tuning.tasks")),
])
def test_imports_run_one_way(package, forbidden):
    bad = []
    for name, path in MODULES.items():
        if name != package and not name.startswith(package + "."):
            continue
        for module, _ in _imports(name, path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{name} imports {module}")
    assert bad == []


def test_no_private_names_across_modules():
    bad = []
    for name, path in MODULES.items():
        for module, names in _imports(name, path):
            if _project_module(module) not in (None, name):
                bad.extend(f"{name}: from {module} import {n}" for n in names
                           if n.startswith("_") and not n.startswith("__"))
    assert bad == []


def test_checker_finds_a_cycle():
    """The checks above can fail: a two-module circle is found."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
