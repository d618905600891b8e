"""A cross-encoder on ONNX Runtime: exported once from its weights, cached, and checked against torch.

The export, its cache folder and its hash checks are the dense branch's
(:mod:`hybrid_retriever.models.onnx_backend`), with the classifier's ``logits`` as the
output. The model folder is loaded in torch once per process (its weights fingerprint
names the export; a stale export is made again), then a probe (a fixed query and four
passages) is scored by both: the export must give the same scores (float32) or the same
order with close scores (int8), else it is exported again once and, failing that, refused.
Pairs are tokenised as ``rerankers`` does (the model's own tokenizer, ``longest_first``
truncation to ``max_length``), sorted by length so each batch pads little, and scored
in batches of ``batch_size``.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from hybrid_retriever.config import RerankConfig
from hybrid_retriever.errors import ConfigError, ModelCacheError
from hybrid_retriever.models.onnx_backend import (
    MODEL_INPUTS,
    OnnxTransformer,
    cached_export,
    discard_export,
    onnxruntime_available,
)
from hybrid_retriever.models.probe import PROBE_TEXT
from hybrid_retriever.models.resolve import locate_model, resolve_model_path
from hybrid_retriever.models.threads import intra_op_threads
from hybrid_retriever.rerank.base import RerankBackend, logits_to_scores, per_query

log = logging.getLogger(__name__)

#: Passages of the probe (PROBE_TEXT is its query): related, unrelated, short and long.
PROBE_PASSAGES = (
    "Qdrant stores vectors; a hybrid retriever fuses BM25 and dense search over it.",
    "Zürich, Tokyo and São Paulo are large cities.",
    "42",
    "A manual explains how to read a manual. " * 12,
)
#: Largest |ONNX − torch| score allowed on the probe, as a share of the torch scores' spread (at least 1).
PROBE_TOLERANCE = {"fp32": 1e-3, "int8": 0.25}


def length_order(pairs: Sequence[tuple[str, str]]) -> list[int]:
    """Pair positions longest first (by characters), so a batch holds pairs of similar length.

    >>> length_order([("q", "ab"), ("q", "abcd"), ("q", "")])
    [1, 0, 2]
    """
    return sorted(range(len(pairs)), key=lambda i: (-(len(pairs[i][0]) + len(pairs[i][1])), i))


class OnnxCrossEncoderBackend(RerankBackend):
    """A Hugging Face sequence-classification cross-encoder run by ONNX Runtime on the CPU."""

    def __init__(self, config: RerankConfig, variant: str = "fp32") -> None:
        if not config.model:
            raise ConfigError("rerank.model is not set: name a cross-encoder (Hugging Face id or folder)")
        if not onnxruntime_available():
            raise ConfigError("rerank.backend onnx needs ONNX Runtime: pip install onnxruntime onnx, or set rerank.backend: torch")
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from hybrid_retriever.models.threads import apply_torch_threads

        apply_torch_threads()
        self.name = config.model
        self.config = config
        self.variant = variant
        self.device = "cpu"
        self.dtype = "int8" if variant == "int8" else "float32"
        path = resolve_model_path(config.model)
        self.tokenizer = AutoTokenizer.from_pretrained(
            path, model_max_length=config.max_length, trust_remote_code=config.trust_remote_code
        )
        model = AutoModelForSequenceClassification.from_pretrained(
            path, use_safetensors=True, trust_remote_code=config.trust_remote_code
        ).eval()
        features = self._features([(PROBE_TEXT, p) for p in PROBE_PASSAGES])
        names = tuple(n for n in MODEL_INPUTS if n in features)
        reference = self._torch_scores(model, features)
        folder = locate_model(config.model)
        for attempt in (1, 2):
            onnx_path = cached_export(model, path, names, variant, source_folder=folder, output="logits")  # type: ignore[arg-type]
            self.session = OnnxTransformer(onnx_path, names, intra_op_threads())
            fresh = logits_to_scores(self.session(features))
            worst = max(abs(a - b) for a, b in zip(fresh, reference))
            allowed = PROBE_TOLERANCE[variant] * max(1.0, max(reference) - min(reference))
            same_order = np.argsort(fresh).tolist() == np.argsort(reference).tolist()
            if worst <= allowed and (variant == "fp32" or same_order):
                break
            if attempt == 1:
                log.warning("reranker %s: the ONNX export (%s) scores the probe %.4g away from torch; exporting it again",
                            config.model, variant, worst)
                discard_export(path, variant)  # type: ignore[arg-type]
                continue
            raise ModelCacheError(
                f"reranker {config.model}: its ONNX export ({variant}) scores the probe pairs up to {worst:.4g} away from "
                f"the model's own torch scores (at most {allowed:.4g} allowed, same order needed): the export, ONNX "
                "Runtime or the model files are not what they should be. Set rerank.backend: torch, or check the model"
            )
        del model
        log.info("reranker %s runs on ONNX Runtime (%s)", config.model, variant)

    def _features(self, pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        enc = self.tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation=True,
                             max_length=self.config.max_length, return_tensors="np")
        return {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in MODEL_INPUTS}

    @staticmethod
    def _torch_scores(model: Any, features: dict[str, np.ndarray]) -> list[float]:
        import torch

        with torch.inference_mode():
            logits = model(**{k: torch.from_numpy(v) for k, v in features.items()}).logits
        return logits_to_scores(logits.float().numpy())

    def score(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        pairs = [(q, d) for q, ds in zip(queries, docs) for d in ds]
        order = length_order(pairs)
        flat = [0.0] * len(pairs)
        size = self.config.batch_size
        for start in range(0, len(order), size):
            idx = order[start : start + size]
            scores = logits_to_scores(self.session(self._features([pairs[i] for i in idx])))
            for i, s in zip(idx, scores):
                flat[i] = s
        return per_query(flat, docs)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]

