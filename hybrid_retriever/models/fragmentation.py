"""How well a model's own tokenizer reads a text: the share of word pieces that are fragments.

A model reads a language it was trained on in whole words or a few large pieces; on a
script or language it barely knows, its tokenizer shreds words into many small
continuation pieces or gives up (unknown pieces). The share of such pieces differs
several-fold between the two (all-MiniLM-L6-v2 on xquad-r queries: English 0.01,
German 0.09, Chinese 0.6; benchmarks/results/multilingual.md), costs a tokenisation
(microseconds per query) and needs no relevance judgements, so adaptive fusion reads it
per query (:mod:`hybrid_retriever.fusion.adaptive`).

A piece counts as a fragment when it is the tokenizer's unknown token or continues the
word of the piece before it (same word index from the tokenizer's pre-tokenisation):
the rule holds for WordPiece (``##``), SentencePiece and byte-level BPE alike.
"""

from __future__ import annotations

from typing import Any, Sequence


def fragmentation(tokenizer: Any, texts: Sequence[str]) -> list[float | None]:
    """Each text's share of fragment pieces in [0, 1] under ``tokenizer`` (a Hugging Face fast tokenizer);
    None for a text without pieces, and for every text when the tokenizer cannot say which word a piece
    belongs to (a slow tokenizer).

    Special tokens are left out; texts are cut to the tokenizer's ``model_max_length`` as the model reads them.
    """
    texts = list(texts)
    if not texts or not getattr(tokenizer, "is_fast", False):
        return [None] * len(texts)
    enc = tokenizer(texts, add_special_tokens=False, truncation=True, padding=False)
    unk = getattr(tokenizer, "unk_token_id", None)
    out: list[float | None] = []
    for i, ids in enumerate(enc["input_ids"]):
        words = enc.word_ids(i)
        if not ids:
            out.append(None)
            continue
        frag = 0
        prev = None
        for tid, w in zip(ids, words):
            if (unk is not None and tid == unk) or (w is not None and w == prev):
                frag += 1
            prev = w
        out.append(frag / len(ids))
    return out
