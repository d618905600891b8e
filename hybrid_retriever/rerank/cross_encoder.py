"""A cross-encoder (any sequence-classification model) loaded through ``rerankers``.

``rerankers``' own ``rank`` scores one query at a time; here every query's pairs are
flattened and scored in batches of ``batch_size``, with the ranker's tokenizer and
model. Weights load from safetensors only (never a pickle) and no code from the model
folder runs unless ``trust_remote_code`` is set.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from hybrid_retriever.config import RerankConfig
from hybrid_retriever.errors import ConfigError
from hybrid_retriever.models.resolve import pick_device, resolve_model_path
from hybrid_retriever.rerank.base import RerankBackend, logits_to_scores, per_query

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    """``auto`` -> CUDA when present, else CPU; anything else as given."""
    return pick_device(None if device == "auto" else device)


def resolve_dtype(dtype: str, device: str) -> Any:
    """``auto`` -> bfloat16 on CUDA cards that support it (else float16), float32 elsewhere."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


class CrossEncoderBackend(RerankBackend):
    """A Hugging Face cross-encoder through ``rerankers.TransformerRanker``."""

    def __init__(self, config: RerankConfig) -> None:
        if not config.model:
            raise ConfigError("rerank.model is not set: name a cross-encoder (Hugging Face id or folder)")
        try:
            from rerankers.models.transformer_ranker import TransformerRanker
        except ImportError:
            raise ConfigError("reranking needs the rerankers package: pip install 'hybrid-retriever[rerank]'") from None
        from hybrid_retriever.models.threads import apply_torch_threads

        apply_torch_threads()  # runtime.threads, as every other model loader (torch's default is one per core)
        self.name = config.model
        self.config = config
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        path = resolve_model_path(config.model)
        self.ranker = TransformerRanker(
            path,
            dtype=self.dtype,
            device=self.device,
            batch_size=config.batch_size,
            verbose=0,
            model_kwargs={"use_safetensors": True, "trust_remote_code": config.trust_remote_code},
            tokenizer_kwargs={"model_max_length": config.max_length, "trust_remote_code": config.trust_remote_code},
        )
        log.info("loaded reranker %s on %s (%s)", config.model, self.device, str(self.dtype).removeprefix("torch."))

    def score(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[list[float]]:
        import torch

        pairs = [(q, d) for q, ds in zip(queries, docs) for d in ds]
        flat: list[float] = []
        size = self.config.batch_size
        with torch.inference_mode():
            for start in range(0, len(pairs), size):
                inputs = self.ranker.tokenize(pairs[start : start + size])
                flat.extend(logits_to_scores(self.ranker.model(**inputs).logits.float().cpu().numpy()))
        return per_query(flat, docs)

    def close(self) -> None:
        self.ranker = None  # type: ignore[assignment]
