"""Store keys (``Store.search_ranked``): the ids a search keeps until its final top k.

On Qdrant Edge a key is the point's UUID as an integer; keys must give back the text ids,
order as the text ids do (ties are settled in point-id order), and be taken back wherever the
store takes point ids (score completion, retrieval). On qdrant-client they are the text ids.
"""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_retriever.branches import VectorSpec
from hybrid_retriever.config import QdrantStoreConfig
from hybrid_retriever.ids import point_id
from hybrid_retriever.stores import EdgeStore, QdrantStore, SearchRequest, StoredPoint

#: Equal scores for many points, so the order of ties is the id order.
VALUES = {f"doc-{i}": float(i % 3) for i in range(40)}


def store(kind: str, tmp_path):
    s = EdgeStore(tmp_path / "keys") if kind == "edge" else QdrantStore(QdrantStoreConfig(location=":memory:"))
    s.create([VectorSpec("v", "dense", size=1, distance="Dot")], {})
    s.upsert([StoredPoint(point_id(d), {"v": np.array([x], dtype=np.float32)}, {"doc_id": d}) for d, x in VALUES.items()])
    return s


@pytest.mark.parametrize("kind", ["edge", "memory"])
def test_keys_give_the_text_ids_and_their_order(kind, tmp_path):
    s = store(kind, tmp_path)
    try:
        request = SearchRequest(vector_name="v", vector=np.array([1.0], dtype=np.float32), limit=len(VALUES))
        (ranked,) = s.search_ranked([request])
        (answer,) = s.search_batch([request])
        texts = s.key_texts(ranked.keys)
        assert sorted(zip(texts, ranked.scores)) == sorted(answer)
        assert set(texts) == {point_id(d) for d in VALUES}
        if kind == "edge":
            assert all(isinstance(k, int) for k in ranked.keys)
        # Keys sort as their texts do: the tie order of a branch list is the same either way.
        by_key = [texts[i] for i in sorted(range(len(texts)), key=lambda i: ranked.keys[i])]
        assert by_key == sorted(texts)
    finally:
        s.close()


@pytest.mark.parametrize("kind", ["edge", "memory"])
def test_keys_are_taken_back_as_point_ids(kind, tmp_path):
    s = store(kind, tmp_path)
    try:
        query = np.array([1.0], dtype=np.float32)
        (ranked,) = s.search_ranked([SearchRequest(vector_name="v", vector=query, limit=5)])
        some = sorted(ranked.keys[1:4])
        texts = s.key_texts(some)
        # Completion: the exact scores of some points, asked by key or by text, agree.
        by_key, by_text = s.search_ranked([
            SearchRequest(vector_name="v", vector=query, limit=3, point_ids=some, exact=True),
            SearchRequest(vector_name="v", vector=query, limit=3, point_ids=texts, exact=True),
        ])
        assert dict(zip(s.key_texts(by_key.keys), by_key.scores)) == dict(zip(s.key_texts(by_text.keys), by_text.scores))
        assert set(s.key_texts(by_key.keys)) == set(texts)
        assert {p.point_id for p in s.retrieve(texts)} == set(texts)
    finally:
        s.close()


def test_edge_keys_survive_a_cleared_memo(tmp_path):
    """A key whose Edge id object was forgotten (the memo is bounded) still names its point."""
    s = store("edge", tmp_path)
    try:
        query = np.array([1.0], dtype=np.float32)
        (ranked,) = s.search_ranked([SearchRequest(vector_name="v", vector=query, limit=4)])
        s._forget_ids()
        texts = s.key_texts(ranked.keys)
        (again,) = s.search_ranked([SearchRequest(vector_name="v", vector=query, limit=4, point_ids=ranked.keys, exact=True)])
        assert sorted(again.keys) == sorted(ranked.keys)
        assert {p.point_id for p in s.retrieve(texts)} == set(texts)
    finally:
        s.close()


def test_a_branch_answer_orders_ties_by_key():
    from hybrid_retriever.retriever import _tie_sorted
    from hybrid_retriever.stores.base import Ranked

    assert _tie_sorted(Ranked([9, 3, 5, 1], [4.0, 2.0, 2.0, 1.0])) == ([9, 3, 5, 1], [4.0, 2.0, 2.0, 1.0])
    assert _tie_sorted(Ranked([9, 5, 3, 1], [4.0, 2.0, 2.0, 1.0])) == ([9, 3, 5, 1], [4.0, 2.0, 2.0, 1.0])
    assert _tie_sorted(Ranked([2, 1], [1.0, 3.0])) == ([1, 2], [3.0, 1.0])  # not best first: sorted
    assert _tie_sorted(Ranked([], [])) == ([], [])
