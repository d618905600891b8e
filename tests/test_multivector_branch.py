"""The multivector branch end to end: three modes on Qdrant Edge and qdrant-client :memory:,
pooling, float16 + int8 storage, the shared MiniLM forward pass, reopen checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybrid_retriever import Document, HybridRetriever, RetrieverConfig
from hybrid_retriever.errors import ConfigError, IndexMismatchError, InvalidInputError
from hybrid_retriever.retriever import point_id
from multivector_fixtures import DOCS, QUERIES, maxsim, stanford_reference, write_stanford


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return write_stanford(tmp_path_factory.mktemp("tiny-colbert"), seed=2)


def _retriever(tmp_path: Path, store: str, branches: list[dict[str, Any]], tag: str = "") -> HybridRetriever:
    store_cfg = (
        {"kind": "edge", "path": str(tmp_path / f"edge{tag}")}
        if store == "edge"
        else {"kind": "qdrant", "location": ":memory:", "collection": f"c{tag}"}
    )
    cfg = RetrieverConfig.model_validate({"store": store_cfg, "branches": branches, "runtime": {"show_progress": False}})
    return HybridRetriever(cfg)


def _docs() -> list[Document]:
    return [Document(text=t, id=i) for i, t in DOCS.items()]


def _stored_multivectors(r: HybridRetriever) -> dict[str, np.ndarray]:
    """The multivector each document's point holds, by point id."""
    points = r.store.retrieve([point_id(d) for d in DOCS], with_vectors=["multivector"])
    return {p.point_id: p.vectors["multivector"] for p in points}


def _hits_and_reference(r: HybridRetriever, tiny, stored: dict[str, np.ndarray]):
    """Per query: the branch's hits, and the reference MaxSim of the query against every stored multivector."""
    for q in QUERIES:
        qv = stanford_reference(tiny, q, True)
        yield r.search_branches([q])[0]["multivector"].hits, {p: maxsim(qv, v) for p, v in stored.items()}


@pytest.mark.parametrize("mode", ["full", "rescorer", "muvera"])
def test_modes_match_reference_maxsim_on_both_stores(tmp_path: Path, tiny, mode: str) -> None:
    mv = {"kind": "multivector", "model": str(tiny.path), "mode": mode, "depth": 5, "muvera": {"candidates": 6},
          "pool_factor": 1, "quantization": None}  # exact storage: scores must equal the reference
    branches = [{"kind": "bm25", "depth": 3}, mv]
    rankings = {}
    for store in ("edge", "memory"):
        r = _retriever(tmp_path, store, branches, tag=mode)
        r.add_documents(_docs())
        if store == "edge":
            r.optimize()
        results = r.search_branches(QUERIES)
        for q, res in zip(QUERIES, results):
            hits = res["multivector"].hits
            assert hits, f"{mode}/{store}: no multivector hits for {q!r}"
            ref = {point_id(d): maxsim(stanford_reference(tiny, q, True), stanford_reference(tiny, t, False)) for d, t in DOCS.items()}
            for h in hits:
                assert h.score == pytest.approx(ref[h.point_id], abs=1e-3)
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
            if mode == "rescorer":
                # Exactly the BM25 candidates, all of them re-scored.
                assert {h.point_id for h in hits} == {h.point_id for h in res["bm25"].hits}
            elif mode == "full":
                best = sorted(ref, key=lambda p: -ref[p])[:5]
                assert [h.point_id for h in hits] == best
        hits = r.search(QUERIES[0], k=3)
        assert all("multivector" in h.provenance and h.provenance["multivector"].raw is not None for h in hits)
        rankings[store] = [[h.point_id for h in res["multivector"].hits] for res in results]
        r.close()
    assert rankings["edge"] == rankings["memory"]


def test_pooling_float16_and_int8_quantization(tmp_path: Path, tiny) -> None:
    mv = {"kind": "multivector", "model": str(tiny.path), "mode": "full", "pool_factor": 2, "storage": "float16", "quantization": "int8"}
    r = _retriever(tmp_path, "edge", [mv], tag="q")
    r.add_documents(_docs())
    stored = _stored_multivectors(r)
    for d, t in DOCS.items():
        n = len(stanford_reference(tiny, t, False))
        assert stored[point_id(d)].shape == (1 + (n - 1) // 2, 16)
        # float16 storage: the stored numbers are exactly representable in float16.
        np.testing.assert_array_equal(stored[point_id(d)], stored[point_id(d)].astype(np.float16).astype(np.float32))
    for hits, ref in _hits_and_reference(r, tiny, stored):
        # Quantized search, rescored with the original (float16) vectors: exact scores.
        for h in hits:
            assert h.score == pytest.approx(ref[h.point_id], abs=2e-3)
        assert hits[0].point_id == max(ref, key=ref.get)
    r.close()


def test_default_storage_pools_and_scores_maxsim_on_int8(tmp_path: Path, tiny) -> None:
    """The defaults (pool factor 2, int8 without re-scoring) score MaxSim of the pooled vectors.

    Segments this small get no int8 copy from Qdrant (see the next test), so scores are exact.
    """
    from hybrid_retriever.config import MultiVectorBranchConfig

    defaults = MultiVectorBranchConfig()
    assert (defaults.pool_factor, defaults.quantization, defaults.quantization_rescore) == (2, "int8", False)
    for store in ("edge", "memory"):
        r = _retriever(tmp_path, store, [{"kind": "bm25", "depth": 6}, {"kind": "multivector", "model": str(tiny.path)}], tag="def")
        r.add_documents(_docs())
        stored = _stored_multivectors(r)
        for d, t in DOCS.items():
            assert len(stored[point_id(d)]) == 1 + (len(stanford_reference(tiny, t, False)) - 1) // 2
        for hits, ref in _hits_and_reference(r, tiny, stored):
            for h in hits:
                assert h.score == pytest.approx(ref[h.point_id], abs=1e-3)
            assert hits[0].point_id == max((h.point_id for h in hits), key=ref.get)
        r.close()


def test_quantization_rescore_switch_reaches_qdrant(tmp_path: Path, tiny) -> None:
    """int8 MaxSim without re-scoring is approximate; with re-scoring it is exact.

    Qdrant builds the int8 copy only for segments above its indexing threshold (~10 MB of
    vectors), hence 4,000 documents × 48 tokens of random unit vectors.
    """
    rng = np.random.default_rng(0)
    mats = rng.standard_normal((4000, 48, 16)).astype(np.float32)
    mats /= np.linalg.norm(mats, axis=2, keepdims=True)
    texts = list(DOCS.values())
    docs = [Document(text=texts[i % len(texts)], id=str(i)) for i in range(len(mats))]
    index = {point_id(d.id): i for i, d in enumerate(docs)}
    worst = {}
    for rescore in (False, True):
        mv = {"kind": "multivector", "model": str(tiny.path), "pool_factor": 1, "quantization_rescore": rescore}
        r = _retriever(tmp_path, "edge", [{"kind": "bm25", "depth": 20}, mv], tag=f"rescore{rescore}")
        r.add_documents(docs, vectors={"multivector": list(mats)})
        r.optimize()
        errors = []
        for q in QUERIES[:3]:
            qv = stanford_reference(tiny, q, True)
            hits = r.search_branches([q])[0]["multivector"].hits
            assert len(hits) >= 20
            errors += [abs(h.score - maxsim(qv, mats[index[h.point_id]])) / len(qv) for h in hits]
        worst[rescore] = max(errors)
        r.close()
    assert worst[True] < 1e-4
    assert 1e-4 < worst[False] < 0.02  # quantized, to within int8 precision per query token


def test_dimension_mismatch_on_reopen(tmp_path: Path, tiny) -> None:
    mv = {"kind": "multivector", "model": str(tiny.path), "mode": "full"}
    r = _retriever(tmp_path, "edge", [mv], tag="dim")
    r.add_documents(_docs()[:2])
    r.close()
    other = write_stanford(tmp_path / "other", seed=9, dim=8)
    with pytest.raises(IndexMismatchError, match="weights_sha256"):  # another model: found before it loads
        _retriever(tmp_path, "edge", [{**mv, "model": str(other.path)}], tag="dim")
    r = HybridRetriever.open(str(tmp_path / "edgedim"))  # the stored configuration reopens it
    assert r.count() == 2
    r.close()


def test_rescorer_alone_and_bad_vectors_are_errors(tmp_path: Path, tiny) -> None:
    with pytest.raises(ConfigError, match="rescorer"):
        _retriever(tmp_path, "memory", [{"kind": "multivector", "model": str(tiny.path)}], tag="alone")
    with pytest.raises(ConfigError, match="format 'stanford' needs a model"):
        RetrieverConfig.validate_data({"branches": [{"kind": "multivector", "format": "stanford"}]})
    r = _retriever(tmp_path, "memory", [{"kind": "multivector", "model": str(tiny.path), "mode": "full"}], tag="bad")
    with pytest.raises(InvalidInputError, match=r"\(tokens, 16\)"):
        r.add_documents(_docs()[:1], vectors={"multivector": [np.ones((3, 8), dtype=np.float32)]})
    r.close()


def test_shared_forward_pass_with_dense(tmp_path: Path, dense_branch) -> None:
    from hybrid_retriever.branches import DenseBranch, MultiVectorBranch
    from hybrid_retriever.branches.late_interaction import load_encoder
    from hybrid_retriever.config import DenseBranchConfig, MultiVectorBranchConfig

    cfg = RetrieverConfig.model_validate({
        "store": {"kind": "qdrant", "location": ":memory:", "collection": "shared"},
        "branches": [{"kind": "bm25"}, {"kind": "dense"}, {"kind": "multivector", "pool_factor": 1}],
        "runtime": {"show_progress": False},
    })
    from hybrid_retriever.branches import build_branch

    dense, mv = DenseBranch(DenseBranchConfig()), MultiVectorBranch(MultiVectorBranchConfig(pool_factor=1))

    r = HybridRetriever(cfg, branches=[build_branch(cfg.branches[0]), dense, mv])
    assert mv.shared is not None and dense.shared_forward is mv.shared
    texts = ["Late interaction scores every query token.", "Qdrant stores multivectors!", "Cats sleep."]
    r.add_texts(texts, ids=["a", "b", "c"])
    # One MiniLM pass fed both branches; the other encoded the identity probe at creation (models/probe.py).
    assert mv.shared.forward_passes == 2
    stored = {p.point_id: p.vectors for p in r.store.retrieve([point_id(i) for i in "abc"], with_vectors=True)}
    alone_dense = dense_branch.encode_documents(texts)  # the session's unshared dense branch
    alone_tokens = load_encoder(
        "sentence-transformers/all-MiniLM-L6-v2", format="tokens", backbone=dense_branch.model[0].auto_model
    ).encode(texts, is_query=False)
    for i, key in enumerate("abc"):
        np.testing.assert_allclose(stored[point_id(key)]["dense"], alone_dense[i], atol=1e-5)
        np.testing.assert_allclose(stored[point_id(key)]["multivector"], alone_tokens[i], atol=1e-4)
    hits = r.search("which model scores query tokens late?", k=2)
    assert mv.shared.forward_passes == 3 and hits[0].id == "a"  # and one for the query
    assert set(hits[0].provenance) == {"bm25", "dense", "multivector"}
    r.close()
