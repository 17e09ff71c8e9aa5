"""The import graph of `services/`: dependencies flow one way, and no module imports itself
back through others.

`core` imports no service and no service imports another (STYLE.md); the CLI and the
process entry points are the only modules that name services. A loop of imports, even
one hidden behind `TYPE_CHECKING`, means two modules hold one concept between them.
Imports inside functions are left out: the registry loads provider modules on first use
on purpose.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.stack import ROOT

SERVICES = ROOT / "services"
# The services proper: each may import `services.core` and nothing else of `services`.
STAGES = ("ingest", "resolver", "sender", "feedback")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in SERVICES.rglob("*.py")}


def top_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements of the module body, also under a module-level `if` or `try`."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If | ast.Try):
            pending.extend(node.body)
            pending.extend(node.orelse)


def imported(source: str, known: dict[str, Path]) -> set[str]:
    """The `services` modules `source` imports at module level."""
    found: set[str] = set()
    for node in top_level_imports(ast.parse(known[source].read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif node.module is None:
            continue
        else:
            # `from package import module` imports that module; `from module import x`, the module.
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("services.") and name != source and known[name].stem != "__init__":
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, known) for name in known}


def loops(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def stage_of(module: str) -> str | None:
    part = module.split(".")[1] if module.count(".") else ""
    return part if part in STAGES else None


def test_no_module_imports_itself_back() -> None:
    assert loops(graph()) == []


def test_core_imports_no_service_and_no_service_another() -> None:
    crossings = [
        f"{source} -> {target}"
        for source, targets in graph().items()
        for target in targets
        if (source.startswith("services.core") and not target.startswith("services.core"))
        or (stage_of(source) and stage_of(target) not in (None, stage_of(source)))
        or (stage_of(source) and not target.startswith("services.core") and not stage_of(target))
    ]
    assert crossings == []


def test_a_loop_is_found() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert loops(edges) == [["a", "b", "c"]]
