"""Answers per source: grouping (one hit per source) and passages (adjacent chunks joined in reading order),
in the Python API, the CLI, the HTTP service and the LangChain retriever."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hybrid_retriever import Document, HybridRetriever, InvalidInputError, RetrieverConfig
from hybrid_retriever.chunking import Chunker
from hybrid_retriever.cli import app
from hybrid_retriever.grouping import group_depth, group_hits, merge_passages, word_count
from hybrid_retriever.types import Hit
from hybrid_retriever_server import ServerSettings, create_app

runner = CliRunner()

#: Three files about rivers, glaciers and deserts; each paragraph a chunk at 120 characters.
FILES = {
    "rivers.md": "\n\n".join([
        "Rivers carve valleys over thousands of years as water wears rock away.",
        "A river delta forms where a river meets the sea and drops its sediment.",
        "Meanders are bends of a river that grow as the outer bank erodes.",
        "Floods spread river silt over plains, which makes farmland fertile.",
    ]),
    "glaciers.md": "\n\n".join([
        "Glaciers are rivers of ice that move slowly down mountain valleys.",
        "A glacier carves a U-shaped valley, unlike the V of a river valley.",
    ]),
    "deserts.txt": "Deserts receive little rain; some see none for years.\n\nDunes move with the wind across the sand.",
}


def chunks() -> list[Document]:
    chunker = Chunker(120)
    return [c for name, text in FILES.items() for c in chunker.split(Document(text, metadata={"source": name}, id=name))]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("grouping") / "index"
    cfg = RetrieverConfig.validate_data({"store": {"kind": "edge", "path": str(path)}, "branches": [{"kind": "bm25"}],
                                         "runtime": {"show_progress": False}})
    with HybridRetriever(cfg) as r:
        r.add_documents(chunks())
    return path


def hit(doc_id: str, rank: int, **meta: Any) -> Hit:
    return Hit(id=doc_id, text=f"text of {doc_id}", metadata=meta, score=1.0 / rank, rank=rank, provenance={})


# ----------------------------------------------------------------------- the rules


def test_group_hits_keeps_each_sources_best_hit_with_its_ranks() -> None:
    hits = [hit("a#2", 1, source="a"), hit("b#0", 2, source="b"), hit("a#0", 3, source="a"), hit("row7", 4),
            hit("c#1", 5, source="c"), hit("b#3", 6, source="b"), hit("a#1", 7, source="a")]
    grouped = group_hits(hits, k=3)
    assert [(h.id, h.rank) for h in grouped] == [("a#2", 1), ("b#0", 2), ("row7", 3)]
    a, b, row = (h.group for h in grouped)
    assert (a.key, a.matched, a.ranks, a.ids, a.depth) == ("a", 3, [1, 3, 7], ["a#2", "a#0", "a#1"], 7)
    assert (b.key, b.matched, b.ranks) == ("b", 2, [2, 6])
    assert (row.key, row.matched) == ("row7", 1)  # no source field: a group of its own
    assert grouped[0].score == hits[0].score and grouped[0].as_dict()["group"]["ranks"] == [1, 3, 7]
    assert [h.id for h in group_hits(hits, k=10, field_name="missing")] == [h.id for h in hits]  # no field: one per document
    with pytest.raises(InvalidInputError, match="group_by"):
        group_hits(hits, 3, "")
    assert group_depth(3) == 50 and group_depth(10) == 100


def test_passages_join_adjacent_chunks_in_reading_order_within_the_budget() -> None:
    text = FILES["rivers.md"]
    for overlap in (0, 40):  # trimmed gaps between chunks, and text two chunks share
        parts = Chunker(120, overlap).split(Document(text, metadata={"source": "rivers.md"}, id="rivers.md"))
        assert len(parts) >= 4
        # Ranked out of reading order: chunk 2 first, then 0, 1 (adjacent to both), then the last one.
        ranked = [parts[2], parts[0], parts[1], parts[-1]]
        hits = [Hit(c.id, c.text, c.metadata, 1.0 / (i + 1), i + 1, {}) for i, c in enumerate(ranked)]
        one = merge_passages(hits, budget=10_000)[0]
        assert one.ids[:3] == [parts[0].id, parts[1].id, parts[2].id]  # reading order, whatever the ranks
        assert (one.rank, one.score, one.source, one.char_start) == (1, 1.0, "rivers.md", 0)
        assert one.char_end == parts[len(one.ids) - 1].metadata["char_end"]
        # The passage is the document's own text over its span (whitespace between chunks becomes one newline).
        assert one.text.split() == text[: one.char_end].split() and one.tokens == word_count(one.text)
    # The budget: hits are taken best first while their tokens fit; a later shorter one may still fit.
    hits = [hit("x#0", 1, source="x", chunk=0), hit("y#0", 2, source="y", chunk=0), hit("x#1", 3, source="x", chunk=1)]
    hits[1].text = "many words " * 20
    got = merge_passages(hits, budget=8)
    assert [p.ids for p in got] == [["x#0", "x#1"]] and sum(p.tokens for p in got) <= 8
    with pytest.raises(InvalidInputError, match="budget"):
        merge_passages(hits, budget=0)


# ---------------------------------------------------------------- the entry points


def test_search_group_by_source_is_the_deeper_list_grouped(index: Path) -> None:
    with HybridRetriever.open(str(index)) as r:
        deep = r.search("river valley", k=group_depth(2))
        grouped = r.search("river valley", k=2, group_by="source")
        firsts: dict[str, Hit] = {}
        for h in deep:
            firsts.setdefault(h.metadata["source"], h)
        assert [h.id for h in grouped] == [h.id for h in list(firsts.values())[:2]]
        assert len({h.metadata["source"] for h in grouped}) == 2
        top = grouped[0].group
        assert top.ranks == [h.rank for h in deep if h.metadata["source"] == top.key]
        passages = r.search_passages("river valley", budget=60, k=10)
        assert sum(p.tokens for p in passages) <= 60 and passages[0].rank == 1


def test_cli_query_group_by_and_passages(index: Path) -> None:
    plain = runner.invoke(app, ["query", "river valley", "--index", str(index), "--group-by", "source", "-k", "2"])
    assert plain.exit_code == 0, plain.output
    assert "source: rivers.md" in plain.stdout and "matched (ranks 1," in plain.stdout
    as_json = json.loads(runner.invoke(app, ["query", "river valley", "--index", str(index), "-g", "source", "--json"]).stdout)
    assert len({h["metadata"]["source"] for h in as_json}) == len(as_json) == 2  # deserts.txt matches no query word
    assert all(h["group"]["field"] == "source" and h["group"]["ids"][0] == h["id"] for h in as_json)
    passages = json.loads(runner.invoke(app, ["query", "river delta", "--index", str(index), "--passages", "40", "--json"]).stdout)
    assert passages and sum(p["tokens"] for p in passages) <= 40 and passages[0]["rank"] == 1
    both = runner.invoke(app, ["query", "x", "--index", str(index), "--server", "http://127.0.0.1:9"])
    assert both.exit_code == 2 and "not both" in both.output


def test_http_search_groups_like_the_library(index: Path) -> None:
    with HybridRetriever.open(str(index)) as r:
        expected = r.search("river valley", k=2, group_by="source")
        with TestClient(create_app(r, ServerSettings())) as client:
            res = client.post("/search", json={"query": "river valley", "k": 2, "group_by": "source"})
            assert res.status_code == 200, res.text
            hits = res.json()["hits"]
            assert [h["id"] for h in hits] == [h.id for h in expected]
            assert [h["group"] for h in hits] == [h.group.as_dict() for h in expected]
            batch = client.post("/search/batch", json={"queries": ["river valley"], "k": 2, "group_by": "source"}).json()
            assert [h["id"] for h in batch["results"][0]] == [h.id for h in expected]
            assert client.post("/search", json={"query": "river", "group_by": ""}).status_code == 422


def test_langchain_retriever_groups_and_returns_passages(index: Path) -> None:
    from hybrid_retriever_langchain import HybridSearchRetriever

    with HybridRetriever.open(str(index)) as r:
        grouped = HybridSearchRetriever(retriever=r, k=2, group_by="source").invoke("river valley")
        assert [d.id for d in grouped] == [h.id for h in r.search("river valley", k=2, group_by="source")]
        assert grouped[0].metadata["hybrid"]["group"]["key"] == grouped[0].metadata["source"]
        docs = HybridSearchRetriever(retriever=r, k=10, passage_budget=60).invoke("river delta")
        expected = r.search_passages("river delta", 60, k=10)
        assert [d.page_content for d in docs] == [p.text for p in expected]
        assert docs[0].metadata["hybrid"]["passage"]["ids"] == expected[0].ids and "chunk" not in docs[0].metadata


# ------------------------------------------------------------- eval by source


def test_eval_with_judgements_naming_files_counts_each_files_best_chunk(index: Path, tmp_path: Path) -> None:
    """Judgements name files (what a user writes); the index holds chunks: a file counts at its best chunk's
    place, exactly where `query --group-by source` puts it; a judged id matching nothing stored is a loud warning."""
    queries = {"q1": ("river delta sediment", "rivers.md"), "q2": ("glacier valley", "rivers.md"), "q3": ("sand dunes wind", "deserts.txt")}
    judged = tmp_path / "judged.jsonl"
    judged.write_text("".join(json.dumps({"id": q, "text": t, "relevant": [f]}) + "\n" for q, (t, f) in queries.items()), encoding="utf-8")
    expected = []
    with HybridRetriever.open(str(index)) as r:
        for text, f in queries.values():
            ranks = [h.rank for h in r.search(text, k=10, group_by="source") if h.metadata["source"] == f]
            expected.append(1 / ranks[0] if ranks else 0.0)
    assert 0 < sum(expected) < 3 and expected[1] < 1  # glacier valley: glaciers.md first, rivers.md below it
    out = tmp_path / "out"
    result = runner.invoke(app, ["eval", str(judged), "--index", str(index), "--metrics", "mrr@10,ndcg@10", "--out", str(out),
                                 "--no-plots", "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert report["systems"]["fused"]["metrics"]["mrr@10"] == pytest.approx(sum(expected) / 3)
    assert any("scored by source" in w for w in report["warnings"]) and report["data"]["unknown_docs"] == 0
    # A judged id that matches nothing: counted, in the report and on the console.
    judged.write_text(judged.read_text() + json.dumps({"id": "q4", "text": "river", "relevant": ["rivers.txt"]}) + "\n",
                      encoding="utf-8")
    loud = runner.invoke(app, ["eval", str(judged), "--index", str(index), "--metrics", "mrr@10", "--out", str(out),
                               "--no-plots", "--no-progress"])
    assert loud.exit_code == 0, loud.output
    assert "WARNING: 1 judged document id(s) match nothing" in loud.stderr and "'rivers.txt'" in loud.stderr
    again = json.loads((out / "eval.json").read_text())
    assert again["data"]["unknown_docs"] == 1 and any("match nothing" in w for w in again["warnings"])
    assert "match nothing" in (out / "eval.md").read_text()
