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


# ------------------------------------------------------------------------------------------- layers

#: The layers, lowest first, read from the code's own imports: a module may import its own layer and
#: those below it, never one above. A module's layer is that of its longest dotted prefix listed here
#: (``hybrid_retriever`` alone is the package's ``__init__``, the public names it exports lazily).
#: A new module must be placed here (test_every_module_has_a_layer).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("hybrid_retriever.version", "hybrid_retriever.lazy", "hybrid_retriever.errors",
                    "hybrid_retriever.types", "hybrid_retriever.ids")),
    ("documents and text", ("hybrid_retriever.languages", "hybrid_retriever.payload", "hybrid_retriever.chunking",
                            "hybrid_retriever.ingest", "hybrid_retriever.grouping", "hybrid_retriever.sources",
                            "hybrid_retriever.sync")),
    ("models", ("hybrid_retriever.models",)),
    ("configuration", ("hybrid_retriever.config", "hybrid_retriever.config_security")),
    ("parts", ("hybrid_retriever.fusion", "hybrid_retriever.branches", "hybrid_retriever.resilience",
               "hybrid_retriever.branch_runs")),
    ("stores", ("hybrid_retriever.stores",)),
    ("stages", ("hybrid_retriever.prf", "hybrid_retriever.rerank", "hybrid_retriever.language_refit",
                "hybrid_retriever.repair", "hybrid_retriever.index_manifest")),
    ("write path", ("hybrid_retriever.index_writer",)),
    ("retriever", ("hybrid_retriever.retriever", "hybrid_retriever")),
    ("command-line helpers", ("hybrid_retriever.cli_common",)),
    ("evaluation", ("hybrid_retriever.evaluation",)),
    ("command line", ("hybrid_retriever.cli",)),
    ("adapters", ("hybrid_retriever_langchain", "hybrid_retriever_server")),
]

#: Up-layer imports tolerated, as (importer, imported): none. An entry needs a reason and a plan to remove it.
ALLOWED_UP: set[tuple[str, str]] = set()


def layer_of(name: str) -> int | None:
    """Index in :data:`LAYERS` of module ``name`` (its longest listed prefix), or None if unplaced."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix == "hybrid_retriever" and name != prefix:
            continue  # the root entry is the package's __init__ only, not a catch-all
        for i, (_, members) in enumerate(LAYERS):
            if prefix in members:
                return i
    return None


def up_layer_imports(graph: dict[str, set[str]], allowed: set[tuple[str, str]] | None = None) -> list[str]:
    """Every import in ``graph`` (module -> modules it imports) of a module in a higher layer, described."""
    found = []
    for importer in sorted(graph):
        low = layer_of(importer)
        for imported in sorted(graph[importer]):
            high = layer_of(imported)
            if low is None or high is None or high <= low or (importer, imported) in (allowed or set()):
                continue
            found.append(f"{importer} ({LAYERS[low][0]}) imports {imported} ({LAYERS[high][0]})")
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(n for n in modules() if layer_of(n) is None)
    assert not unplaced, f"place these modules in a layer of LAYERS: {unplaced}"


def test_no_import_runs_up_the_layers() -> None:
    found = up_layer_imports(import_graph(), ALLOWED_UP)
    assert not found, "imports that run up the layers (move the code, or pass what it needs down):\n" + "\n".join(found)


def test_the_allowed_up_layer_imports_still_exist() -> None:
    graph = import_graph()
    stale = sorted(pair for pair in ALLOWED_UP if pair[1] not in graph.get(pair[0], set()))
    assert not stale, f"delete these entries from ALLOWED_UP, the imports are gone: {stale}"


def test_the_layer_check_reports_an_up_layer_import(tmp_path: Path) -> None:
    # An import inside a function counts: a lazy import cannot hide a layer break.
    source = tmp_path / "rrf.py"
    source.write_text("def fuse():\n    from hybrid_retriever.retriever import HybridRetriever\n    return HybridRetriever\n")
    names = imported_names("hybrid_retriever.fusion.rrf", source)
    graph = {"hybrid_retriever.fusion.rrf": {n for n in names if n in modules()}}
    assert up_layer_imports(graph) == [
        "hybrid_retriever.fusion.rrf (parts) imports hybrid_retriever.retriever (retriever)"
    ]
    # Down the layers, or within one, is fine; an allowed pair is not reported.
    assert up_layer_imports({"hybrid_retriever.retriever": {"hybrid_retriever.fusion.rrf", "hybrid_retriever"}}) == []
    assert up_layer_imports(graph, {("hybrid_retriever.fusion.rrf", "hybrid_retriever.retriever")}) == []
    # The package's __init__ is not a catch-all: a new core module is unplaced until listed.
    assert layer_of("hybrid_retriever.something_new") is None
    assert layer_of("hybrid_retriever.stores.edge") == layer_of("hybrid_retriever.stores")
