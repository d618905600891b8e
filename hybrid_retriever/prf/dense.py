"""Vector-PRF for dense branches: Rocchio and Average over feedback document vectors.

The feedback vectors are the documents' stored vectors, read back from Qdrant (never
re-encoded). The new query is re-normalised to unit length, so cosine and dot-product
collections search it the same way as an encoded query.

Rocchio (Li et al., "Pseudo Relevance Feedback with Deep Language Models and Dense
Retrievers: Successes and Pitfalls", TOIS 2023)::

    q' = α·q + β·mean(feedback) − γ·mean(negatives)

Average is the same paper's ``(q + Σ d_i) / (k + 1)``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from hybrid_retriever.errors import InvalidInputError

_EPS = 1e-12


def _matrix(vectors: Sequence[np.ndarray], dim: int, what: str) -> np.ndarray:
    if len(vectors) == 0:
        return np.zeros((0, dim), dtype=np.float64)
    m = np.asarray([np.asarray(v, dtype=np.float64).reshape(-1) for v in vectors])
    if m.ndim != 2 or m.shape[1] != dim:
        raise InvalidInputError(f"{what} vectors must have the query's dimension {dim}, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise InvalidInputError(f"{what} vectors contain NaN or infinite values")
    return m


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if n < _EPS:
        raise InvalidInputError("the feedback query vector is zero; lower gamma or use more feedback documents")
    return (v / n).astype(np.float32)


def rocchio(
    query: np.ndarray,
    feedback: Sequence[np.ndarray],
    negatives: Sequence[np.ndarray] = (),
    alpha: float = 1.0,
    beta: float = 0.5,
    gamma: float = 0.0,
    weights: Sequence[float] | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """``α·q + β·mean(feedback) − γ·mean(negatives)``, re-normalised to unit length.

    ``weights`` (one per feedback vector, non-negative) turns the mean into a
    weighted mean. No feedback vectors leave ``q`` unchanged (normalised).

    >>> import numpy as np
    >>> rocchio(np.array([1.0, 0.0]), [np.array([0.0, 1.0])], alpha=1.0, beta=1.0).round(4).tolist()
    [0.7071, 0.7071]
    """
    q = np.asarray(query, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(q)):
        raise InvalidInputError("the query vector contains NaN or infinite values")
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if not np.isfinite(value) or value < 0:
            raise InvalidInputError(f"Rocchio {name} must be a finite number >= 0, got {value}")
    fb = _matrix(feedback, q.size, "feedback")
    neg = _matrix(negatives, q.size, "negative")
    out = alpha * q
    if len(fb):
        if weights is None:
            centroid = fb.mean(axis=0)
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (len(fb),) or not np.all(np.isfinite(w)) or np.any(w < 0):
                raise InvalidInputError("feedback weights must be one finite, non-negative number per feedback vector")
            centroid = (w[:, None] * fb).sum(axis=0) / w.sum() if w.sum() > 0 else fb.mean(axis=0)
        out = out + beta * centroid
    if len(neg) and gamma:
        out = out - gamma * neg.mean(axis=0)
    return _unit(out) if normalize else out.astype(np.float32)


def average(query: np.ndarray, feedback: Sequence[np.ndarray], normalize: bool = True) -> np.ndarray:
    """Average Vector-PRF: ``(q + Σ d_i) / (k + 1)``, re-normalised to unit length.

    >>> import numpy as np
    >>> average(np.array([1.0, 0.0]), [np.array([0.0, 1.0]), np.array([0.0, 1.0])], normalize=False).round(4).tolist()
    [0.3333, 0.6667]
    """
    q = np.asarray(query, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(q)):
        raise InvalidInputError("the query vector contains NaN or infinite values")
    fb = _matrix(feedback, q.size, "feedback")
    out = (q + fb.sum(axis=0)) / (len(fb) + 1)
    return _unit(out) if normalize else out.astype(np.float32)


def damp(original: np.ndarray, rewritten: np.ndarray, strength: float) -> np.ndarray:
    """Move from the original query towards the rewritten one by ``strength`` in [0, 1] (re-normalised).

    The drift guard uses it: strength 0 keeps the original query, 1 the full feedback query.
    """
    if strength >= 1.0:
        return np.asarray(rewritten, dtype=np.float32)
    q = np.asarray(original, dtype=np.float64).reshape(-1)
    r = np.asarray(rewritten, dtype=np.float64).reshape(-1)
    if strength <= 0.0:
        return q.astype(np.float32)
    return _unit((1.0 - strength) * q + strength * r)
