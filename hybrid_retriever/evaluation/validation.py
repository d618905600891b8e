"""Choosing among configurations from per-query scores, and scoring the choice honestly.

Shared by fusion, PRF and rerank-weight tuning: :func:`select` picks a configuration
(best mean, or the one-standard-error rule that keeps the default unless clearly
beaten) and :func:`validate` reports the pick on queries it was not made on (k-fold
cross-validation over queries, or a train/dev split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.evaluation.significance import compare


def _argmax_first(values: np.ndarray) -> int:
    """Index of the largest value; ties (within 1e-12) go to the first."""
    best = values.max()
    return int(np.nonzero(values >= best - 1e-12)[0][0])


SELECTIONS = ("one-se", "best")


def select(scores: np.ndarray, rule: str = "one-se", default_index: int = 0) -> int:
    """Pick a configuration from per-query scores ``(configs, queries)``.

    ``best``: the highest mean (ties to the first listed). ``one-se``: the same, except
    that the default configuration is kept unless the best one beats it by more than
    one standard error of their paired per-query difference — with thousands of
    configurations and a few dozen queries, the top score is partly luck, and this
    rule keeps a configuration that is not clearly better from replacing the default.
    """
    if rule not in SELECTIONS:
        raise InvalidInputError(f"unknown selection rule {rule!r}; use one of {list(SELECTIONS)}")
    means = scores.mean(1)
    b = _argmax_first(means)
    if rule == "best" or b == default_index or scores.shape[1] < 2:
        return b
    diff = scores[b] - scores[default_index]
    se = float(diff.std(ddof=1) / np.sqrt(diff.size))
    return default_index if diff.mean() <= se else b


def assign_folds(n: int, folds: int, seed: int = 0) -> np.ndarray:
    """The cross-validation fold (0..k-1) of each of ``n`` queries: a seeded shuffle dealt round-robin.

    ``k`` is ``folds`` clipped to [2, n], so fold sizes differ by at most one.

    >>> assign_folds(5, 2, seed=0).tolist()
    [1, 0, 0, 0, 1]
    """
    if n < 2:
        raise InvalidInputError("cross-validation needs at least two judged queries")
    k = max(2, min(folds, n))
    order = np.random.default_rng(seed).permutation(n)
    assign = np.empty(n, dtype=int)
    assign[order] = np.arange(n) % k
    return assign


@dataclass
class Validation:
    """How a choice among configurations scored on queries it was not made on (:func:`validate`).

    ``best`` is picked on all tuning queries (the one to deploy); ``heldout`` holds, for
    each query of ``heldout_idx``, the score of the configuration picked without it
    (its fold's choice, or the train split's), ``default_heldout`` the default's.
    ``fold_of`` maps each query to its held-out fold (-1: used for tuning only).
    """

    kind: str                          # "cv" or "split"
    best: int
    tune_idx: np.ndarray
    heldout_idx: np.ndarray
    heldout: np.ndarray
    default_heldout: np.ndarray
    fold_of: np.ndarray
    fold_choice: list[int]
    fold_rows: list[dict[str, Any]]    # per fold: sizes, the chosen index ("chosen") and its scores

    def significance(self, test: str) -> dict[str, Any]:
        """Paired ``test`` of the held-out scores against the default's (p NaN with one query)."""
        if len(self.heldout) < 2:
            return {"test": test, "p_value": float("nan")}
        return compare(self.default_heldout, self.heldout, test).as_dict()


def split_indices(
    qids: Sequence[str], train_qids: Sequence[str] | None, dev_qids: Sequence[str] | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Positions in ``qids`` of the train and dev queries, for :func:`validate` (None where not given)."""
    if dev_qids is None:
        return None, None
    index = {q: i for i, q in enumerate(qids)}
    dev = np.array([index[q] for q in dev_qids if q in index], dtype=int)
    train = np.array([index[q] for q in train_qids if q in index], dtype=int) if train_qids is not None else None
    return train, dev


def validate(
    scores: np.ndarray,
    selection: str = "one-se",
    *,
    folds: int = 5,
    seed: int = 0,
    train_idx: np.ndarray | None = None,
    dev_idx: np.ndarray | None = None,
    default_index: int = 0,
) -> Validation:
    """Pick a configuration from per-query ``scores`` ``(configs, queries)`` and score the pick honestly.

    With ``dev_idx`` the pick is made on ``train_idx`` (default: every other query) and
    reported on ``dev_idx``; otherwise ``folds``-fold cross-validation (:func:`assign_folds`):
    each fold is scored by the configuration :func:`select` picks on the other folds,
    never by one picked on the fold itself.

    >>> S = np.array([[0.5, 0.5, 0.5, 0.5], [0.9, 0.7, 0.1, 0.3]])  # config 1 wins on train, loses on dev
    >>> v = validate(S, "best", train_idx=np.array([0, 1]), dev_idx=np.array([2, 3]))
    >>> v.best, v.heldout.tolist(), v.default_heldout.tolist()
    (1, [0.1, 0.3], [0.5, 0.5])
    """
    n = scores.shape[1]
    rows: list[dict[str, Any]] = []
    if dev_idx is not None:
        dev = np.asarray(dev_idx, dtype=int)
        train = np.asarray(train_idx, dtype=int) if train_idx is not None else np.setdiff1d(np.arange(n), dev)
        if len(train) == 0 or len(dev) == 0:
            raise InvalidInputError("train and dev splits need at least one judged query each")
        best = select(scores[:, train], selection, default_index)
        fold_of = np.full(n, -1)
        fold_of[dev] = 0
        heldout, default_heldout = scores[best, dev], scores[default_index, dev]
        rows.append({"fold": "dev", "n_train": int(len(train)), "n_heldout": int(len(dev)), "chosen": best,
                     "train_score": float(scores[best, train].mean()), "heldout_score": float(heldout.mean()),
                     "default_heldout_score": float(default_heldout.mean())})
        return Validation("split", best, train, dev, heldout, default_heldout, fold_of, [best], rows)
    fold_of = assign_folds(n, folds, seed)
    heldout = np.zeros(n)
    choices: list[int] = []
    for f in range(int(fold_of.max()) + 1):
        test_mask = fold_of == f
        i = select(scores[:, ~test_mask], selection, default_index)
        choices.append(i)
        heldout[test_mask] = scores[i, test_mask]
        rows.append({"fold": f, "n_train": int((~test_mask).sum()), "n_heldout": int(test_mask.sum()), "chosen": i,
                     "train_score": float(scores[i, ~test_mask].mean()),
                     "heldout_score": float(scores[i, test_mask].mean()),
                     "default_heldout_score": float(scores[default_index, test_mask].mean())})
    everything = np.arange(n)
    best = select(scores, selection, default_index)
    return Validation("cv", best, everything, everything, heldout, scores[default_index].copy(), fold_of, choices, rows)
