"""Dense branch: a sentence-transformers bi-encoder with normalised embeddings and cosine distance."""

from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

from hybrid_retriever.branches.base import Branch, VectorSpec
from hybrid_retriever.config import DenseBranchConfig
from hybrid_retriever.errors import ConfigError, IndexMismatchError
from hybrid_retriever.models import (
    check_module_types,
    ensure_available,
    locate_model,
    model_reference,
    pick_device,
    resolve_model_path,
    weights_sha256,
)
from hybrid_retriever.models import probe
from hybrid_retriever.models.onnx_backend import discard_export
from hybrid_retriever.models.onnx_encoder import LightSentenceEncoder, load_light_encoder
from hybrid_retriever.models.resolve import quiet_loading, surely_cpu
from hybrid_retriever.models.sentence_encoder import (
    CPU_BATCH_TOKENS,
    SentenceEncoder,
    build_sentence_encoder,
    resolve_backend,
)
from hybrid_retriever.models.threads import intra_op_threads
from hybrid_retriever.types import Vector

log = logging.getLogger(__name__)

_QUERY_PROMPTS = ("query",)
_DOCUMENT_PROMPTS = ("document", "passage", "corpus")


class DenseBranch(Branch):
    """Encodes with ``SentenceTransformer`` (loaded lazily, once) by model id or local path.

    On the CPU with an ONNX backend and the model's export already cached, it encodes
    with :class:`~hybrid_retriever.models.onnx_encoder.LightSentenceEncoder` instead, the
    same vectors without importing torch or sentence-transformers (seconds of start-up).
    """

    def __init__(self, config: DenseBranchConfig) -> None:
        self.config = config
        self.name = config.branch_name
        self._model: Any = None
        self._encoder: SentenceEncoder | None = None
        self._light: LightSentenceEncoder | None = None
        self._light_tried = False
        self._backend: str | None = None  # the backend the encoder in use runs on (torch, onnx, onnx-int8)
        self._reexported = False
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
                    backend = self._backend = resolve_backend(self.config.backend, model.device.type)
                    self._encoder = build_sentence_encoder(
                        model, resolve_model_path(self.config.model), backend, locate_model(self.config.model)
                    )
                    log.info("dense branch %r: transformer runs on %s", self.name, backend)
        return self._encoder

    @property
    def light(self) -> LightSentenceEncoder | None:
        """The torch-free encoder, when this model and backend allow it and its export is cached (tried once)."""
        if not self._light_tried:
            with self._lock:
                if not self._light_tried:
                    self._light = self._load_light()
                    self._light_tried = True
        return self._light

    def _load_light(self) -> LightSentenceEncoder | None:
        if self._model is not None or self.config.backend not in ("auto", "onnx", "onnx-int8"):
            return None  # sentence-transformers is loaded already, or torch runs the model
        if not surely_cpu(self.config.device):
            return None
        folder = locate_model(self.config.model)
        if folder is None:
            return None
        check_module_types(folder, self.config.trust_remote_code, f"dense branch {self.name!r}")
        backend = resolve_backend(self.config.backend, "cpu")
        if backend == "torch":
            return None
        light = load_light_encoder(
            folder,
            resolve_model_path(self.config.model),
            "int8" if backend == "onnx-int8" else "fp32",
            intra_op_threads(),
            max_seq_length=self.config.max_seq_length,
            max_batch_tokens=CPU_BATCH_TOKENS,
        )
        if light is not None:
            self._backend = backend
        return light

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

    def _prompts(self) -> dict[str, str]:
        light = self.light
        return light.prompts if light is not None else (getattr(self.model, "prompts", None) or {})

    def _prompt(self, explicit: str | None, candidates: Sequence[str]) -> str | None:
        prompts = self._prompts()
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
        prompt = self._prompts()[prompt_name] if prompt_name else None
        light = self.light
        encoder = light if light is not None else self.encoder
        return list(encoder.encode(texts, prompt=prompt, batch_size=self.config.batch_size))

    @property
    def dimension(self) -> int:
        light = self.light
        return light.dimension if light is not None else int(self.model.get_embedding_dimension())

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
            light, folder = self.light, locate_model(self.config.model)
            if light is not None and folder is not None:  # the torch-free path: the same tokenizer, no model load
                self._meter = FragmentationMeter.of_folder(light.tokenizer, folder)
            else:
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

    # -- the identity probe (hybrid_retriever.models.probe) ---------------------------

    def identity_probe(self) -> dict[str, Any]:
        """The model's own vector for the probe text (sentence-transformers, from the hash-checked weights).

        Also checks that the encoder in use reproduces it, so a new index is never written
        through a replaced or broken ONNX export.
        """
        reference = self.model.encode([probe.PROBE_TEXT], convert_to_numpy=True)[0]
        self._check_encoder(reference, "the model's own encoding")
        return probe.record(reference)

    def check_probe(self, recorded: Any) -> None:
        expected = probe.recorded_vector(recorded)
        if expected is not None:  # None: an index built before probes were recorded
            self._check_encoder(expected, "the vector recorded in the index when it was built")

    def _check_encoder(self, expected: Any, what: str) -> None:
        """The encoder in use gives ``expected`` for the probe text; a failing ONNX export is exported again once."""
        variant = "int8" if self.config.backend == "onnx-int8" else "fp32"
        fresh = self._encode([probe.PROBE_TEXT], None)[0]
        cos = probe.cosine(fresh, expected)
        if cos >= probe.MIN_COSINE[variant]:
            return
        if self._backend in ("onnx", "onnx-int8") and not self._reexported:
            # The export is derived data: discard it and make it again from the weights (their hash was checked).
            log.warning("dense branch %r: the ONNX export gives cosine %.4f to %s; exporting it again", self.name, cos, what)
            with self._lock:
                discard_export(resolve_model_path(self.config.model), "int8" if self._backend == "onnx-int8" else "fp32")
                self._reexported = True
                self._light, self._light_tried, self._encoder = None, True, None  # the next encoder is made from torch
            self._check_encoder(expected, what)
            return
        raise IndexMismatchError(
            f"dense branch {self.name!r}: the encoder ({self._backend or 'torch'}) gives the probe text a vector with "
            f"cosine {cos:.4f} to {what} (at least {probe.MIN_COSINE[variant]} is needed): the model, its export or "
            "the library no longer computes the vectors this index holds. Rebuild the index with this setup, or use "
            "the model files and library version that built it"
        )

    def manifest(self) -> dict[str, Any]:
        m = {
            **self.declared_manifest(),
            "dimension": self.dimension,
            "distance": "Cosine",
            "document_prompt": self._prompt(self.config.document_prompt_name, _DOCUMENT_PROMPTS),
            "max_seq_length": self.light.max_seq_length if self.light is not None else int(self.model.max_seq_length),
        }
        if self.config.trust_remote_code:
            m["remote_code"] = True  # reopening asks the caller to grant trust_remote_code again
        return m
