"""MUVERA fixed-dimensional encodings (FDE) of multi-vectors.

Dhulipala et al., "MUVERA: Multi-Vector Retrieval via Fixed Dimensional Encodings"
(NeurIPS 2024). Each of ``repetitions`` rounds partitions the space with ``k_sim``
random hyperplanes (SimHash, 2^k_sim buckets) and projects tokens to ``dim_proj``
dimensions with a random ±1 matrix. A query's FDE sums its projected tokens per
bucket; a document's averages them, and an empty bucket takes the projected token
whose bucket is nearest in Hamming distance. The dot product of a query FDE and a
document FDE approximates their Chamfer (MaxSim) similarity, so an ordinary dense
index finds candidates that exact MaxSim then re-ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FDEParams:
    """Shape and seed of an encoding; the same parameters must encode queries and documents."""

    dimension: int
    k_sim: int = 4
    dim_proj: int = 16
    repetitions: int = 20
    seed: int = 42

    @property
    def buckets(self) -> int:
        return 1 << self.k_sim

    @property
    def size(self) -> int:
        """Length of an FDE vector."""
        return self.repetitions * self.buckets * self.dim_proj


class FDEEncoder:
    """Encodes token matrices into FDE vectors (deterministic in ``params.seed``)."""

    def __init__(self, params: FDEParams) -> None:
        self.params = params
        rng = np.random.default_rng(params.seed)
        p = params
        self.planes = rng.standard_normal((p.repetitions, p.dimension, p.k_sim)).astype(np.float32)
        if p.dim_proj >= p.dimension:
            self.proj = np.broadcast_to(np.eye(p.dimension, dtype=np.float32), (p.repetitions, p.dimension, p.dimension))
        else:
            signs = rng.integers(0, 2, size=(p.repetitions, p.dimension, p.dim_proj)) * 2 - 1
            self.proj = (signs / np.sqrt(p.dim_proj)).astype(np.float32)
        self._width = self.proj.shape[2]
        codes = np.arange(p.buckets)
        xor = codes[:, None] ^ codes[None, :]
        self._hamming = np.array([[bin(v).count("1") for v in row] for row in xor])
        self._powers = (1 << np.arange(p.k_sim)).astype(np.int64)

    @property
    def size(self) -> int:
        return self.params.repetitions * self.params.buckets * self._width

    def _parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bucket of every token in every repetition (R, T) and projected tokens (R, T, w)."""
        x = np.asarray(x, dtype=np.float32)
        p = self.params
        if x.ndim != 2 or x.shape[1] != p.dimension:
            raise ValueError(f"expected a (tokens, {p.dimension}) matrix, got shape {x.shape}")
        if not hasattr(self, "_planes2d"):
            self._planes2d = np.ascontiguousarray(self.planes.transpose(1, 0, 2).reshape(p.dimension, -1))
            self._proj2d = np.ascontiguousarray(self.proj.transpose(1, 0, 2).reshape(p.dimension, -1))
        bits = (x @ self._planes2d).reshape(len(x), p.repetitions, p.k_sim) > 0
        buckets = (bits.astype(np.int64) * self._powers).sum(-1).T  # (R, T)
        projected = (x @ self._proj2d).reshape(len(x), p.repetitions, self._width).transpose(1, 0, 2)
        return buckets, projected

    def _sums(self, buckets: np.ndarray, projected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per (repetition, bucket) sums of projected tokens (R, B, w) and token counts (R, B)."""
        r, b, w = self.params.repetitions, self.params.buckets, self._width
        flat = (buckets + b * np.arange(r)[:, None]).reshape(-1)
        vals = projected.reshape(-1, w)
        sums = np.stack([np.bincount(flat, weights=vals[:, c], minlength=r * b) for c in range(w)], axis=1)
        counts = np.bincount(flat, minlength=r * b)
        return sums.reshape(r, b, w).astype(np.float32), counts.reshape(r, b)

    def query(self, x: np.ndarray) -> np.ndarray:
        """FDE of a query: per-bucket sums."""
        buckets, projected = self._parts(x)
        sums, _ = self._sums(buckets, projected)
        return sums.reshape(-1)

    def document(self, x: np.ndarray) -> np.ndarray:
        """FDE of a document: per-bucket means, empty buckets filled from the nearest token."""
        buckets, projected = self._parts(x)
        out, counts = self._sums(buckets, projected)
        full = counts > 0
        out[full] /= counts[full][:, None]
        for i in np.flatnonzero((~full).any(axis=1)):
            empty = np.flatnonzero(~full[i])
            # Nearest token (in bucket Hamming distance) for each empty bucket.
            nearest = self._hamming[empty][:, buckets[i]].argmin(axis=1)
            out[i][empty] = projected[i][nearest]
        return out.reshape(-1)
