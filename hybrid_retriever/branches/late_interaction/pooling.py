"""Token pooling at index time: cluster a document's token vectors, keep the cluster means.

Hierarchical (Ward) clustering on cosine distance, as in Clavié et al., "Reducing the
Footprint of Multi-Vector Retrieval with Minimal Performance Impact via Token Pooling"
(2024): a pool factor ``f`` keeps ``max(n // f, 1)`` vectors of the ``n`` unprotected
ones. The first ``protected`` vectors ([CLS], the marker) are kept as they are.

With ``normalize`` (the default, for encoders whose token vectors are unit length)
each cluster mean is re-normalised: a mean of unit vectors is shorter than unit
length, so it would lose MaxSim contests against unpooled query-document pairs
that the model scores on the cosine scale (measured in benchmarks/results/multivector_pooling.md).
"""

from __future__ import annotations

import numpy as np


def pool_tokens(vectors: np.ndarray, pool_factor: int, protected: int = 1, normalize: bool = True) -> np.ndarray:
    """The pooled token matrix of one document (``pool_factor`` 1 returns it unchanged).

    >>> import numpy as np
    >>> x = np.eye(4, dtype=np.float32)[[0, 1, 1, 2, 2]]
    >>> pool_tokens(x, 2, protected=1).round(3).tolist()
    [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    """
    if pool_factor <= 1:
        return vectors
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    x = np.asarray(vectors, dtype=np.float32)
    head, rest = x[:protected], x[protected:]
    n = len(rest)
    k = max(n // pool_factor, 1)
    if k >= n:
        return x
    r64 = rest.astype(np.float64)
    dist = np.clip(1.0 - r64 @ r64.T, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    labels = _cut(linkage(squareform(dist, checks=False), method="ward"), n, k)
    # Cluster sums as one product with the (clusters × tokens) membership matrix.
    members = np.zeros((k, n), dtype=np.float64)
    members[labels, np.arange(n)] = 1.0
    means = (members @ r64) / members.sum(axis=1, keepdims=True)
    if normalize:
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    means = means.astype(np.float32)
    return np.concatenate([head, means], axis=0)


def _cut(z: np.ndarray, n: int, k: int) -> np.ndarray:
    """Cluster labels after the first ``n - k`` merges of linkage ``z``: exactly ``k`` clusters.

    (scipy's ``fcluster(maxclust)`` may return fewer, ``cut_tree`` is quadratic.)
    """
    parent = list(range(2 * n - 1))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for step in range(n - k):
        a, b = int(z[step, 0]), int(z[step, 1])
        parent[find(a)] = n + step
        parent[find(b)] = n + step
    roots = [find(i) for i in range(n)]
    _, labels = np.unique(roots, return_inverse=True)
    return labels.reshape(-1)
