"""Tiny randomly initialised ColBERT checkpoints written to disk in both formats, and
independent reference encoders (raw BertModel + projection, ids built by hand)."""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

VOCAB = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(string.punctuation) + [
    "a", "the", "cat", "dog", "sat", "on", "mat", "ran", "fast", "slow", "red", "blue", "vector", "search",
    "token", "late", "interaction", "qdrant", "index", "query", "document", "bird", "sang", "tree", "sun",
]
IDS = {w: i for i, w in enumerate(VOCAB)}
HIDDEN, DIM = 32, 16
Q_LEN, D_LEN = 8, 12


@dataclass
class TinyCheckpoint:
    path: Path
    bert: torch.nn.Module
    linear: torch.Tensor  # (DIM, HIDDEN)


def _bert(seed: int) -> torch.nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(VOCAB), hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    return BertModel(cfg, add_pooling_layer=False).eval()


def _tokenizer(folder: Path) -> None:
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    BertTokenizer.from_pretrained(str(folder)).save_pretrained(str(folder))


def write_stanford(folder: Path, seed: int = 0, dim: int = DIM, weights: str = "model.safetensors") -> TinyCheckpoint:
    """A colbert-ir style folder: HF_ColBERT config, 'bert.' + 'linear.weight' tensors, artifact.metadata."""
    from safetensors.torch import save_file

    bert = _bert(seed)
    _tokenizer(folder)
    cfg = bert.config.to_dict()
    cfg["architectures"] = ["HF_ColBERT"]
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    torch.manual_seed(seed + 1)
    linear = torch.randn(dim, HIDDEN)
    sd = {f"bert.{k}": v.clone().contiguous() for k, v in bert.state_dict().items()}
    sd["linear.weight"] = linear.clone()
    if weights.endswith(".safetensors"):
        save_file(sd, str(folder / weights))
    else:
        torch.save(sd, str(folder / weights))
    meta = {
        "query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_token": "[Q]", "doc_token": "[D]",
        "query_maxlen": Q_LEN, "doc_maxlen": D_LEN, "mask_punctuation": True, "attend_to_mask_tokens": False,
        "dim": dim, "similarity": "cosine",
    }
    (folder / "artifact.metadata").write_text(json.dumps(meta), encoding="utf-8")
    return TinyCheckpoint(folder, bert, linear)


def write_pylate(folder: Path, seed: int = 10, attend_to_expansion: bool = False) -> TinyCheckpoint:
    """A PyLate / sentence-transformers folder: Transformer at the root, 1_Dense projection, ST configs."""
    from safetensors.torch import save_file

    bert = _bert(seed)
    _tokenizer(folder)
    bert.save_pretrained(str(folder))
    torch.manual_seed(seed + 1)
    linear = torch.randn(DIM, HIDDEN)
    (folder / "1_Dense").mkdir()
    save_file({"linear.weight": linear.clone()}, str(folder / "1_Dense" / "model.safetensors"))
    (folder / "1_Dense" / "config.json").write_text(json.dumps(
        {"in_features": HIDDEN, "out_features": DIM, "bias": False, "activation_function": "torch.nn.modules.linear.Identity"}
    ))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": D_LEN - 1, "do_lower_case": False}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "query_prefix": "[unused0]", "document_prefix": "[unused1]", "query_length": Q_LEN, "document_length": D_LEN,
        "attend_to_expansion_tokens": attend_to_expansion, "skiplist_words": list(string.punctuation),
        "do_query_expansion": True, "similarity_fn_name": "MaxSim",
    }))
    return TinyCheckpoint(folder, bert, linear)


# ------------------------------------------------------------------ independent reference


def words(text: str) -> list[str]:
    """Whitespace/punctuation split matching the tiny vocabulary (every word is in it)."""
    out, cur = [], ""
    for ch in text.lower():
        if ch.isspace():
            if cur:
                out.append(cur)
            cur = ""
        elif ch in string.punctuation:
            if cur:
                out.append(cur)
            out.append(ch)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def _run(ckpt: TinyCheckpoint, ids: list[int], attention: list[int], keep: list[bool]) -> np.ndarray:
    with torch.no_grad():
        h = ckpt.bert(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([attention])).last_hidden_state[0]
        v = h @ ckpt.linear.T
        v = v[torch.tensor(keep)]
        return torch.nn.functional.normalize(v, dim=-1).numpy()


def stanford_reference(ckpt: TinyCheckpoint, text: str, is_query: bool) -> np.ndarray:
    """colbert-ai's rule: '. ' placeholder -> marker at position 1; queries padded with [MASK]."""
    body = [IDS[w] for w in words(text)]
    limit = (Q_LEN if is_query else D_LEN) - 3  # [CLS] marker ... [SEP]
    body = body[:limit]
    ids = [IDS["[CLS]"], IDS["[unused0]" if is_query else "[unused1]"]] + body + [IDS["[SEP]"]]
    attention = [1] * len(ids)
    if is_query:
        pad = Q_LEN - len(ids)
        ids += [IDS["[MASK]"]] * pad
        attention += [0] * pad
        keep = [True] * len(ids)
    else:
        keep = [VOCAB[i] not in string.punctuation for i in ids]
    return _run(ckpt, ids, attention, keep)


def pylate_reference(ckpt: TinyCheckpoint, text: str, is_query: bool, attend_to_expansion: bool = False) -> np.ndarray:
    """PyLate's rule: cut to length - 1, insert the marker after [CLS]; queries padded with [MASK]."""
    body = [IDS[w] for w in words(text)]
    limit = (Q_LEN if is_query else D_LEN) - 3
    body = body[:limit]
    ids = [IDS["[CLS]"], IDS["[unused0]" if is_query else "[unused1]"]] + body + [IDS["[SEP]"]]
    attention = [1] * len(ids)
    if is_query:
        pad = Q_LEN - len(ids)
        ids += [IDS["[MASK]"]] * pad
        attention += [1 if attend_to_expansion else 0] * pad
        keep = [True] * len(ids)
    else:
        keep = [VOCAB[i] not in string.punctuation for i in ids]
    return _run(ckpt, ids, attention, keep)


def maxsim(q: np.ndarray, d: np.ndarray) -> float:
    """Late interaction: for each query vector the best dot product with any document vector, summed."""
    return float(sum(max(float(np.dot(qv, dv)) for dv in d) for qv in q))


DOCS = {
    "d0": "the cat sat on the mat.",
    "d1": "a dog ran fast, the dog ran!",
    "d2": "late interaction token vector search",
    "d3": "qdrant index document query",
    "d4": "the bird sang on a tree, the sun",
    "d5": "red blue cat dog bird",
    "d6": "the slow dog sat on a red mat",
    "d7": "vector search on qdrant, token a token",
}
QUERIES = ["cat on mat", "dog ran", "token vector search", "bird tree"]
