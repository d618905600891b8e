"""Query expansion for sparse (BM25) branches: RM3 and Rocchio on sparse vectors.

Feedback documents are represented by their stored sparse vectors (token id ->
weight), read back from Qdrant, so expansion terms live in exactly the token space
Qdrant searches. For the BM25 branch the stored weights are BM25's saturated term
frequencies and Qdrant multiplies each query weight by the term's IDF at search time:
a weighted sparse query is a weighted BM25 query, searched as it is.

RM3 (Lavrenko & Croft's relevance model RM1, mixed with the query as in Abdul-Jaleel
et al. 2004 and Anserini)::

    P(w|R) ∝ Σ_d  P(d) · P(w|d)          P(w|d) = weight_d(w) / Σ_v weight_d(v)
    E      = top-N terms of P(w|R), renormalised to sum 1
    q'     = |q|₁ · ( λ · q/|q|₁ + (1 − λ) · E )

``P(d)`` is proportional to the document's first-stage score (or uniform). Scaling by
``|q|₁`` makes λ = 1 give back the original query exactly. With ``idf`` (token id ->
IDF) the top N terms are chosen by ``P(w|R)·idf(w)`` instead, which keeps frequent,
non-discriminative terms out of the expansion.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.types import SparseVector


def as_dict(v: SparseVector) -> dict[int, float]:
    """A sparse vector as ``{token id: weight}`` (repeated ids are summed)."""
    if len(v.indices) != len(v.values):
        raise InvalidInputError(f"sparse vector has {len(v.indices)} indices but {len(v.values)} values")
    out: dict[int, float] = {}
    for i, w in zip(v.indices, v.values):
        w = float(w)
        if not math.isfinite(w):
            raise InvalidInputError("sparse vector weights must be finite numbers")
        out[int(i)] = out.get(int(i), 0.0) + w
    return out


def from_dict(d: Mapping[int, float]) -> SparseVector:
    """``{token id: weight}`` back to a :class:`SparseVector` (sorted by id, zero weights dropped)."""
    items = sorted((int(i), float(w)) for i, w in d.items() if w != 0.0)
    return SparseVector(indices=[i for i, _ in items], values=[w for _, w in items])


def _doc_weights(n: int, weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    w = [float(x) for x in weights]
    if len(w) != n or any(not math.isfinite(x) or x < 0 for x in w):
        raise InvalidInputError("feedback document weights must be one finite, non-negative number per document")
    total = sum(w)
    return [x / total for x in w] if total > 0 else [1.0 / n] * n


def relevance_model(feedback: Sequence[SparseVector], doc_weights: Sequence[float] | None = None) -> dict[int, float]:
    """RM1: ``P(w|R) = Σ_d P(d)·P(w|d)`` over the feedback documents (sums to 1 unless all are empty)."""
    docs = [as_dict(v) for v in feedback]
    weights = _doc_weights(len(docs), doc_weights) if docs else []
    model: dict[int, float] = {}
    for d, pd in zip(docs, weights):
        total = sum(w for w in d.values() if w > 0)
        if total <= 0 or pd == 0:
            continue
        for t, w in d.items():
            if w > 0:
                model[t] = model.get(t, 0.0) + pd * w / total
    return model


def top_terms(model: Mapping[int, float], n: int, idf: Mapping[int, float] | None = None) -> dict[int, float]:
    """The ``n`` terms of ``model`` with the highest weight (times ``idf`` when given); ties by token id."""
    if n <= 0:
        raise InvalidInputError(f"the number of expansion terms must be positive, got {n}")

    def key(item: tuple[int, float]) -> tuple[float, int]:
        t, w = item
        return (-(w * (idf.get(t, 0.0) if idf is not None else 1.0)), t)

    return dict(sorted(model.items(), key=key)[:n])


def rm3(
    query: SparseVector,
    feedback: Sequence[SparseVector],
    doc_weights: Sequence[float] | None = None,
    lam: float = 0.5,
    n_terms: int = 10,
    idf: Mapping[int, float] | None = None,
) -> SparseVector:
    """RM3 expansion of a sparse query (see the module docstring); ``lam`` is the original query's weight.

    >>> q = SparseVector([1], [1.0])
    >>> rm3(q, [SparseVector([1, 2], [1.0, 3.0])], lam=0.5, n_terms=1)
    SparseVector(indices=[1, 2], values=[0.5, 0.5])
    """
    if not (0.0 <= lam <= 1.0) or math.isnan(lam):
        raise InvalidInputError(f"RM3 lambda (the original query's weight) must be in [0, 1], got {lam}")
    q = {t: w for t, w in as_dict(query).items() if w > 0}
    mass = sum(q.values())
    expansion = top_terms(relevance_model(feedback, doc_weights), n_terms, idf)
    e_mass = sum(expansion.values())
    if mass <= 0:
        return query
    if e_mass <= 0 or lam == 1.0:
        return from_dict(q)
    out = {t: lam * w for t, w in q.items()}
    for t, w in expansion.items():
        out[t] = out.get(t, 0.0) + (1.0 - lam) * mass * w / e_mass
    return from_dict(out)


def rocchio(
    query: SparseVector,
    feedback: Sequence[SparseVector],
    alpha: float = 1.0,
    beta: float = 0.5,
    n_terms: int = 10,
    doc_weights: Sequence[float] | None = None,
    idf: Mapping[int, float] | None = None,
) -> SparseVector:
    """Rocchio on sparse vectors: ``α·q + β·mean(feedback)`` with the mean cut to its top ``n_terms`` terms.

    >>> rocchio(SparseVector([1], [1.0]), [SparseVector([2, 3], [2.0, 1.0])], alpha=1.0, beta=0.5, n_terms=1)
    SparseVector(indices=[1, 2], values=[1.0, 1.0])
    """
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not math.isfinite(value) or value < 0:
            raise InvalidInputError(f"Rocchio {name} must be a finite number >= 0, got {value}")
    docs = [as_dict(v) for v in feedback]
    out = {t: alpha * w for t, w in as_dict(query).items()}
    if not docs:
        return from_dict(out)
    weights = _doc_weights(len(docs), doc_weights)
    centroid: dict[int, float] = {}
    for d, pd in zip(docs, weights):
        for t, w in d.items():
            centroid[t] = centroid.get(t, 0.0) + pd * w
    for t, w in top_terms({t: w for t, w in centroid.items() if w > 0}, n_terms, idf).items():
        out[t] = out.get(t, 0.0) + beta * w
    return from_dict(out)


def damp(original: SparseVector, rewritten: SparseVector, strength: float) -> SparseVector:
    """``(1 − s)·original + s·rewritten``: the drift guard's partial feedback (s in [0, 1])."""
    if strength >= 1.0:
        return rewritten
    if strength <= 0.0:
        return original
    out = {t: (1.0 - strength) * w for t, w in as_dict(original).items()}
    for t, w in as_dict(rewritten).items():
        out[t] = out.get(t, 0.0) + strength * w
    return from_dict(out)
