"""GPU half of the multivector ``report``: MiniLM token embeddings and exact MaxSim on an accelerator.

``python -m benchmarks multivector --parts device --device-in IN_DIR`` where the 2-core CPU is too slow to
encode the collections (the device machine; without CUDA it stops with a clear message, also under
``--smoke``). IN_DIR holds ``minilm/`` (all-MiniLM-L6-v2, weights stored as float16 to fit the transfer
limit) and ``data/<name>/{corpus,queries}.jsonl.gz``. Token vectors follow the library's ``tokens``
format exactly (sentence-transformers tokenisation, padding and punctuation dropped from documents,
L2-normalised; see hybrid_retriever/branches/late_interaction). Pooling and MUVERA FDEs use the
library's own modules (loaded by path: the device machine may lack the library's other dependencies).
Writes one ``<name>.npz`` per collection into ``<cache>/mvdev_out`` (or ``--device-out``): exact MaxSim
of every query against every document (float16), FDE top-1000 candidates, the top-100 (ids, scores) per
pool factor 2/3/4, token counts, and timings.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import string
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import REPO, cache, log

LI = REPO / "hybrid_retriever" / "branches" / "late_interaction"


def _module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, LI / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def doc_text(r: dict) -> str:
    return (r.get("title") or "") + "\n" + (r.get("text") or "") if r.get("title") else (r.get("text") or "")


def encode(model: Any, texts: list[str], skip: Any, bs: int = 128) -> tuple[list[Any], int]:
    import torch

    tok = model.tokenizer
    out: list[Any] = [None] * len(texts)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    truncated = 0
    with torch.inference_mode():
        for s in range(0, len(texts), bs):
            idx = order[s : s + bs]
            batch = [texts[i].strip() for i in idx]
            lengths = tok(batch, truncation=False, padding=False, return_length=True, verbose=False)["length"]
            truncated += sum(1 for n in lengths if n > model.max_seq_length)
            f = tok(batch, padding=True, truncation="longest_first", max_length=model.max_seq_length, return_tensors="pt")
            f = {k: v.cuda() for k, v in f.items()}
            h = model[0].auto_model(**f).last_hidden_state.float()
            for r, i in enumerate(idx):
                keep = f["attention_mask"][r].bool()
                if skip is not None:
                    k2 = keep & ~torch.isin(f["input_ids"][r], skip)
                    keep = k2 if bool(k2.any()) else keep
                out[i] = torch.nn.functional.normalize(h[r][keep], dim=-1)
    return out, truncated  # type: ignore[return-value]


def padded(mats: list[Any]) -> tuple[Any, Any]:
    import torch

    n, L, d = len(mats), max(len(m) for m in mats), mats[0].shape[1]
    x = torch.zeros((n, L, d), device="cuda", dtype=torch.float16)
    mask = torch.zeros((n, L), device="cuda", dtype=torch.bool)
    for i, m in enumerate(mats):
        x[i, : len(m)] = m.half()
        mask[i, : len(m)] = True
    return x, mask


def maxsim_all(q: Any, docs: Any, mask: Any, chunk: int = 1024) -> Any:
    import torch

    out = []
    for s in range(0, len(docs), chunk):
        sim = torch.einsum("qd,nld->nql", q.half(), docs[s : s + chunk]).float()
        sim = sim.masked_fill(~mask[s : s + chunk, None, :], float("-inf"))
        out.append(sim.max(-1).values.sum(-1))
    return torch.cat(out)


def run_device(args: argparse.Namespace) -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("the multivector device part needs CUDA: run it on the device machine (python -m benchmarks "
                         "multivector --parts device --device-in IN_DIR)")
    if args.device_in is None:
        raise SystemExit("--parts device needs --device-in IN_DIR (minilm/ and data/<name>/{corpus,queries}.jsonl.gz)")
    muvera, pooling = _module("muvera"), _module("pooling")
    inp, out = args.device_in, args.device_out or cache("mvdev_out")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(inp / "minilm"), device="cuda").float().eval()
    tok = model.tokenizer
    skip = torch.tensor(
        sorted({tok.convert_tokens_to_ids(c) for c in string.punctuation} - {tok.unk_token_id}), device="cuda"
    )
    meta: dict = {}
    for cdir in sorted((inp / "data").iterdir()):
        if args.collections and cdir.name not in args.collections:
            continue
        name = cdir.name
        t0 = time.time()
        docs = rows(cdir / "corpus.jsonl.gz")
        qs = rows(cdir / "queries.jsonl.gz")
        dmats, truncated = encode(model, [doc_text(r) for r in docs], skip)
        qmats, _ = encode(model, [q["text"] for q in qs], None)
        t_enc = time.time() - t0
        D, M = padded(dmats)
        full = torch.stack([maxsim_all(q, D, M) for q in qmats])  # (nq, nd)
        t_exact = time.time() - t0 - t_enc
        dim = dmats[0].shape[1]
        fde = muvera.FDEEncoder(muvera.FDEParams(dimension=dim, k_sim=4, dim_proj=16, repetitions=20, seed=42))
        dn = [m.cpu().numpy() for m in dmats]
        qn = [m.cpu().numpy() for m in qmats]
        t1 = time.time()
        F = torch.tensor(np.stack([fde.document(x) for x in dn]), device="cuda")
        t_fde_docs = time.time() - t1
        G = torch.tensor(np.stack([fde.query(x) for x in qn]), device="cuda")
        fde_top = (G @ F.T).topk(min(1000, len(dn)), dim=1).indices.cpu().numpy().astype(np.int32)
        res = {
            "full": full.cpu().numpy().astype(np.float16),
            "fde_top": fde_top,
            "tokens": np.array([len(x) for x in dn], dtype=np.int32),
            "query_tokens": np.array([len(x) for x in qn], dtype=np.int32),
        }
        pool_s = {}
        for pf in (2, 3, 4):
            t1 = time.time()
            pooled = [torch.tensor(pooling.pool_tokens(x, pf, 1), device="cuda") for x in dn]
            pool_s[pf] = time.time() - t1
            P, PM = padded(pooled)
            sc = torch.stack([maxsim_all(q, P, PM) for q in qmats])
            top = sc.topk(min(100, len(dn)), dim=1)
            res[f"pool{pf}_ids"] = top.indices.cpu().numpy().astype(np.int32)
            res[f"pool{pf}_scores"] = top.values.cpu().numpy().astype(np.float32)
            res[f"pool{pf}_tokens"] = np.array([len(x) for x in pooled], dtype=np.int32)
            del P, PM, sc
        np.savez_compressed(out / f"{name}.npz", **res)
        meta[name] = {
            "docs": len(docs), "queries": len(qs), "truncated": truncated, "encode_s": t_enc, "exact_s": t_exact,
            "fde_docs_s": t_fde_docs, "pool_s": pool_s, "doc_ids": [str(r["_id"]) for r in docs],
            "query_ids": [str(q["_id"]) for q in qs], "fde_size": fde.size,
            "gpu": torch.cuda.get_device_name(0),
        }
        log.info("%s %s", name, {k: v for k, v in meta[name].items() if not k.endswith("_ids")})
        del D, M, full, F, G
        torch.cuda.empty_cache()
    (out / f"meta_{'_'.join(sorted(meta))}.json").write_text(json.dumps(meta))

