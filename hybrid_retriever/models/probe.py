"""A model's vector for one fixed text, recorded in the index: any encoder must reproduce it.

Hashes prove that files are the files recorded beside them, but whoever can write a cache
folder (a shared volume) can replace an ONNX export *and* its recorded hash. So a new
index records the vector the model itself (sentence-transformers, from the hash-checked
weights) gives for :data:`PROBE_TEXT`, and every encoder that later writes or queries the
index (torch, the ONNX export, its int8 variant) must reproduce it within
:data:`MIN_COSINE` on first use. That also catches silent drift between library or model
versions. The check costs one encoding of one short text per process.

>>> import numpy as np
>>> round(cosine(np.array([1.0, 0.0]), np.array([1.0, 1.0])), 3)
0.707
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

#: The text every dense encoder must encode as the index's model did (several scripts, digits, punctuation).
PROBE_TEXT = "Probe 42: a hybrid retriever reads Qdrant's manual in Zürich, 東京 and São Paulo."

#: Least cosine between the recorded vector and a fresh encoding. float32 encoders (torch,
#: ONNX) give the same vector up to rounding; int8 weights move it by about 0.01 (MiniLM,
#: benchmarks/results/encoders.md), a replaced or broken export by far more.
MIN_COSINE = {"fp32": 0.9999, "int8": 0.97}


def record(vector: Any) -> dict[str, Any]:
    """The manifest entry for a probe encoding."""
    return {"text": PROBE_TEXT, "vector": [round(float(x), 7) for x in np.asarray(vector, dtype=np.float64).ravel()]}


def recorded_vector(entry: Any) -> np.ndarray | None:
    """The vector of a manifest entry, or None if there is none (an index built before probes) or it is unusable."""
    if not isinstance(entry, dict) or entry.get("text") != PROBE_TEXT or not isinstance(entry.get("vector"), list):
        return None
    values = entry["vector"]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return None
    return np.asarray(values, dtype=np.float64)


def cosine(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Cosine similarity; 0 for a zero or non-finite vector (a broken encoder), or vectors of different sizes."""
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        return 0.0
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    if not math.isfinite(norm) or norm == 0.0:
        return 0.0
    value = float(x @ y) / norm
    return value if math.isfinite(value) else 0.0
