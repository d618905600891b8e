"""Encode each benchmark collection once into MiniLM token embeddings (fp16) for benchmarks/multivector.py.

    nice .venv/bin/python benchmarks/multivector_cache.py scifact nfcorpus-preprocessed cranfield cisi

Writes benchmarks/.cache/minilm_tokens/<name>/{docs,queries}.{npy,offsets.npy,ids.json}: all token
vectors of a split concatenated (float16) and each text's row offsets. Texts are built exactly as
the dense cache (benchmarks/.cache/minilm) builds them: title + newline + text.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent
DATASETS = ROOT.parents[1] / "shared" / "datasets"
CACHE = ROOT / ".cache" / "minilm_tokens"


def texts_of(name: str) -> tuple[list[str], list[str], list[str], list[str]]:
    docs = [json.loads(line) for line in open(DATASETS / name / "corpus.jsonl", encoding="utf-8")]
    texts = [(d.get("title") or "") + "\n" + (d.get("text") or "") if d.get("title") else (d.get("text") or "") for d in docs]
    qs = [json.loads(line) for line in open(DATASETS / name / "queries.jsonl", encoding="utf-8")]
    return [str(d["_id"]) for d in docs], texts, [str(q["_id"]) for q in qs], [q["text"] for q in qs]


def save(folder: Path, split: str, ids: list[str], mats: list[np.ndarray]) -> None:
    offsets = np.cumsum([0] + [len(m) for m in mats]).astype(np.int64)
    np.save(folder / f"{split}.npy", np.concatenate(mats).astype(np.float16))
    np.save(folder / f"{split}.offsets.npy", offsets)
    (folder / f"{split}.ids.json").write_text(json.dumps(ids))


def load(name: str, split: str) -> tuple[list[str], list[np.ndarray]]:
    """(ids, one float32 token matrix per text) of a cached split."""
    folder = CACHE / name
    flat = np.load(folder / f"{split}.npy", mmap_mode="r")
    off = np.load(folder / f"{split}.offsets.npy")
    ids = json.loads((folder / f"{split}.ids.json").read_text())
    return ids, [np.asarray(flat[off[i] : off[i + 1]], dtype=np.float32) for i in range(len(ids))]


def main(names: list[str]) -> None:
    import torch

    from hybrid_retriever.branches.multivector import MultiVectorBranch
    from hybrid_retriever.config import MultiVectorBranchConfig

    torch.set_num_threads(2)
    branch = MultiVectorBranch(MultiVectorBranchConfig(batch_size=32))
    enc = branch.encoder
    for name in names:
        folder = CACHE / name
        if (folder / "docs.npy").is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        doc_ids, texts, q_ids, q_texts = texts_of(name)
        t0 = time.time()
        save(folder, "queries", q_ids, enc.encode(q_texts, is_query=True))
        before = enc.stats.truncated
        mats = []
        for s in range(0, len(texts), 512):
            mats.extend(enc.encode(texts[s : s + 512], is_query=False))
        save(folder, "docs", doc_ids, mats)
        meta = {
            "docs": len(texts),
            "truncated": enc.stats.truncated - before,
            "mean_tokens": float(np.mean([len(m) for m in mats])),
            "encode_s": time.time() - t0,
            "settings": enc.settings.describe(),
        }
        (folder / "meta.json").write_text(json.dumps(meta, indent=2))
        print(name, meta, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
