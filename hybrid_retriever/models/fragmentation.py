"""How well a model's own tokenizer reads a text: the share of word pieces that are fragments.

A model reads a language it was trained on in whole words or a few large pieces; on a
script or language it barely knows, its tokenizer shreds words into many small
continuation pieces or gives up (unknown pieces). The share of such pieces differs
several-fold between the two (all-MiniLM-L6-v2 on xquad-r queries: English 0.06,
German 0.49, Chinese 0.67; benchmarks/results/multilingual.md), costs a tokenisation
(microseconds per query) and needs no relevance judgements, so adaptive fusion reads it
per query (:mod:`hybrid_retriever.fusion.adaptive`).

A piece counts as a fragment when it is the tokenizer's unknown token or continues the
word of the piece before it (same word index from the tokenizer's pre-tokenisation):
the rule holds for WordPiece (``##``), SentencePiece and byte-level BPE alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence


@dataclass(frozen=True)
class FragmentationMeter:
    """Measures fragmentation with a private copy of a model's fast tokenizer.

    The copy never pads and cuts at the model's input length, so measuring never changes
    the padding or truncation state of the tokenizer the model encodes with (a Hugging
    Face fast tokenizer keeps that state, shared by every thread).
    """

    tokenizer: Any  # tokenizers.Tokenizer
    unk_id: int | None

    @classmethod
    def of(cls, hf_tokenizer: Any) -> "FragmentationMeter | None":
        """A meter for a Hugging Face tokenizer; None when it is not a fast one (no word indices to read)."""
        backend = getattr(hf_tokenizer, "backend_tokenizer", None) if getattr(hf_tokenizer, "is_fast", False) else None
        if backend is None:
            return None
        return cls._copy(backend, getattr(hf_tokenizer, "model_max_length", None), getattr(hf_tokenizer, "unk_token_id", None))

    @classmethod
    def of_folder(cls, tokenizer: Any, folder: Path) -> "FragmentationMeter":
        """A meter for a ``tokenizers.Tokenizer`` of the model in ``folder`` (the torch-free path), set up as
        :meth:`of` would from the same folder: ``model_max_length`` and ``unk_token`` from its tokenizer_config.json."""
        try:
            config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
        unk = config.get("unk_token") if isinstance(config, dict) else None
        unk = unk.get("content") if isinstance(unk, dict) else unk
        limit = config.get("model_max_length") if isinstance(config, dict) else None
        return cls._copy(tokenizer, limit, tokenizer.token_to_id(unk) if isinstance(unk, str) else None)

    @classmethod
    def _copy(cls, backend: Any, limit: Any, unk_id: int | None) -> "FragmentationMeter":
        from tokenizers import Tokenizer

        own = Tokenizer.from_str(backend.to_str())
        own.no_padding()
        if isinstance(limit, int) and 0 < limit < 1_000_000:
            own.enable_truncation(limit)
        else:
            own.no_truncation()
        return cls(own, unk_id)

    def measure(self, texts: Sequence[str]) -> list[float | None]:
        """Each text's share of fragment pieces in [0, 1]; None for a text without pieces. Special tokens are left out."""
        out: list[float | None] = []
        for enc in self.tokenizer.encode_batch(list(texts), add_special_tokens=False) if texts else []:
            if not enc.ids:
                out.append(None)
                continue
            frag = 0
            prev = None
            for tid, w in zip(enc.ids, enc.word_ids):
                if (self.unk_id is not None and tid == self.unk_id) or (w is not None and w == prev):
                    frag += 1
                prev = w
            out.append(frag / len(enc.ids))
        return out


def fragmentation(hf_tokenizer: Any, texts: Sequence[str]) -> list[float | None]:
    """Each text's fragmentation under ``hf_tokenizer`` (see :class:`FragmentationMeter`); all None for a slow tokenizer."""
    meter = FragmentationMeter.of(hf_tokenizer)
    return meter.measure(texts) if meter is not None else [None] * len(texts)
