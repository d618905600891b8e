"""PRF building blocks against hand-computed cases: Rocchio, Average, RM3, sparse Rocchio, damping, guard."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hybrid_retriever.config import PRFConfig, PRFGuardConfig, RetrieverConfig
from hybrid_retriever.errors import ConfigError, InvalidInputError
from hybrid_retriever.prf import dense, guard, sparse
from hybrid_retriever.types import BranchResult, ScoredId, SparseVector


def sv(d: dict[int, float]) -> SparseVector:
    return SparseVector(indices=list(d), values=list(d.values()))


def as_map(v: SparseVector) -> dict[int, float]:
    return dict(zip(v.indices, v.values))


# ------------------------------------------------------------------------------ dense


def test_rocchio_hand_computed() -> None:
    q = np.array([1.0, 0.0, 0.0])
    fb = [np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])]
    # 1·q + 0.5·mean(fb) = [1, 0.25, 0.25]; |.| = sqrt(1.125)
    got = dense.rocchio(q, fb, alpha=1.0, beta=0.5)
    n = math.sqrt(1.125)
    assert got == pytest.approx([1 / n, 0.25 / n, 0.25 / n], abs=1e-6)
    assert float(np.linalg.norm(got)) == pytest.approx(1.0, abs=1e-6)


def test_rocchio_with_negatives() -> None:
    q = np.array([1.0, 0.0, 0.0])
    fb = [np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])]
    # [1, .25, .25] - 0.5·[1, 0, 0] = [.5, .25, .25]; |.| = sqrt(.375)
    got = dense.rocchio(q, fb, [np.array([1.0, 0.0, 0.0])], alpha=1.0, beta=0.5, gamma=0.5)
    n = math.sqrt(0.375)
    assert got == pytest.approx([0.5 / n, 0.25 / n, 0.25 / n], abs=1e-6)


def test_rocchio_weighted_mean_and_no_feedback() -> None:
    q = np.array([2.0, 0.0])
    # weights 3:1 -> centroid [.75, .25]; 0·q + 1·centroid, normalised
    got = dense.rocchio(q, [np.array([1.0, 0.0]), np.array([0.0, 1.0])], alpha=0.0, beta=1.0, weights=[3, 1])
    n = math.sqrt(0.75**2 + 0.25**2)
    assert got == pytest.approx([0.75 / n, 0.25 / n], abs=1e-6)
    assert dense.rocchio(q, []) == pytest.approx([1.0, 0.0])


def test_average_hand_computed() -> None:
    q = np.array([1.0, 0.0])
    fb = [np.array([0.0, 1.0]), np.array([0.0, 1.0])]
    assert dense.average(q, fb, normalize=False) == pytest.approx([1 / 3, 2 / 3], abs=1e-6)
    n = math.sqrt(1 / 9 + 4 / 9)
    assert dense.average(q, fb) == pytest.approx([1 / 3 / n, 2 / 3 / n], abs=1e-6)


def test_dense_bad_input() -> None:
    q = np.array([1.0, 0.0])
    with pytest.raises(InvalidInputError, match="dimension"):
        dense.rocchio(q, [np.array([1.0, 0.0, 0.0])])
    with pytest.raises(InvalidInputError, match="NaN"):
        dense.rocchio(q, [np.array([np.nan, 0.0])])
    with pytest.raises(InvalidInputError, match="beta"):
        dense.rocchio(q, [np.array([0.0, 1.0])], beta=-1.0)
    with pytest.raises(InvalidInputError, match="zero"):
        dense.rocchio(q, [], [np.array([1.0, 0.0])], alpha=1.0, gamma=1.0)


def test_dense_damp() -> None:
    q = np.array([1.0, 0.0], dtype=np.float32)
    r = np.array([0.0, 1.0], dtype=np.float32)
    assert dense.damp(q, r, 0.0) == pytest.approx([1.0, 0.0])
    assert dense.damp(q, r, 1.0) == pytest.approx([0.0, 1.0])
    half = math.sqrt(0.5)
    assert dense.damp(q, r, 0.5) == pytest.approx([half, half], abs=1e-6)


# ----------------------------------------------------------------------------- sparse

Q = sv({1: 1.0, 2: 1.0})
D1 = sv({1: 2.0, 3: 2.0})  # P(w|d1): 1 -> .5, 3 -> .5
D2 = sv({3: 1.0, 4: 3.0})  # P(w|d2): 3 -> .25, 4 -> .75


def test_relevance_model_hand_computed() -> None:
    assert sparse.relevance_model([D1, D2]) == pytest.approx({1: 0.25, 3: 0.375, 4: 0.375})
    assert sparse.relevance_model([D1, D2], [3, 1]) == pytest.approx({1: 0.375, 3: 0.4375, 4: 0.1875})


def test_rm3_uniform_hand_computed() -> None:
    # R = {1: .25, 3: .375, 4: .375}; top 2 = {3, 4} (tie by id) -> E = {3: .5, 4: .5}
    # q' = |q|·(λ·q/|q| + (1-λ)·E) with |q| = 2, λ = .6 -> {1: .6, 2: .6, 3: .4, 4: .4}
    got = as_map(sparse.rm3(Q, [D1, D2], lam=0.6, n_terms=2))
    assert got == pytest.approx({1: 0.6, 2: 0.6, 3: 0.4, 4: 0.4})


def test_rm3_score_weighted_hand_computed() -> None:
    # R = {1: .375, 3: .4375, 4: .1875}; top 2 = {3, 1}; E = {3: .4375/.8125, 1: .375/.8125}
    got = as_map(sparse.rm3(Q, [D1, D2], doc_weights=[3.0, 1.0], lam=0.5, n_terms=2))
    e1, e3 = 0.375 / 0.8125, 0.4375 / 0.8125
    assert got == pytest.approx({1: 0.5 + 0.5 * 2 * e1, 2: 0.5, 3: 0.5 * 2 * e3})


def test_rm3_idf_aware_selection() -> None:
    # selection by P(w|R)·idf: 1 -> .025, 3 -> .375, 4 -> .75: the one term kept is 4
    got = as_map(sparse.rm3(Q, [D1, D2], lam=0.5, n_terms=1, idf={1: 0.1, 3: 1.0, 4: 2.0}))
    assert got == pytest.approx({1: 0.5, 2: 0.5, 4: 1.0})


def test_rm3_edges() -> None:
    assert as_map(sparse.rm3(Q, [D1, D2], lam=1.0, n_terms=5)) == {1: 1.0, 2: 1.0}
    assert as_map(sparse.rm3(Q, [], lam=0.5)) == {1: 1.0, 2: 1.0}
    # λ = 0: only the expansion, scaled to the query's mass
    assert as_map(sparse.rm3(Q, [D1], lam=0.0, n_terms=1)) == pytest.approx({1: 2.0})
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(InvalidInputError, match="lambda"):
            sparse.rm3(Q, [D1], lam=bad)
    with pytest.raises(InvalidInputError, match="expansion terms"):
        sparse.rm3(Q, [D1], n_terms=0)
    with pytest.raises(InvalidInputError, match="weights"):
        sparse.rm3(Q, [D1, D2], doc_weights=[1.0])


def test_sparse_rocchio_hand_computed() -> None:
    # centroid {2: 3, 3: .5}; top 1 -> {2: 3}; 1·q + .5·{2: 3}
    got = as_map(sparse.rocchio(sv({1: 1.0}), [sv({2: 2.0, 3: 1.0}), sv({2: 4.0})], alpha=1.0, beta=0.5, n_terms=1))
    assert got == pytest.approx({1: 1.0, 2: 1.5})


def test_sparse_damp() -> None:
    got = as_map(sparse.damp(sv({1: 1.0}), sv({1: 0.5, 2: 1.0}), 0.5))
    assert got == pytest.approx({1: 0.75, 2: 0.5})


# ------------------------------------------------------------------------------ guard


def br(name: str, ids: list[str]) -> BranchResult:
    return BranchResult(branch=name, hits=[ScoredId(i, 1.0 / (n + 1), n + 1) for n, i in enumerate(ids)])


def test_agreement_and_guard_decisions() -> None:
    per = {"a": br("a", ["x", "y", "z"]), "b": br("b", ["y", "z", "w"])}
    assert guard.agreement(per, 3) == pytest.approx(2 / 3)
    assert guard.agreement({"a": per["a"]}, 3) is None
    skip = guard.assess(["x", "y"], per, PRFGuardConfig(agreement_k=3, min_agreement=0.7, max_agreement=None))
    assert skip.strength == 0.0 and skip.feedback == [] and skip.reason.startswith("skipped")
    ramp = guard.assess(["x", "y"], per, PRFGuardConfig(agreement_k=3, min_agreement=0.5, full_agreement=1.0, max_agreement=None))
    assert ramp.strength == pytest.approx((2 / 3 - 0.5) / 0.5)
    full = guard.assess(["x", "y"], per, PRFGuardConfig(agreement_k=3, min_agreement=0.5, full_agreement=0.6, max_agreement=None))
    assert full.strength == 1.0 and full.feedback == ["x", "y"]
    off = guard.assess(["x"], per, PRFGuardConfig(enabled=False, min_agreement=1.0, max_agreement=None))
    assert off.strength == 1.0 and off.signals["agreement"] == pytest.approx(1 / 10 * 2)  # k = 10: overlap 2 / 10


def test_guard_skips_settled_first_stage() -> None:
    """Default guard: branches that already agree (overlap >= max_agreement) get no feedback."""
    per = {"a": br("a", ["x", "y", "z"]), "b": br("b", ["y", "z", "w"])}
    settled = guard.assess(["y"], per, PRFGuardConfig(agreement_k=3, max_agreement=0.6))
    assert settled.strength == 0.0 and "already agree" in settled.reason
    open_ = guard.assess(["y"], per, PRFGuardConfig(agreement_k=3, max_agreement=0.7))
    assert open_.strength == 1.0 and open_.feedback == ["y"]
    # one branch: no agreement signal, feedback applied
    single = guard.assess(["x"], {"a": per["a"]}, PRFGuardConfig(agreement_k=3, max_agreement=0.1))
    assert single.strength == 1.0 and "agreement" not in single.signals


def test_guard_confirmed_feedback_and_empty() -> None:
    per = {"a": br("a", ["x", "y", "z"]), "b": br("b", ["y", "q", "z"])}
    cfg = PRFGuardConfig(consensus_depth=2)
    d = guard.assess(["x", "y", "z"], per, cfg)  # from the fused list: every branch must rank it in its top 2
    assert d.feedback == ["y"]
    d = guard.assess(["x", "y", "z"], per, cfg, own="a")  # from a's list: b must confirm
    assert d.feedback == ["y"]
    d = guard.assess(["x"], per, PRFGuardConfig(consensus_depth=2, min_feedback=1))
    assert d.strength == 0.0 and "usable" in d.reason
    d = guard.assess([], per, PRFGuardConfig())
    assert d.strength == 0.0 and "empty" in d.reason


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "prf, match",
    [
        ({"beta": 1.5}, "prf.beta"),
        ({"beta": -0.1}, "prf.beta"),
        ({"rm3_lambda": 1.2}, "prf.rm3_lambda"),
        ({"rm3_lambda": -0.5}, "prf.rm3_lambda"),
        ({"alpha": 0.0, "beta": 0.0}, "both 0"),
        ({"gamma": 0.5}, "fb_negatives"),
        ({"fb_docs": 0}, "prf.fb_docs"),
        ({"interpolate": "sideways"}, "prf.interpolate"),
        ({"enabled": True, "branches": ["colbert"]}, "unknown branch"),
        ({"enabled": True, "branches": []}, "empty"),
        ({"guard": {"min_agreement": 0.5, "full_agreement": 0.2, "max_agreement": None}}, "full_agreement"),
        ({"guard": {"min_agreement": 0.5}}, "max_agreement"),
        ({"guard": {"max_agreement": 1.5}}, "prf.guard.max_agreement"),
    ],
)
def test_bad_prf_config(prf: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RetrieverConfig.validate_data({"prf": prf})


def test_prf_config_round_trip_and_server_side() -> None:
    cfg = RetrieverConfig.validate_data({"prf": {"enabled": True, "interpolate": "after", "branches": ["bm25", "dense"]}})
    assert RetrieverConfig.from_yaml(cfg.to_yaml()) == cfg
    assert RetrieverConfig().prf == PRFConfig()
    with pytest.raises(ConfigError, match="server_side"):
        RetrieverConfig.validate_data(
            {"prf": {"enabled": True}, "fusion": {"method": "rrf", "server_side": True}}
        )
