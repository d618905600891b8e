"""Normalisation of completed scores (``fusion.completed``): hand-computed cases, properties, and the
"code that appears in exactly one document" regression of issue 13.

Expected numbers are written out by hand, never computed with the code under test.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybrid_retriever import Document, HybridRetriever, RetrieverConfig, point_id
from hybrid_retriever.fusion import BranchList, interpolate
from hybrid_retriever.fusion.results import fuse_results
from tests.test_fusion import PROP, branch_lists, returned_ids, weights_st, wild_values

# a returns x (2.0), y (1.0); its exact score of z is 0.0.  b returns z (0.9), y (0.5); its exact score of x is 0.1.
A = BranchList(["x", "y"], [2.0, 1.0], extra={"z": 0.0})
B = BranchList(["z", "y"], [0.9, 0.5], extra={"x": 0.1})
W = {"a": 0.6, "b": 0.4}


def scores(fused):
    return {f.id: f.score for f in fused}


def test_completed_raw_clamp_union_by_hand():
    # raw:   a: x 1, y 0, z (0-1)/1 = -1.      b: z 1, y 0, x (0.1-0.5)/0.4 = -1.
    # clamp: a: z max(-1, 0) = 0.               b: x max(-1, 0) = 0.
    # union: a fitted on [2, 1, 0]: x 1, y 0.5, z 0.   b fitted on [0.9, 0.5, 0.1]: z 1, y 0.5, x 0.
    expected = {
        "raw": {"x": 0.6 - 0.4, "y": 0.0, "z": -0.6 + 0.4},
        "clamp": {"x": 0.6, "y": 0.0, "z": 0.4},
        "union": {"x": 0.6, "y": 0.6 * 0.5 + 0.4 * 0.5, "z": 0.4},
    }
    for completed, want in expected.items():
        got = scores(interpolate({"a": A, "b": B}, W, "minmax", completed=completed))
        assert got == pytest.approx(want), completed
    # z-score over the union: a [2, 1, 0] -> mean 1, population std sqrt(2/3); b [0.9, 0.5, 0.1] -> mean 0.5,
    # std 0.4·sqrt(2/3).  x: 0.6·(1/s) + 0.4·(-1/s), s = sqrt(2/3).
    s = math.sqrt(2 / 3)
    got = scores(interpolate({"a": A, "b": B}, W, "zscore", completed="union"))
    assert got == pytest.approx({"x": 0.2 / s, "y": 0.0, "z": -0.2 / s})


def test_clamp_keeps_a_completed_score_above_the_list_minimum():
    # A completed score above the returned minimum (an approximate search missed it) keeps its value.
    a = BranchList(["x", "y", "z"], [10.0, 6.0, 2.0], extra={"w": 8.0})
    fused = interpolate({"a": a}, {"a": 1.0}, "minmax", completed="clamp")
    assert scores(fused)["w"] == pytest.approx(0.75)


def test_a_one_document_list_is_not_lifted_by_clamp():
    # BM25 returned one document (nothing else shares a term): the others' exact BM25 score 0 maps
    # one unit below the degenerate 1.0, i.e. 0, not up to the list's own 1.0.
    a = BranchList(["code"], [9.5], extra={"d1": 0.0, "d2": 0.0})
    b = BranchList(["d1", "d2"], [0.3, 0.2], extra={"code": 0.01})
    fused = interpolate({"a": a, "b": b}, {"a": 0.5, "b": 0.5}, "minmax", completed="clamp")
    assert scores(fused) == pytest.approx({"code": 0.5, "d1": 0.5, "d2": 0.0})


def test_unknown_completed_is_an_error():
    with pytest.raises(ValueError, match="clamp"):
        interpolate({"a": A}, {"a": 1.0}, "minmax", completed="nope")


@PROP
@given(lists=branch_lists(nan=True, values=wild_values), completed=st.sampled_from(["clamp", "union"]), data=st.data())
def test_minmax_clamp_and_union_stay_non_negative_and_finite(lists, completed, data):
    weights = {n: data.draw(weights_st) for n in lists}
    fused = interpolate(lists, weights, "minmax", completed=completed)
    assert all(math.isfinite(f.score) for f in fused)
    for f in fused:
        for name, v in f.normalized.items():
            if v is None:
                continue
            assert v >= 0.0, (name, v)
            if completed == "union":
                assert v <= 1.0, (name, v)


@PROP
@given(lists=branch_lists(n_branches=(2, 3)), data=st.data())
def test_clamp_never_scores_below_raw(lists, data):
    weights = {n: data.draw(weights_st) for n in lists}
    raw = scores(interpolate(lists, weights, "minmax", completed="raw"))
    clamped = scores(interpolate(lists, weights, "minmax", completed="clamp"))
    assert set(raw) == set(clamped)
    for i in raw:
        assert clamped[i] >= raw[i] - 1e-12


@PROP
@given(lists=branch_lists(n_branches=(2, 3)), completed=st.sampled_from(["clamp", "union"]), data=st.data())
def test_a_branch_top_document_keeps_at_least_that_branch_weight(lists, completed, data):
    # The property "raw" breaks: another branch's completed score cannot pull a branch's own top
    # document below the weight that branch gives it. Completed scores are at most the list's
    # minimum, as with exact search (a higher one would have been returned).
    for bl in lists.values():
        low = min((s for _, s in bl.ranked()), default=0.0)
        bl.extra = {i: min(s, low) for i, s in bl.extra.items()}
    weights = {n: data.draw(weights_st) for n in lists}
    fused = scores(interpolate(lists, weights, "minmax", completed=completed))
    for name, bl in lists.items():
        ranked = bl.ranked()
        if len(ranked) >= 2 and ranked[0][1] > ranked[-1][1]:
            assert fused[ranked[0][0]] >= weights[name] - 1e-9


@PROP
@given(lists=branch_lists(n_branches=(1, 2), extras=False), completed=st.sampled_from(["clamp", "union", "raw"]))
def test_an_empty_branch_changes_nothing(lists, completed):
    weights = {n: 1.0 for n in lists}
    base = interpolate(lists, weights, "minmax", completed=completed)
    with_empty = interpolate({**lists, "e": BranchList([], [])}, {**weights, "e": 1.0}, "minmax", completed=completed)
    assert [(f.id, f.score) for f in with_empty] == [(f.id, f.score) for f in base]


@given(n=st.integers(1, 6), value=st.sampled_from([0.0, 0.5, 3.0]), completed=st.sampled_from(["clamp", "union", "raw"]))
def test_ties_everywhere(n, value, completed):
    ids = [f"d{i}" for i in range(n)]
    lists = {"a": BranchList(ids, [value] * n), "b": BranchList(list(reversed(ids)), [value] * n)}
    fused = interpolate(lists, {"a": 0.5, "b": 0.5}, "minmax", completed=completed)
    assert [f.score for f in fused] == [1.0] * n
    assert [f.id for f in fused] == sorted(ids, key=lambda i: (min(ids.index(i), n - 1 - ids.index(i)) + 1, i))


def test_nan_completed_scores_count_as_missing():
    a = BranchList(["x", "y"], [2.0, 1.0], extra={"z": float("nan")})
    b = BranchList(["z"], [1.0], extra={"x": float("nan"), "y": float("nan")})
    for completed in ("clamp", "union", "raw"):
        fused = interpolate({"a": a, "b": b}, {"a": 0.5, "b": 0.5}, "minmax", completed=completed)
        assert all(math.isfinite(f.score) for f in fused)
        assert returned_ids({"a": a, "b": b}) == {f.id for f in fused}


# ------------------------------------------------------- regression: a code in exactly one document

DEMO = Path(__file__).resolve().parents[1] / "hybrid_retriever" / "data" / "demo_corpus.jsonl"


def test_a_code_found_only_by_bm25_ranks_first_with_the_default_fusion(tmp_path, dense_branch):
    """Issue 13: a query made only of a code that appears in exactly one document.

    BM25 finds that document alone; the dense model cannot read the code, so the document is at
    the bottom of the dense ranking, far below the dense top 100. Completed scores normalised
    unbounded below buried it (about -2); the default fusion must rank it first, as BM25 does.
    """
    rng = random.Random(13)
    rows = [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines()]
    codes: dict[str, str] = {}
    docs = []
    for n, row in enumerate(rows):
        text = row["title"] + "\n" + row["text"]
        if n % 10 == 3:
            code = "".join(rng.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(2)) + f"{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
            text += f" Catalogue reference {code}."
            codes[code] = row["id"]
        docs.append(Document(text=text, id=row["id"]))
    cfg = RetrieverConfig.validate_data({"store": {"kind": "edge", "path": str(tmp_path / "idx")}, "runtime": {"show_progress": False}})
    from hybrid_retriever.branches import build_branch

    with HybridRetriever(cfg, branches=[build_branch(cfg.branches[0]), dense_branch]) as r:
        r.add_documents(docs)
        queries = list(codes)
        bm25_first = [per["bm25"].hits[0].point_id for per in r.search_branches(queries, complete=False)]
        assert bm25_first == [point_id(codes[q]) for q in queries]  # BM25 alone: 20 of 20
        hits = r.search_batch(queries, k=3)
        assert [h[0].id for h in hits] == [codes[q] for q in queries]
        # The old normalisation buries it in some probes (the reason for the fix).
        raw = cfg.fusion.model_copy(update={"completed": "raw"})
        firsts = [fuse_results(per, raw, cfg.weights())[0].id for per in r.search_branches(queries)]
        assert sum(f == point_id(codes[q]) for f, q in zip(firsts, queries)) < len(queries)


@PROP
@given(lists=branch_lists(n_branches=(2, 3), values=st.integers(-64, 64).map(lambda i: i / 8)), data=st.data())
def test_dbsf_and_zscore_rank_alike_over_a_fully_completed_union(lists, data):
    # Why the default DBSF ranks as z-score with union completion: when every candidate has a
    # score in every branch, each branch's fit covers the same n scores, so DBSF is
    # 0.5 + z·sqrt((n-1)/n)/6 with one n for all branches, an order-keeping map of the z-score fusion.
    ids = sorted({i for bl in lists.values() for i in bl.ids})
    for bl in lists.values():
        bl.extra = {i: data.draw(st.integers(-64, 64).map(lambda x: x / 8)) for i in ids if i not in bl.ids}
    weights = {n: data.draw(st.floats(0.1, 10)) for n in lists}
    z = interpolate(lists, weights, "zscore", completed="union")
    d = interpolate(lists, weights, "dbsf", completed="union")
    zs, ds = scores(z), scores(d)
    for a in ids:
        for b in ids:
            if zs[a] > zs[b] + 1e-9:
                assert ds[a] > ds[b] - 1e-9
