"""Sentence embeddings from a loaded sentence-transformers model, on torch or ONNX Runtime.

:class:`SentenceEncoder` runs the model's own steps (its tokenisation with
``preprocess``, the transformer, its pooling and normalisation modules) without
``SentenceTransformer.encode``'s per-call work (device resolution, an ``eval()``
walk over every module, progress-bar set-up: about 2.8 ms per single-query call on
these CPUs). With backend ``onnx`` the transformer itself runs on ONNX Runtime
(:mod:`hybrid_retriever.models.onnx_backend`) and the pooling modules stay torch.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Literal, Sequence

import numpy as np

from hybrid_retriever.models.batching import token_slices

log = logging.getLogger(__name__)

#: What runs the transformer: torch, ONNX Runtime in float32, or ONNX Runtime with int8 weights.
Backend = Literal["torch", "onnx", "onnx-int8"]


def resolve_backend(requested: str, device: str) -> Backend:
    """The backend to run: ``auto`` is ONNX Runtime on CPU (torch without onnxruntime, with a note) and torch elsewhere."""
    from hybrid_retriever.errors import ConfigError
    from hybrid_retriever.models.onnx_backend import missing_onnxruntime, onnxruntime_available

    on_cpu = device == "cpu"
    if requested == "auto":
        if not on_cpu:
            return "torch"
        if onnxruntime_available():
            return "onnx"
        log.warning(
            "onnxruntime is not installed, so the dense model runs on torch (about half as fast per query on CPU); "
            "pip install onnxruntime onnx to use ONNX Runtime, or set the branch's backend: torch to silence this"
        )
        return "torch"
    if requested != "torch":
        if not on_cpu:
            raise ConfigError(
                f"backend {requested!r} runs on the CPU, but the dense branch's device is {device!r}: "
                "set backend: torch (or auto) for a GPU, or device: cpu"
            )
        if not onnxruntime_available():
            raise missing_onnxruntime()
    return requested  # type: ignore[return-value]


def build_sentence_encoder(
    st_model: Any, model_name: str, backend: Backend, source_folder: Any = None
) -> "SentenceEncoder":
    """A :class:`SentenceEncoder` for ``st_model`` running its transformer on ``backend``.

    ``source_folder`` (the folder the model was loaded from) is recorded with an ONNX export,
    so later processes can use it without torch (:mod:`hybrid_retriever.models.onnx_encoder`).
    """
    if backend == "torch":
        return SentenceEncoder(st_model)
    from hybrid_retriever.models.onnx_backend import load_onnx_transformer
    from hybrid_retriever.models.threads import intra_op_threads

    sample = st_model.preprocess(["a"])
    transformer = load_onnx_transformer(
        st_model[0].auto_model,
        model_name,
        tuple(k for k in sample if k != "modality"),
        "int8" if backend == "onnx-int8" else "fp32",
        intra_op_threads(),
        source_folder=source_folder,
    )
    return SentenceEncoder(st_model, transformer, backend)


#: Tokens (rows × padded length) per forward pass on CPU, same vectors: 8 × 256-token documents at a
#: time encoded 1.25× and 1.32× faster than 32 × 256 in two interleaved runs on this project's busy
#: 2-core CPUs, 0.96× in a third (benchmarks/results/encoders.md); smaller attention matrices stay in cache.
CPU_BATCH_TOKENS = 2048


class SentenceEncoder:
    """Normalised sentence embeddings of a ``SentenceTransformer`` (see the module docstring).

    ``transformer`` replaces the model's first module (the transformer) when given: a
    callable from tokenised features to last hidden states (an ONNX Runtime session).
    """

    def __init__(
        self, st_model: Any, transformer: Any | None = None, backend: Backend = "torch",
        max_batch_tokens: int | None = CPU_BATCH_TOKENS,
    ) -> None:
        import torch

        self.st_model = st_model.eval()
        #: On CPU a tokenised batch runs in slices of at most this many tokens (rows × padded length).
        self.max_batch_tokens = max_batch_tokens if st_model.device.type == "cpu" else None
        self.transformer = transformer
        self.backend = backend
        self.device = st_model.device
        self._rest = list(st_model.children())[1:]  # pooling, normalisation, projections
        self._torch = torch

    def forward(self, features: dict[str, Any]) -> dict[str, Any]:
        """The model's output features (``token_embeddings``, ``sentence_embedding``) for tokenised ``features``."""
        torch = self._torch
        if self.transformer is None:
            return self.st_model(features)
        out = dict(features)
        out["token_embeddings"] = torch.from_numpy(self.transformer(features))
        for module in self._rest:
            out = module(out)
        return out

    def encode(self, texts: Sequence[str], prompt: str | None = None, batch_size: int = 32) -> np.ndarray:
        """Float32 unit vectors (texts × dimension), in order; longest texts are batched together."""
        torch = self._torch
        texts = list(texts)
        dim = self.st_model.get_embedding_dimension()
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable") if len(texts) > 1 else np.zeros(1, dtype=np.int64)
        result = np.empty((len(texts), dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                features = self.st_model.preprocess([texts[i] for i in idx], prompt=prompt)
                if self.transformer is None and self.device.type != "cpu":
                    features = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in features.items()}
                rows = 0
                for part in self._slices(features, len(idx)):
                    emb = self.forward(part)["sentence_embedding"].float()
                    emb = torch.nn.functional.normalize(emb, p=2, dim=-1).cpu().numpy()
                    result[idx[rows : rows + len(emb)]] = emb
                    rows += len(emb)
        return result

    def _slices(self, features: dict[str, Any], n: int) -> Iterator[dict[str, Any]]:
        """``features`` in row slices of at most ``max_batch_tokens`` tokens, each cut to its own longest row.

        Rows arrive sorted longest first, so a slice's padding is small; the attention mask
        makes the result independent of how rows are grouped.
        """
        mask = features.get("attention_mask")
        if self.max_batch_tokens is None or mask is None or n * mask.shape[1] <= self.max_batch_tokens:
            yield features
            return
        for start, stop, longest in token_slices(mask.sum(dim=1).tolist(), mask.shape[1], self.max_batch_tokens):
            part = {}
            for key, value in features.items():
                if hasattr(value, "shape") and value.ndim >= 1 and value.shape[0] == n:
                    value = value[start:stop]
                    if value.ndim == 2 and value.shape[1] == mask.shape[1]:
                        value = value[:, :longest]
                part[key] = value
            yield part
