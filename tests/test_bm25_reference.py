"""The BM25 branch, searched through the retriever, against BM25 computed independently.

The reference is Lucene's / Qdrant's BM25 written out with numpy:

    idf(t)    = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))
    score(d)  = Σ_{t in q, unique} idf(t) · tf·(k1 + 1) / (tf + k1·(1 - b + b·len(d)/avg_len))

over Qdrant's own tokens (token ids from ``qdrant_edge.Bm25``; document term
frequencies read back from a b = 0, k = 1 model whose weight is 2·tf/(tf + 1)).
A second check uses ``rank_bm25`` with the same idf.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import qdrant_edge as qe
from rank_bm25 import BM25Okapi

from hybrid_retriever import HybridRetriever, RetrieverConfig
from conftest import load_beir_slice

K1, B = 1.2, 0.75
TOP = 10


def qdrant_tokens_config(k: float, b: float, avg_len: float) -> qe.Bm25Config:
    """Qdrant's English tokenisation as the branch's defaults ask for (stemming, stop words, lowercase)."""
    return qe.Bm25Config(
        k=k,
        b=b,
        avg_len=avg_len,
        language="english",
        lowercase=True,
        ascii_folding=False,
        stemmer=qe.SnowballParams(qe.SnowballLanguage.English),
        stopwords=qe.StopwordsSet(languages={qe.Language.English}),
    )


class Reference:
    """Term frequencies of every document in Qdrant's tokenisation, and BM25 over them."""

    def __init__(self, texts: list[str]) -> None:
        counter = qe.Bm25(qdrant_tokens_config(k=1.0, b=0.0, avg_len=1.0))
        self.counter = counter
        self.tf: list[dict[int, int]] = []
        for t in texts:
            v = counter.embed_document(t)
            doc: dict[int, int] = {}
            for token, w in zip(v.indices, v.values):
                tf = w / (2.0 - w)  # w = 2·tf/(tf + 1)
                assert abs(tf - round(tf)) < 1e-3, (t, token, w)
                doc[int(token)] = int(round(tf))
            self.tf.append(doc)
        vocab = sorted({tok for d in self.tf for tok in d})
        self.col = {tok: j for j, tok in enumerate(vocab)}
        self.matrix = np.zeros((len(texts), len(vocab)))
        for i, d in enumerate(self.tf):
            for tok, tf in d.items():
                self.matrix[i, self.col[tok]] = tf
        self.lengths = self.matrix.sum(axis=1)
        n_docs = len(texts)
        df = (self.matrix > 0).sum(axis=0)
        self.idf = np.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))

    def query_tokens(self, text: str) -> list[int]:
        return [int(i) for i in self.counter.embed_query(text).indices]

    def scores(self, query: str, k1: float, b: float, avg_len: float) -> np.ndarray:
        cols = [self.col[t] for t in set(self.query_tokens(query)) if t in self.col]
        tf = self.matrix[:, cols]
        norm = k1 * (1.0 - b + b * self.lengths / avg_len)
        return (self.idf[cols] * tf * (k1 + 1.0) / (tf + norm[:, None])).sum(axis=1)


class LuceneIdfBM25(BM25Okapi):
    """rank_bm25's Okapi BM25 with Lucene's (always positive) idf instead of its epsilon floor."""

    def _calc_idf(self, nd):
        for word, freq in nd.items():
            self.idf[word] = math.log(1.0 + (self.corpus_size - freq + 0.5) / (freq + 0.5))


@pytest.fixture(scope="module")
def scifact(tmp_path_factory):
    docs, queries, qrels = load_beir_slice("scifact", 500)
    path = tmp_path_factory.mktemp("bm25ref") / "index"
    cfg = RetrieverConfig.validate_data(
        {
            "store": {"kind": "edge", "path": str(path)},
            "branches": [{"kind": "bm25", "k1": K1, "b": B}],
            "runtime": {"show_progress": False, "ingest_batch_size": 128},
        }
    )
    retriever = HybridRetriever(cfg)
    retriever.add_documents(docs)
    ref = Reference([d.text for d in docs])
    yield retriever, docs, queries, ref
    retriever.close()


def test_avg_len_is_the_measured_mean_length(scifact):
    retriever, docs, _, ref = scifact
    branch = retriever.branches["bm25"]
    assert branch.avg_len == pytest.approx(ref.lengths.mean(), rel=1e-9)
    assert retriever.store.read_manifest()["branches"]["bm25"]["avg_len"] == branch.avg_len
    # Token counts agree with the branch's own counter, document by document.
    assert [branch.token_count(d.text) for d in docs[:50]] == [int(x) for x in ref.lengths[:50]]


def test_query_vectors_are_unique_tokens_weighted_one(scifact):
    retriever, _, queries, ref = scifact
    branch = retriever.branches["bm25"]
    for q in list(queries.values())[:10]:
        (vec,) = branch.encode_queries([q])
        assert sorted(vec.indices) == sorted(set(ref.query_tokens(q)))
        assert set(vec.values) <= {1.0}


def assert_same_top(doc_ids: list[str], got: list[tuple[str, float]], reference: np.ndarray, query: str) -> None:
    """Same top-k as the reference, ties aside, and the retriever's raw scores equal the reference's."""
    ref = {doc_ids[i]: float(s) for i, s in enumerate(reference)}
    want = sorted(reference[reference > 0], reverse=True)[:TOP]
    assert len(got) == len(want), query
    # Positionwise the same scores (so the same documents up to equal-score swaps) ...
    assert [ref[i] for i, _ in got] == pytest.approx(want, rel=1e-4), query
    # ... and each hit's raw score is its reference score.
    assert [s for _, s in got] == pytest.approx([ref[i] for i, _ in got], rel=1e-4), query
    # Where the reference has no tie around a position, the document there is the same.
    order = [doc_ids[i] for i in np.argsort(-reference, kind="stable")[: len(want)]]
    for pos, (doc, _) in enumerate(got):
        neighbours = [want[p] for p in (pos - 1, pos + 1) if 0 <= p < len(want)]
        if all(abs(want[pos] - n) > 1e-3 * want[pos] for n in neighbours):
            assert doc == order[pos], (query, pos)


def test_bm25_ranking_matches_the_formula(scifact):
    retriever, docs, queries, ref = scifact
    doc_ids = [d.id for d in docs]
    avg_len = retriever.branches["bm25"].avg_len
    qs = list(queries.values())
    assert len(qs) >= 30
    results = retriever.search_batch(qs, k=TOP)
    compared = 0
    for q, hits in zip(qs, results):
        got = [(h.id, h.provenance["bm25"].raw) for h in hits]
        assert [h.provenance["bm25"].rank for h in hits] == list(range(1, len(hits) + 1))
        assert_same_top(doc_ids, got, ref.scores(q, K1, B, avg_len), q)
        compared += len(hits)
    assert compared >= 10 * len(qs) * 0.9


def test_bm25_ranking_matches_rank_bm25(scifact):
    retriever, docs, queries, ref = scifact
    doc_ids = [d.id for d in docs]
    corpus = [[str(tok) for tok, tf in d.items() for _ in range(tf)] for d in ref.tf]
    okapi = LuceneIdfBM25(corpus, k1=K1, b=B)
    assert okapi.avgdl == pytest.approx(retriever.branches["bm25"].avg_len)
    for q in list(queries.values())[:15]:
        expected = okapi.get_scores([str(t) for t in set(ref.query_tokens(q))])
        got = [(h.id, h.provenance["bm25"].raw) for h in retriever.search(q, k=TOP)]
        assert_same_top(doc_ids, got, expected, q)


def test_other_k1_and_b_also_match(tmp_path):
    """A second setting, so the reference is not right by luck of the defaults."""
    docs, queries, _ = load_beir_slice("scifact", 150)
    k1, b = 2.0, 0.3
    cfg = RetrieverConfig.validate_data(
        {
            "store": {"kind": "edge", "path": str(tmp_path / "index")},
            "branches": [{"kind": "bm25", "k1": k1, "b": b}],
            "runtime": {"show_progress": False},
        }
    )
    with HybridRetriever(cfg) as retriever:
        retriever.add_documents(docs)
        ref = Reference([d.text for d in docs])
        avg_len = retriever.branches["bm25"].avg_len
        assert avg_len == pytest.approx(ref.lengths.mean())
        for q in list(queries.values())[:8] + ["protein folding in yeast cells", "cancer risk of smoking"]:
            got = [(h.id, h.provenance["bm25"].raw) for h in retriever.search(q, k=TOP)]
            assert_same_top([d.id for d in docs], got, ref.scores(q, k1, b, avg_len), q)
