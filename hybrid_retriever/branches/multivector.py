"""Multi-vector branch: late interaction (MaxSim) on Qdrant multivectors.

A document is stored as a matrix of token vectors (Qdrant multivector, MaxSim
comparator, dot product of L2-normalised vectors); a query scores it by summing,
over its own token vectors, the best dot product with any document token.

Three modes (``MultiVectorBranchConfig.mode``):

- ``full``: the multivector has its own HNSW index and the branch returns its own
  candidates (HNSW over MaxSim is costly to build: see docs/multivector.md);
- ``rescorer``: no index (Qdrant ``m=0``); one Qdrant request whose prefetches are
  the other branches' searches re-scores the union of their candidates by MaxSim;
- ``muvera``: a MUVERA FDE of each document is stored as an extra indexed dense
  vector (``<name>_fde``); its candidates are re-scored by exact MaxSim in the same request.

Index-time token pooling, float16 storage and int8 scalar quantization (rescored
with the original vectors) shrink the stored vectors.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

import numpy as np

from hybrid_retriever.branches.base import Branch, FirstStage, VectorSpec
from hybrid_retriever.branches.late_interaction import (
    FDEEncoder,
    FDEParams,
    SharedForward,
    TokenEncoder,
    load_encoder,
    pool_tokens,
)
from hybrid_retriever.config import MultiVectorBranchConfig
from hybrid_retriever.errors import ConfigError, InvalidInputError
from hybrid_retriever.models import locate_model, model_reference, pick_device, weights_sha256
from hybrid_retriever.types import Vector

log = logging.getLogger(__name__)

#: Suffix of the FDE vector's name (mode ``muvera``).
FDE_SUFFIX = "_fde"


class MultiVectorBranch(Branch):
    """ColBERT-style late interaction over token vectors (see the module docstring)."""

    def __init__(self, config: MultiVectorBranchConfig, encoder: TokenEncoder | None = None) -> None:
        self.config = config
        self.name = config.branch_name
        self.rescores_others = config.mode == "rescorer"
        self._encoder = encoder
        self._lock = threading.Lock()
        self._fde: FDEEncoder | None = None
        self.shared: SharedForward | None = None
        #: Measures query fragmentation with a copy of the model's tokenizer (False: the tokenizer cannot).
        self._meter: Any = None

    # ------------------------------------------------------------------ encoder

    @property
    def encoder(self) -> TokenEncoder:
        """The loaded :class:`TokenEncoder` (first use loads it)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    self._encoder = self._load()
        return self._encoder

    def _load(self, backbone: Any | None = None) -> TokenEncoder:
        c = self.config
        return load_encoder(
            c.model_name,
            format=c.resolved_format,
            device=pick_device(c.device),
            batch_size=c.batch_size,
            query_length=c.query_length,
            document_length=c.document_length,
            trust_remote_code=c.trust_remote_code,
            backbone=backbone,
        )

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    @property
    def stats(self) -> dict[str, int]:
        """Documents encoded, truncated to the document length, and left empty by the skiplist."""
        s = self.encoder.stats
        return {"documents": s.documents, "truncated": s.truncated, "empty_after_skiplist": s.empty_after_skiplist}

    @property
    def fde(self) -> FDEEncoder:
        """The MUVERA encoder (mode ``muvera``)."""
        if self._fde is None:
            m = self.config.muvera
            self._fde = FDEEncoder(
                FDEParams(dimension=self.dimension, k_sim=m.k_sim, dim_proj=m.dim_proj, repetitions=m.repetitions, seed=m.seed)
            )
        return self._fde

    @property
    def fde_name(self) -> str:
        return self.name + FDE_SUFFIX

    # ---------------------------------------------------------------- sharing

    def attach(self, branches: dict[str, Branch]) -> None:
        """Share the dense branch's model and forward pass when both use the same model."""
        from hybrid_retriever.branches.dense import DenseBranch
        from hybrid_retriever.models import resolve_model_path

        if self.rescores_others and not any(b is not self and not b.rescores_others for b in branches.values()):
            raise ConfigError(
                f"multivector branch {self.name!r} has mode 'rescorer' but no other branch supplies candidates; "
                "add a bm25 or dense branch, or set mode to 'full' or 'muvera'"
            )
        c = self.config
        if not c.share_backbone or c.resolved_format != "tokens" or self._encoder is not None:
            return
        mine = resolve_model_path(c.model_name)
        for b in branches.values():
            if not isinstance(b, DenseBranch) or resolve_model_path(b.config.model) != mine:
                continue
            if getattr(b, "shared_forward", None) is not None:
                continue
            st = b.model
            if b._prompt(b.config.query_prompt_name, ("query",)) or b._prompt(
                b.config.document_prompt_name, ("document", "passage", "corpus")
            ):
                log.info("multivector branch %r: dense branch %r uses prompts; no shared forward pass", self.name, b.name)
                continue
            encoder = self._load(backbone=st[0].auto_model)
            if encoder.settings.document_length != st.max_seq_length or encoder.settings.query_length != st.max_seq_length:
                log.info("multivector branch %r: lengths differ from dense %r; no shared forward pass", self.name, b.name)
                self._encoder = encoder
                return
            self._encoder = encoder
            self.shared = SharedForward(b.encoder, encoder)
            b.shared_forward = self.shared
            log.info("multivector branch %r shares dense branch %r's model and forward pass", self.name, b.name)
            return

    # ---------------------------------------------------------------- Branch API

    @property
    def vector_spec(self) -> VectorSpec:
        c = self.config
        return VectorSpec(
            name=self.name,
            kind="multi",
            size=self.dimension,
            distance="Dot",
            indexed=c.mode == "full",
            datatype=c.storage,
            quantization=c.quantization,
            hnsw_m=c.hnsw_m if c.mode == "full" else None,
            hnsw_ef_construct=c.hnsw_ef_construct if c.mode == "full" else None,
        )

    @property
    def vector_specs(self) -> list[VectorSpec]:
        specs = [self.vector_spec]
        if self.config.mode == "muvera":
            specs.append(VectorSpec(name=self.fde_name, kind="dense", size=self.fde.size, distance="Dot"))
        return specs

    def encode_documents(self, texts: Sequence[str]) -> list[Vector]:
        """Token matrices of documents (before pooling: :meth:`stored_vectors` pools)."""
        if self.shared is not None:
            return list(self.shared.token_vectors(texts, is_query=False))
        return list(self.encoder.encode(texts, is_query=False))

    def encode_queries(self, texts: Sequence[str]) -> list[Vector]:
        if self.shared is not None:
            return list(self.shared.token_vectors(texts, is_query=True))
        return list(self.encoder.encode(texts, is_query=True))

    def query_signals(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Per query, how well this model reads it: ``fragmentation`` under its own tokenizer (adaptive fusion reads it)."""
        from hybrid_retriever.models.fragmentation import FragmentationMeter

        if self._meter is None:
            self._meter = FragmentationMeter.of(self.encoder.tokenizer) or False
        if not self._meter:
            return [{} for _ in texts]
        return [{} if f is None else {"fragmentation": f} for f in self._meter.measure(texts)]

    def stored_vectors(self, vectors: Sequence[Vector]) -> list[dict[str, Vector]]:
        """Pooled token matrices (and their FDE in mode ``muvera``), checked against the index dimension."""
        from threadpoolctl import threadpool_limits

        dim, normalize = self.dimension, self.encoder.settings.normalize
        if self.config.pool_factor <= 1:
            return [self._stored(v, dim, normalize) for v in vectors]
        # Pooling multiplies small per-document matrices: one BLAS thread is several times
        # faster than a thread pool competing with the encoder's threads (measured 0.3 vs 9 ms).
        with threadpool_limits(limits=1, user_api="blas"):
            return [self._stored(v, dim, normalize) for v in vectors]

    def _stored(self, v: Vector, dim: int, normalize: bool) -> dict[str, Vector]:
        x = np.asarray(v, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != dim or x.shape[0] == 0:
            raise InvalidInputError(
                f"branch {self.name!r} stores (tokens, {dim}) matrices with at least one token; got shape {x.shape}"
            )
        pooled = pool_tokens(x, self.config.pool_factor, self.config.protected_tokens, normalize)
        named: dict[str, Vector] = {self.name: pooled}
        if self.config.mode == "muvera":
            named[self.fde_name] = self.fde.document(pooled)
        return named

    def first_stage(self, vector: Vector) -> FirstStage | None:
        if self.config.mode != "muvera":
            return None
        return FirstStage(self.fde_name, self.fde.query(np.asarray(vector, dtype=np.float32)), self.config.muvera.candidates)

    def search_options(self) -> dict[str, Any]:
        if self.config.quantization:
            rescore = self.config.quantization_rescore
            return {"rescore": rescore, "oversampling": self.config.oversampling if rescore else None}
        return {}

    def bytes_per_document(self, tokens: float) -> float:
        """Stored bytes of one document's vectors with ``tokens`` token vectors (before quantization copies)."""
        per = 2 if self.config.storage == "float16" else 4
        size = tokens * self.dimension * per
        if self.config.quantization == "int8":
            size += tokens * self.dimension
        if self.config.mode == "muvera":
            size += self.fde.size * 4
        return float(size)

    def declared_manifest(self) -> dict[str, Any]:
        """The manifest entries known without loading the model (checked first on reopen)."""
        c = self.config
        m: dict[str, Any] = {
            "kind": "multivector",
            "model": model_reference(c.model_name),
            "mode": c.mode,
            "pool_factor": c.pool_factor,
            "protected_tokens": c.protected_tokens,
            "storage": c.storage,
            "quantization": c.quantization,
        }
        folder = locate_model(c.model_name)
        if folder is not None:
            m["weights_sha256"] = weights_sha256(folder)
        if c.mode == "muvera":
            m["muvera"] = {k: v for k, v in c.muvera.model_dump().items() if k != "candidates"}
        return m

    def manifest(self) -> dict[str, Any]:
        m = {
            **self.declared_manifest(),
            "dimension": self.dimension,
            "distance": "Dot",
            "encoder": self.encoder.settings.describe(),
        }
        if self.config.trust_remote_code:
            m["remote_code"] = True  # reopening asks the caller to grant trust_remote_code again
        return m
