"""Fusion functions: hand-computed cases and hypothesis properties.

Every expected number here is written out by hand (or, for DBSF, is what Qdrant's own
``Fusion.DBSF`` returned for the same lists; see ``tests/test_stores.py`` for the live
check), never computed with the code under test.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybrid_retriever.fusion import BranchList, fit_normalizer, interpolate, weighted_rrf
from hybrid_retriever.fusion.normalize import rank_score

NORMALIZATIONS = ["minmax", "zscore", "dbsf", "rank"]
METHODS = ["rrf"] + NORMALIZATIONS  # "rrf" or an interpolation normalisation


def scores_of(fused):
    return {f.id: f.score for f in fused}


def order_of(fused):
    return [f.id for f in fused]


def fuse(method, lists, weights, floor_value=None):
    if method == "rrf":
        return weighted_rrf(lists, weights, k=60)
    return interpolate(lists, weights, normalization=method, floor_value=floor_value)


# --------------------------------------------------------------------------- weighted RRF


def test_rrf_hand_computed_with_weights_and_one_based_ranks():
    lists = {"a": BranchList(["x", "y", "z"], [9.0, 8.0, 7.0]), "b": BranchList(["z", "w"], [0.9, 0.1])}
    fused = weighted_rrf(lists, {"a": 0.7, "b": 0.3}, k=10)
    expected = {
        "x": 0.7 / 11,
        "y": 0.7 / 12,
        "z": 0.7 / 13 + 0.3 / 11,
        "w": 0.3 / 12,
    }
    assert order_of(fused) == ["z", "x", "y", "w"]
    for f in fused:
        assert f.score == pytest.approx(expected[f.id], rel=1e-12)
    z = fused[0]
    assert z.normalized == {"a": pytest.approx(1 / 13), "b": pytest.approx(1 / 11)}
    w = fused[-1]
    assert w.normalized["a"] is None and w.normalized["b"] == pytest.approx(1 / 12)
    assert all(not flag for f in fused for flag in f.floored.values())


def test_rrf_k_changes_the_order_as_the_formula_says():
    # x: rank 1 in a only; y: rank 3 in a and rank 3 in b.
    lists = {"a": BranchList(["x", "p", "y"], [3.0, 2.0, 1.0]), "b": BranchList(["q", "r", "y"], [3.0, 2.0, 1.0])}
    w = {"a": 1.0, "b": 1.0}
    # k = 1: x = 1/2 = 0.5 > y = 2/4 = 0.5? equal -> tie broken by best rank (x has rank 1).
    small = weighted_rrf(lists, w, k=1)
    assert scores_of(small)["x"] == pytest.approx(0.5) and scores_of(small)["y"] == pytest.approx(0.5)
    assert order_of(small).index("x") < order_of(small).index("y")
    # k = 60: y = 2/63 > x = 1/61.
    big = weighted_rrf(lists, w, k=60)
    assert scores_of(big)["y"] == pytest.approx(2 / 63) and scores_of(big)["x"] == pytest.approx(1 / 61)
    assert order_of(big)[0] == "y"


def test_rrf_ties_broken_by_best_rank_then_id():
    # t (rank 2 in a) and u (rank 1 in b) tie at 0.5: u wins on best rank although 't' < 'u'.
    lists = {"a": BranchList(["s", "t"], [2.0, 1.0]), "b": BranchList(["u"], [5.0])}
    fused = weighted_rrf(lists, {"a": 1.5, "b": 1.0}, k=1)
    assert [(f.id, f.score) for f in fused] == [("s", 0.75), ("u", 0.5), ("t", 0.5)]
    # Equal score and equal best rank: by id.
    sym = weighted_rrf({"a": BranchList(["y", "x"], [2.0, 1.0]), "b": BranchList(["x", "y"], [2.0, 1.0])}, {"a": 1, "b": 1})
    assert order_of(sym) == ["x", "y"]


def test_rrf_rejects_non_positive_k():
    with pytest.raises(ValueError, match="k must be positive"):
        weighted_rrf({"a": BranchList(["x"], [1.0])}, {"a": 1.0}, k=0)


# ------------------------------------------------------------------ interpolation (hand)

# a returns x, y, z; b returns y, w, x. Completion: a's exact score of w is 8, b's of z is 0.3.
A = BranchList(["x", "y", "z"], [10.0, 6.0, 2.0], extra={"w": 8.0})
B = BranchList(["y", "w", "x"], [0.9, 0.5, 0.1], extra={"z": 0.3})
W = {"a": 0.6, "b": 0.4}


def test_minmax_exact_completion():
    # a: x 1, y 0.5, z 0, w (8-2)/8 = 0.75.  b: y 1, w 0.5, x 0, z (0.3-0.1)/0.8 = 0.25.
    fused = interpolate({"a": A, "b": B}, W, "minmax")
    expected = {"x": 0.6, "y": 0.6 * 0.5 + 0.4, "z": 0.4 * 0.25, "w": 0.6 * 0.75 + 0.4 * 0.5}
    assert order_of(fused) == ["y", "w", "x", "z"]
    for f in fused:
        assert f.score == pytest.approx(expected[f.id])
        assert not any(f.floored.values())
    w = next(f for f in fused if f.id == "w")
    assert w.normalized == {"a": pytest.approx(0.75), "b": pytest.approx(0.5)}


def test_minmax_floor_value_given():
    lists = {"a": BranchList(A.ids, A.scores), "b": BranchList(B.ids, B.scores)}
    fused = interpolate(lists, W, "minmax", floor_value=0.2)
    expected = {"x": 0.6, "y": 0.7, "z": 0.4 * 0.2, "w": 0.6 * 0.2 + 0.4 * 0.5}
    assert order_of(fused) == ["y", "x", "w", "z"]
    for f in fused:
        assert f.score == pytest.approx(expected[f.id])
    byid = {f.id: f for f in fused}
    assert byid["w"].floored == {"a": True, "b": False} and byid["w"].normalized["a"] == 0.2
    assert byid["z"].floored == {"a": False, "b": True} and byid["z"].normalized["b"] == 0.2


def test_zscore_floor_is_the_branch_lowest_normalised_score():
    # a: [3, 1] -> mean 2, population std 1 -> +1, -1.
    # b: [0.8, 0.6, 0.4] -> mean 0.6, std sqrt(0.08/3) -> ±0.2/std, 0.
    lists = {"a": BranchList(["x", "y"], [3.0, 1.0]), "b": BranchList(["z", "x", "v"], [0.8, 0.6, 0.4])}
    fused = interpolate(lists, {"a": 0.5, "b": 0.5}, "zscore")
    sb = math.sqrt(0.08 / 3)
    zb = 0.2 / sb  # 1.2247...
    expected = {
        "x": 0.5 * 1 + 0.5 * 0.0,
        "y": 0.5 * -1 + 0.5 * -zb,  # b's floor = its lowest normalised score
        "z": 0.5 * -1 + 0.5 * zb,  # a's floor = -1
        "v": 0.5 * -1 + 0.5 * -zb,
    }
    for f in fused:
        assert f.score == pytest.approx(expected[f.id])
    byid = {f.id: f for f in fused}
    assert byid["y"].normalized["b"] == pytest.approx(-zb) and byid["y"].floored["b"]
    assert byid["z"].normalized["a"] == pytest.approx(-1.0) and byid["z"].floored["a"]
    # y and v tie; y has the better best rank (2 in a vs 3 in b).
    assert order_of(fused) == ["x", "z", "y", "v"]


def test_dbsf_uses_mean_plus_minus_three_sample_std_like_qdrant():
    # Qdrant's Fusion.DBSF maps [5, 3, 2, 1] to these (observed on Qdrant Edge and qdrant-client):
    qdrant_values = [0.719578, 0.524398, 0.426807, 0.329217]
    # By hand: mean 2.75, sample variance 8.75 / 3, range mean ± 3σ -> [0, 1].
    mean, sd = 2.75, math.sqrt(8.75 / 3)
    by_hand = [(s - (mean - 3 * sd)) / (6 * sd) for s in (5.0, 3.0, 2.0, 1.0)]
    assert by_hand == pytest.approx(qdrant_values, abs=1e-6)
    fused = interpolate({"a": BranchList(["p", "q", "r", "s"], [5.0, 3.0, 2.0, 1.0])}, {"a": 1.0}, "dbsf")
    assert [f.score for f in fused] == pytest.approx(by_hand, abs=1e-12)
    # No clamping: an outlier above mean + 3σ maps above 1 (Qdrant gives 1.208088 here).
    values = [1.0] + [0.0] * 19
    norm = fit_normalizer("dbsf", values)
    assert norm(1.0) == pytest.approx(1.208088, abs=1e-6)
    assert norm(0.0) == pytest.approx(0.462732, abs=1e-6)


def test_degenerate_lists():
    # One score (or all equal): min-max 1.0, DBSF 0.5 (as Qdrant), z-score 0.0; a completed
    # score below it gets one unit less.
    for method, top, below in [("minmax", 1.0, 0.0), ("dbsf", 0.5, -0.5), ("zscore", 0.0, -1.0)]:
        for scores in ([0.7], [0.1, 0.1, 0.1], [123.456] * 5):
            norm = fit_normalizer(method, scores)
            assert norm(scores[0]) == top, (method, scores)
            assert norm(scores[0] - 0.05) == below, (method, scores)


def test_equal_scores_do_not_blow_up_completed_scores():
    # numpy's mean of [0.1]*3 is off by an ulp; the normaliser must still treat the list
    # as degenerate rather than divide by a std of 1e-17.
    lists = {
        "a": BranchList(["x", "y", "z"], [0.1, 0.1, 0.1], extra={"w": 0.05}),
        "b": BranchList(["w", "x"], [2.0, 1.0], extra={"y": 0.0, "z": 0.0}),
    }
    for method in ("zscore", "dbsf"):
        fused = interpolate(lists, {"a": 0.5, "b": 0.5}, method)
        assert all(abs(f.score) < 10 for f in fused), [(f.id, f.score) for f in fused]


def test_rank_normalisation():
    # n = 4: ranks 1..4 -> 1, 0.75, 0.5, 0.25; a completed score (no rank) -> 0.0.
    lists = {
        "a": BranchList(["p", "q", "r", "s"], [4.0, 3.0, 2.0, 1.0], extra={"t": 3.5}),
        "b": BranchList(["t", "s"], [0.9, 0.2], extra={"p": 0.1, "q": 0.05, "r": 0.0}),
    }
    fused = interpolate(lists, {"a": 0.5, "b": 0.5}, "rank")
    expected = {"p": 0.5, "q": 0.375, "r": 0.25, "s": 0.5 * 0.25 + 0.5 * 0.5, "t": 0.5 * 0.0 + 0.5 * 1.0}
    for f in fused:
        assert f.score == pytest.approx(expected[f.id])
    # p, t tie at 0.5 (both best rank 1: by id); q, s tie at 0.375 (both best rank 2: by id).
    assert order_of(fused) == ["p", "t", "q", "s", "r"]
    # Floor from the branch's lowest normalised score: 1/n.
    floor = interpolate({"a": BranchList(["p", "q", "r", "s"], [4, 3, 2, 1]), "b": BranchList(["t"], [1.0])}, {"a": 1, "b": 1}, "rank")
    assert scores_of(floor)["t"] == pytest.approx(0.25 + 1.0)
    assert scores_of(floor)["p"] == pytest.approx(1.0 + 1.0)
    assert rank_score(1, 4) == 1.0 and rank_score(4, 4) == 0.25


def test_interpolation_ties_broken_by_best_rank_then_id():
    lists = {"a": BranchList(["b2", "a1"], [1.0, 0.0]), "b": BranchList(["a1", "b2"], [1.0, 0.0])}
    fused = interpolate(lists, {"a": 0.5, "b": 0.5}, "minmax")
    assert [f.score for f in fused] == [0.5, 0.5]
    assert order_of(fused) == ["a1", "b2"]  # both have best rank 1: by id
    # q ranks 1 in b, p ranks 2 in a; both fuse to 0.5 -> q first although 'p' < 'q'.
    lists = {"a": BranchList(["o", "p", "r"], [2.0, 1.0, 0.0]), "b": BranchList(["q", "o"], [1.0, 0.0])}
    fused = interpolate(lists, {"a": 1.0, "b": 0.5}, "minmax", floor_value=0.0)
    assert scores_of(fused)["p"] == scores_of(fused)["q"] == 0.5
    assert order_of(fused).index("q") < order_of(fused).index("p")


def test_nan_scores_count_as_missing():
    with_nan = {"a": BranchList(["x", "n", "y"], [3.0, float("nan"), 1.0]), "b": BranchList(["y"], [1.0], extra={"x": float("nan")})}
    without = {"a": BranchList(["x", "y"], [3.0, 1.0]), "b": BranchList(["y"], [1.0])}
    assert with_nan["a"].ranks() == {"x": 1, "y": 2}
    for method in METHODS:
        got, want = fuse(method, with_nan, {"a": 1, "b": 1}), fuse(method, without, {"a": 1, "b": 1})
        assert [(f.id, f.score) for f in got] == [(f.id, f.score) for f in want]


def test_bad_weights_and_normalisation_rejected():
    lists = {"a": BranchList(["x"], [1.0])}
    with pytest.raises(ValueError, match="non-negative"):
        interpolate(lists, {"a": -1.0})
    with pytest.raises(ValueError, match="non-negative"):
        interpolate(lists, {"a": float("nan")})
    with pytest.raises(ValueError, match="unknown normalization"):
        interpolate(lists, {"a": 1.0}, normalization="l2")
    with pytest.raises(ValueError, match="differ in length"):
        BranchList(["x", "y"], [1.0])


# --------------------------------------------------------------------------- properties

IDS = [f"d{i}" for i in range(12)]
#: Scores on a grid of 1/16 (so lists are never ill-conditioned, e.g. two scores 1e-15
#: apart) with frequent exact ties.
score_values = st.one_of(st.integers(-160_000, 160_000).map(lambda i: i / 16), st.sampled_from([0.0, 1.0, 2.0, 0.5]))
#: Any finite float, for the properties that must hold whatever the conditioning.
wild_values = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, 1.0, 0.1]))


@st.composite
def branch_lists(draw, n_branches=(1, 3), nan=False, extras=True, values=score_values):
    names = ["a", "b", "c"][: draw(st.integers(*n_branches))]
    lists: dict[str, BranchList] = {}
    value = st.one_of(values, st.just(float("nan"))) if nan else values
    for name in names:
        ids = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=8))
        scores = sorted(draw(st.lists(value, min_size=len(ids), max_size=len(ids))), key=lambda s: (math.isnan(s), -s if not math.isnan(s) else 0))
        lists[name] = BranchList(ids, scores)
    if extras:
        # Score completion: exact scores for candidates another branch returned.
        for name, bl in lists.items():
            others = sorted({i for n, o in lists.items() if n != name for i in o.ids} - set(bl.ids))
            chosen = draw(st.lists(st.sampled_from(others), unique=True)) if others else []
            bl.extra = {i: draw(value) for i in chosen}
    return lists


weights_st = st.floats(min_value=0.0, max_value=10.0)
PROP = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def returned_ids(lists):
    return {i for bl in lists.values() for i, _ in bl.ranked()}


@PROP
@given(lists=branch_lists(nan=True, values=wild_values), method=st.sampled_from(METHODS), data=st.data())
def test_output_is_union_finite_sorted_deterministic(lists, method, data):
    weights = {n: data.draw(weights_st) for n in lists}
    fused = fuse(method, lists, weights)
    ids = [f.id for f in fused]
    assert len(ids) == len(set(ids))
    if method == "rrf":
        assert set(ids) == returned_ids(lists)
    else:
        # Completed candidates of a branch that returned nothing usable have no scale.
        assert returned_ids(lists) <= set(ids) <= returned_ids(lists) | {i for bl in lists.values() for i in bl.extra}
    assert all(math.isfinite(f.score) for f in fused)
    assert all(v is None or math.isfinite(v) for f in fused for v in f.normalized.values())
    assert [f.score for f in fused] == sorted((f.score for f in fused), reverse=True)
    again = fuse(method, lists, weights)
    assert [(f.id, f.score) for f in again] == [(f.id, f.score) for f in fused]


@PROP
@given(lists=branch_lists(n_branches=(2, 2)), method=st.sampled_from(METHODS), wa=weights_st, wb=weights_st)
def test_branch_order_does_not_matter(lists, method, wa, wb):
    flipped = {"b": lists["b"], "a": lists["a"]}
    one = fuse(method, lists, {"a": wa, "b": wb})
    two = fuse(method, flipped, {"b": wb, "a": wa})
    assert [(f.id, f.score) for f in one] == [(f.id, f.score) for f in two]


@PROP
@given(lists=branch_lists(n_branches=(1, 2), extras=False), method=st.sampled_from(METHODS))
def test_an_empty_branch_changes_nothing(lists, method):
    weights = {n: 1.0 for n in lists}
    base = fuse(method, lists, weights)
    with_empty = fuse(method, {**lists, "e": BranchList([], [])}, {**weights, "e": 1.0})
    assert [(f.id, f.score) for f in with_empty] == [(f.id, f.score) for f in base]
    assert all(f.normalized["e"] is None for f in with_empty)


@pytest.mark.parametrize("method", METHODS)
def test_all_branches_empty(method):
    assert fuse(method, {"a": BranchList([], []), "b": BranchList([], [])}, {"a": 1, "b": 1}) == []
    assert fuse(method, {}, {}) == []


@PROP
@given(lists=branch_lists(n_branches=(2, 3)), method=st.sampled_from(METHODS), data=st.data())
def test_zero_weight_branch_only_adds_its_ids_at_no_score(lists, method, data):
    zero = data.draw(st.sampled_from(sorted(lists)))
    weights = {n: (0.0 if n == zero else data.draw(st.floats(0.1, 10))) for n in lists}
    fused = fuse(method, lists, weights)
    rest = {n: bl for n, bl in lists.items() if n != zero}
    # The zero-weight branch's ids stay candidates, so the others' completed scores of them stay too:
    # with completed "union" they are part of each branch's normaliser fit.
    without = scores_of(fuse(method, rest, {n: weights[n] for n in rest}))
    for f in fused:
        # Floors of the other branches stand in for ids only the zero branch returned.
        if f.id in without:
            assert f.score == pytest.approx(without[f.id], abs=1e-9)


@PROP
@given(
    lists=branch_lists(n_branches=(1, 3)),
    method=st.sampled_from(METHODS),
    data=st.data(),
    power=st.integers(-8, 8),
    factor=st.floats(min_value=1e-3, max_value=1e3),
)
def test_scaling_a_branch_keeps_the_fused_order(lists, method, data, power, factor):
    weights = {n: data.draw(weights_st) for n in lists}
    floor = data.draw(st.one_of(st.none(), st.floats(-1, 1)))
    target = data.draw(st.sampled_from(sorted(lists)))
    base = fuse(method, lists, weights, floor)

    def scaled(c):
        bl = lists[target]
        out = dict(lists)
        out[target] = BranchList(bl.ids, [s * c for s in bl.scores], {i: s * c for i, s in bl.extra.items()})
        return fuse(method, out, weights, floor)

    # A power of two scales exactly in floating point: identical output.
    exact = scaled(2.0**power)
    assert [(f.id, f.score) for f in exact] == [(f.id, f.score) for f in base]
    # Any positive factor: the same fused scores up to rounding, so the same order up to near-ties.
    other = scaled(factor)
    b = scores_of(base)
    assert set(scores_of(other)) == set(b)
    for f in other:
        assert f.score == pytest.approx(b[f.id], rel=1e-9, abs=1e-9)
    ranked = [b[f.id] for f in other]
    assert all(x >= y - 1e-9 * max(1.0, abs(x)) for x, y in zip(ranked, ranked[1:]))


@PROP
@given(lists=branch_lists(n_branches=(1, 2)), method=st.sampled_from(["minmax", "zscore", "dbsf"]), shift=st.floats(-100, 100))
def test_shifting_a_branch_keeps_the_fused_scores(lists, method, shift):
    # min-max, z-score and DBSF are affine-invariant.
    weights = {n: 1.0 for n in lists}
    moved = {n: BranchList(bl.ids, [s + shift for s in bl.scores], {i: s + shift for i, s in bl.extra.items()}) for n, bl in lists.items()}
    base, other = scores_of(fuse(method, lists, weights)), scores_of(fuse(method, moved, weights))
    assert set(base) == set(other)
    for i, s in base.items():
        assert other[i] == pytest.approx(s, rel=1e-6, abs=1e-6)


@PROP
@given(n=st.integers(1, 30), value=wild_values, method=st.sampled_from(["minmax", "zscore", "dbsf"]))
def test_all_tied_scores_normalise_to_one_value(n, value, method):
    norm = fit_normalizer(method, [value] * n)
    assert {norm(value)} == {{"minmax": 1.0, "zscore": 0.0, "dbsf": 0.5}[method]}


@PROP
@given(scores=st.lists(wild_values, min_size=2, max_size=30), method=st.sampled_from(["minmax", "zscore", "dbsf"]))
def test_normalisers_keep_order_and_minmax_spans_unit_interval(scores, method):
    norm = fit_normalizer(method, scores)
    values = [norm(s) for s in sorted(scores)]
    assert all(math.isfinite(v) for v in values)
    assert values == sorted(values)
    if method == "minmax" and min(scores) < max(scores):
        assert values[0] == 0.0 and values[-1] == 1.0
    assert fit_normalizer(method, [float("nan")]) is None
