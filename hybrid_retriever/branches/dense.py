"""Dense branch: a sentence-transformers bi-encoder with normalised embeddings and cosine distance."""

from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

from hybrid_retriever.branches.base import Branch, VectorSpec
from hybrid_retriever.config import DenseBranchConfig
from hybrid_retriever.errors import ConfigError
from hybrid_retriever.models import (
    check_module_types,
    ensure_available,
    locate_model,
    model_reference,
    pick_device,
    resolve_model_path,
    weights_sha256,
)
from hybrid_retriever.models.resolve import quiet_loading
from hybrid_retriever.models.sentence_encoder import SentenceEncoder, build_sentence_encoder, resolve_backend
from hybrid_retriever.types import Vector

log = logging.getLogger(__name__)

_QUERY_PROMPTS = ("query",)
_DOCUMENT_PROMPTS = ("document", "passage", "corpus")


class DenseBranch(Branch):
    """Encodes with ``SentenceTransformer`` (loaded lazily, once) by model id or local path."""

    def __init__(self, config: DenseBranchConfig) -> None:
        self.config = config
        self.name = config.branch_name
        self._model: Any = None
        self._encoder: SentenceEncoder | None = None
        self._lock = threading.Lock()
        #: Set by a multivector branch on the same model: one forward pass feeds both branches.
        self.shared_forward: Any = None
        #: Measures query fragmentation with a copy of the model's tokenizer (False: the tokenizer cannot).
        self._meter: Any = None

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (first use loads it)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    @property
    def encoder(self) -> SentenceEncoder:
        """The model's tokeniser, transformer (on the configured backend) and pooling, called directly."""
        if self._encoder is None:
            model = self.model
            with self._lock:
                if self._encoder is None:
                    backend = resolve_backend(self.config.backend, model.device.type)
                    self._encoder = build_sentence_encoder(model, resolve_model_path(self.config.model), backend)
                    log.info("dense branch %r: transformer runs on %s", self.name, backend)
        return self._encoder

    def _load(self) -> Any:
        from sentence_transformers import SentenceTransformer

        what = f"dense branch {self.name!r}"
        folder = ensure_available(self.config.model, what)
        if folder is not None:
            check_module_types(folder, self.config.trust_remote_code, what)
        device = pick_device(self.config.device)
        try:
            with quiet_loading():
                model = SentenceTransformer(
                    str(folder or self.config.model), device=device, trust_remote_code=self.config.trust_remote_code
                )
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load dense model {self.config.model!r}: {exc}. Give a local model folder, "
                "or a Hugging Face id that is in the local cache (no network is needed then)"
            ) from None
        if self.config.max_seq_length:
            model.max_seq_length = self.config.max_seq_length
        log.info("dense branch %r: loaded %s on %s", self.name, self.config.model, device)
        return model

    def _prompt(self, explicit: str | None, candidates: Sequence[str]) -> str | None:
        prompts = getattr(self.model, "prompts", None) or {}
        if explicit is not None:
            if explicit not in prompts:
                raise ConfigError(f"model {self.config.model!r} has no prompt {explicit!r}; it has {sorted(prompts)}")
            return explicit
        return next((p for p in candidates if prompts.get(p)), None)

    def _encode(self, texts: Sequence[str], prompt_name: str | None) -> list[Vector]:
        if not texts:
            return []
        if self.shared_forward is not None and prompt_name is None:
            return self.shared_forward.sentence_embeddings(texts)
        prompt = self.model.prompts[prompt_name] if prompt_name else None
        return list(self.encoder.encode(texts, prompt=prompt, batch_size=self.config.batch_size))

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def vector_spec(self) -> VectorSpec:
        return VectorSpec(name=self.name, kind="dense", size=self.dimension, distance="Cosine")

    def encode_documents(self, texts: Sequence[str]) -> list[Vector]:
        return self._encode(texts, self._prompt(self.config.document_prompt_name, _DOCUMENT_PROMPTS))

    def encode_queries(self, texts: Sequence[str]) -> list[Vector]:
        return self._encode(texts, self._prompt(self.config.query_prompt_name, _QUERY_PROMPTS))

    def query_signals(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Per query, how well this model reads it: ``fragmentation`` under its own tokenizer (adaptive fusion reads it)."""
        from hybrid_retriever.models.fragmentation import FragmentationMeter

        if self._meter is None:
            self._meter = FragmentationMeter.of(getattr(self.model, "tokenizer", None)) or False
        if not self._meter:
            return [{} for _ in texts]
        return [{} if f is None else {"fragmentation": f} for f in self._meter.measure(texts)]

    def declared_manifest(self) -> dict[str, Any]:
        """The manifest entries known without loading the model (checked first on reopen)."""
        out: dict[str, Any] = {"kind": "dense", "model": model_reference(self.config.model)}
        # int8 gives other vectors; float32 ONNX and torch give the same ones (None; absent in older indexes).
        out["weights"] = "int8" if self.config.backend == "onnx-int8" else None
        folder = locate_model(self.config.model)
        if folder is not None:
            out["weights_sha256"] = weights_sha256(folder)
        return out

    def manifest(self) -> dict[str, Any]:
        m = {
            **self.declared_manifest(),
            "dimension": self.dimension,
            "distance": "Cosine",
            "document_prompt": self._prompt(self.config.document_prompt_name, _DOCUMENT_PROMPTS),
            "max_seq_length": int(self.model.max_seq_length),
        }
        if self.config.trust_remote_code:
            m["remote_code"] = True  # reopening asks the caller to grant trust_remote_code again
        return m
