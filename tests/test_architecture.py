"""The layering the project keeps: no import cycles, and a core that knows nothing of LangChain or HTTP.

Imports are read from the source (every ``import`` statement, at module level or inside
a function or ``TYPE_CHECKING`` block), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "hybrid_retriever": ROOT / "hybrid_retriever",
    "hybrid_retriever_langchain": ROOT / "adapters" / "hybrid_retriever_langchain",
    "hybrid_retriever_server": ROOT / "adapters" / "hybrid_retriever_server",
}
#: Top-level modules the core must never import (the adapters' worlds). httpx is not among them: it is
#: qdrant-client's transport, whose errors the remote store classifies.
ADAPTER_WORLDS = {"langchain", "langchain_core", "langchain_community", "langchain_classic", "fastapi", "starlette",
                  "uvicorn", "hybrid_retriever_langchain", "hybrid_retriever_server"}


@functools.cache
def modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for f in folder.rglob("*.py"):
            parts = (pkg, *f.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def imported_names(name: str, path: Path) -> set[str]:
    """Every module name ``path`` imports (relative imports resolved; ``from a import b`` gives ``a.b`` and ``a``)."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in node.names}
            out |= subs
            out.add(base)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph = {}
    for name, path in mods.items():
        names = imported_names(name, path)
        # ``from pkg import x`` counts as depending on ``pkg`` too (its ``__init__`` runs), whatever ``x`` is.
        graph[name] = {n for n in names if n in mods and n != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 50  # the packages were found
    assert cycles(graph) == []


@pytest.mark.parametrize("name", sorted(n for n in modules() if n.split(".")[0] == "hybrid_retriever"))
def test_the_core_imports_no_adapter_world(name: str) -> None:
    path = modules()[name]
    bad = {n for n in imported_names(name, path) if n.split(".")[0] in ADAPTER_WORLDS}
    assert not bad, f"{name} imports {sorted(bad)}: the core must not depend on adapters"
