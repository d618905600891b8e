"""The runtime of every late-interaction encoder: tokenise, run the backbone, project, select, normalise.

The checkpoint loaders (:mod:`.pylate_format`, :mod:`.stanford_format`,
:mod:`.tokens_format`) read a checkpoint's own files into a :class:`TokenEncoder`:
its tokenizer, backbone, projection head and :class:`EncoderSettings` (marker
tokens, lengths, query augmentation, skiplist, normalisation). The encoder then
turns texts into one matrix of token vectors per text, exactly as the checkpoint's
own library does, so scores match the original models.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: How a marker token enters the sequence.
#: "insert": after the first token ([CLS]), as PyLate does (sequence cut to length - 1 first);
#: "replace": text prefixed with ". " whose token is overwritten by the marker, as Stanford ColBERT does;
#: "none": no marker (token embeddings of a plain encoder).
MarkerStyle = Literal["insert", "replace", "none"]


@dataclass(frozen=True)
class EncoderSettings:
    """Everything a checkpoint says about turning text into token vectors."""

    format: str
    query_length: int
    document_length: int
    marker_style: MarkerStyle = "none"
    query_marker_id: int | None = None
    document_marker_id: int | None = None
    #: Pad queries to ``query_length`` with [MASK] tokens (query augmentation) and keep them.
    query_expansion: bool = False
    #: Let the real query tokens attend to the [MASK] expansion tokens.
    attend_to_expansion: bool = False
    #: Token ids dropped from documents (punctuation), never from queries.
    skiplist_ids: frozenset[int] = field(default_factory=frozenset)
    normalize: bool = True
    lowercase: bool = False
    #: Strip surrounding whitespace before tokenising (sentence-transformers does).
    strip: bool = False

    def describe(self) -> dict[str, Any]:
        """The settings that define stored vectors (recorded in the index manifest)."""
        return {
            "format": self.format,
            "query_length": self.query_length,
            "document_length": self.document_length,
            "marker_style": self.marker_style,
            "query_marker_id": self.query_marker_id,
            "document_marker_id": self.document_marker_id,
            "query_expansion": self.query_expansion,
            "attend_to_expansion": self.attend_to_expansion,
            "skiplist_size": len(self.skiplist_ids),
            "normalize": self.normalize,
        }


@dataclass
class EncodeStats:
    """Running counts of documents that needed care (reported, warned about once)."""

    documents: int = 0
    truncated: int = 0
    empty_after_skiplist: int = 0


class TokenEncoder:
    """A backbone (Hugging Face ``AutoModel``), an optional projection and :class:`EncoderSettings`.

    ``forward`` may replace the backbone call: it takes the tokenised batch and returns
    the last hidden states (used to share one forward pass with the dense branch).
    """

    def __init__(
        self,
        tokenizer: Any,
        backbone: Any,
        projection: Any | None,
        settings: EncoderSettings,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        import torch

        self.tokenizer = tokenizer
        self.backbone = backbone.to(device).eval() if backbone is not None else None
        self.projection = projection.to(device).eval() if projection is not None else None
        self.settings = settings
        self.device = device
        self.batch_size = batch_size
        self.stats = EncodeStats()
        self._stats_lock = threading.Lock()
        # A fast tokenizer keeps padding/truncation state: calls from several threads must not interleave.
        self._tokenizer_lock = threading.Lock()
        self._warned_truncation = False
        self._warned_empty = False
        self._torch = torch
        if settings.query_expansion and tokenizer.mask_token_id is None:
            raise ValueError("query expansion needs a [MASK] token, and this tokenizer has none")

    # ------------------------------------------------------------------ dimension

    @property
    def dimension(self) -> int:
        """Size of each token vector."""
        if self.projection is not None:
            weight = getattr(self.projection, "weight", None)
            if weight is None:
                weight = next(p for p in self.projection.parameters() if p.dim() == 2)
            return int(weight.shape[0])
        return int(self.backbone.config.hidden_size)

    # ---------------------------------------------------------------- tokenising

    def _prepare(self, texts: Sequence[str], is_query: bool) -> list[str]:
        s = self.settings
        out = [str(t) for t in texts]
        if s.strip:
            out = [t.strip() for t in out]
        if s.lowercase:
            out = [t.lower() for t in out]
        if s.marker_style == "replace":
            out = [". " + t for t in out]
        return out

    def _max_length(self, is_query: bool) -> int:
        s = self.settings
        length = s.query_length if is_query else s.document_length
        marker = s.query_marker_id if is_query else s.document_marker_id
        if s.marker_style == "insert" and marker is not None:
            return length - 1
        return length

    def tokenize(self, texts: Sequence[str], is_query: bool) -> dict[str, Any]:
        """The model inputs for ``texts`` (markers, padding and [MASK] augmentation applied).

        ``_keep`` marks the positions that become token vectors.
        """
        torch = self._torch
        s = self.settings
        prepared = self._prepare(texts, is_query)
        max_length = self._max_length(is_query)
        expand = is_query and s.query_expansion
        with self._tokenizer_lock:
            enc = self.tokenizer(
                prepared,
                padding="max_length" if expand else True,
                truncation="longest_first",
                max_length=max_length,
                return_tensors="pt",
            )
        ids = enc["input_ids"]
        mask = enc["attention_mask"]
        types = enc.get("token_type_ids")
        marker = s.query_marker_id if is_query else s.document_marker_id
        if s.marker_style == "insert" and marker is not None:
            col = torch.full((ids.shape[0], 1), marker, dtype=ids.dtype)
            ids = torch.cat([ids[:, :1], col, ids[:, 1:]], dim=1)
            mask = torch.cat([mask[:, :1], torch.ones_like(col), mask[:, 1:]], dim=1)
            if types is not None:
                types = torch.cat([types[:, :1], torch.zeros_like(col), types[:, 1:]], dim=1)
        elif s.marker_style == "replace" and marker is not None:
            ids = ids.clone()
            ids[:, 1] = marker
        keep = self._keep_mask(ids, mask, is_query, expand)
        if expand:
            ids = ids.masked_fill(mask == 0, int(self.tokenizer.mask_token_id))
            if s.attend_to_expansion:
                mask = torch.ones_like(mask)
        out = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            out["token_type_ids"] = types
        out["_keep"] = keep
        return out

    def _keep_mask(self, ids: Any, real: Any, is_query: bool, expand: bool) -> Any:
        """Which output positions become token vectors."""
        torch = self._torch
        if is_query and expand:
            return torch.ones_like(ids, dtype=torch.bool)
        keep = real.bool()
        if not is_query and self.settings.skiplist_ids:
            skip = torch.tensor(sorted(self.settings.skiplist_ids), dtype=ids.dtype)
            keep = keep & ~torch.isin(ids, skip)
        return keep

    def _count_truncated(self, texts: Sequence[str]) -> int:
        prepared = self._prepare(texts, False)
        with self._tokenizer_lock:
            lengths = self.tokenizer(prepared, truncation=False, padding=False, return_length=True, verbose=False)["length"]
        return sum(1 for n in lengths if n > self._max_length(False))

    # ------------------------------------------------------------------ encoding

    def hidden_states(self, features: dict[str, Any]) -> Any:
        """Last hidden states of the backbone for a tokenised batch."""
        inputs = {k: v.to(self.device) for k, v in features.items() if not k.startswith("_")}
        out = self.backbone(**inputs)
        return out[0] if isinstance(out, (tuple, list)) else out.last_hidden_state

    def encode(self, texts: Sequence[str], is_query: bool) -> list[np.ndarray]:
        """One float32 matrix (tokens × dimension) per text, in order."""
        texts = list(texts)
        if not texts:
            return []
        torch = self._torch
        order = np.argsort([-len(t) for t in texts], kind="stable")
        results: list[np.ndarray | None] = [None] * len(texts)
        if not is_query:
            self._note_truncation(texts)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = [texts[i] for i in idx]
                features = self.tokenize(batch, is_query)
                hidden = self.hidden_states(features)
                for row, i in enumerate(idx):
                    results[i] = self.finish(
                        hidden[row], features["_keep"][row], features["attention_mask"][row], is_query
                    )
        return results  # type: ignore[return-value]

    def finish(self, hidden: Any, keep: Any, real: Any, is_query: bool) -> np.ndarray:
        """Projection, token selection and normalisation of one text's hidden states.

        ``keep`` selects the positions that become vectors; ``real`` (the non-padding
        positions) replaces it when the skiplist left nothing.
        """
        torch = self._torch
        keep = keep.to(hidden.device)
        if not bool(keep.any()):
            # Nothing left after the skiplist: keep every real token rather than store nothing.
            keep = real.bool().to(hidden.device)
            with self._stats_lock:
                self.stats.empty_after_skiplist += 1
                warn = not self._warned_empty
                self._warned_empty = True
            if warn:
                log.warning(
                    "a %s has no token left after the punctuation skiplist; its punctuation tokens are kept "
                    "(counted in the branch's stats as empty_after_skiplist)",
                    "query" if is_query else "document",
                )
        vectors = hidden[keep]
        if self.projection is not None:
            vectors = self.projection(vectors)
        if self.settings.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
        return vectors.float().cpu().numpy().astype(np.float32, copy=False)

    def _note_truncation(self, texts: Sequence[str]) -> None:
        n = self._count_truncated(texts)
        with self._stats_lock:
            self.stats.documents += len(texts)
            self.stats.truncated += n
            warn = n > 0 and not self._warned_truncation
            if warn:
                self._warned_truncation = True
        if warn:
            log.warning(
                "%d of %d documents are longer than the model's document length (%d tokens) and were truncated; "
                "split long documents into passages to index all their text (further truncations are counted "
                "in the branch's stats, not logged)",
                n,
                len(texts),
                self.settings.document_length,
            )
