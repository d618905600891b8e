"""The dense branch on a GPU (``python -m benchmarks encoders --parts gpu``): automatic device choice,
CPU/GPU agreement, encoding throughput, end to end. Writes ``results/gpu_dense.{json,md}``.

Run on a machine with CUDA (the lent device machine here); ``--smoke`` runs the same code on CPU with a
few documents. The model is the library's packaged all-MiniLM-L6-v2. The device machine could not receive
its 90 MB weights within its transfer limit, so when the folder has no weights they are initialised randomly
(seeded): throughput depends on the architecture, not on the weights, and CPU/GPU agreement is checked on the
same weights. Documents are synthetic (random words of the model's vocabulary).
"""

from __future__ import annotations

import argparse
import platform
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.harness import SETTINGS, interleaved, md_table, new_edge_retriever, write_results


def gpu_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--gpu-docs", type=int, default=10_000, help="gpu: synthetic documents encoded")
    ap.add_argument("--gpu-queries", type=int, default=500, help="gpu: synthetic queries")


def ensure_weights(model_dir: Path) -> Path:
    """``model_dir``, or a copy of it with seeded random weights when it has none."""
    if (model_dir / "model.safetensors").exists():
        return model_dir
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    out = Path(tempfile.mkdtemp()) / "minilm-random"
    shutil.copytree(model_dir, out)
    BertModel(BertConfig.from_pretrained(str(model_dir))).save_pretrained(str(out))
    return out


def synthetic_texts(vocab_file: Path, n: int, words: tuple[int, int], seed: int) -> list[str]:
    vocab = [w for w in vocab_file.read_text(encoding="utf-8").split() if w.isalpha() and len(w) > 2]
    rnd = random.Random(seed)
    return [" ".join(rnd.choices(vocab, k=rnd.randint(*words))) for _ in range(n)]


def ms_per_call(fn: Callable[[str], Any], texts: list[str], desc: str) -> dict[str, float]:
    """Percentiles of ms per call of ``fn``, one text after the other (no warm-up)."""
    return interleaved({desc: fn}, texts, warmup=0, desc=desc)[desc]


def run_gpu(args: argparse.Namespace) -> None:
    import torch

    from hybrid_retriever.branches import DenseBranch
    from hybrid_retriever.config import DenseBranchConfig
    from hybrid_retriever.models import pick_device, resolve_model_path
    from hybrid_retriever.types import Document

    if not torch.cuda.is_available() and not SETTINGS.smoke:
        raise SystemExit("the gpu part needs CUDA: run it on a machine with a GPU (--smoke checks its code on CPU)")
    model_dir = Path(resolve_model_path(DenseBranchConfig().model))
    path = ensure_weights(model_dir)
    docs = synthetic_texts(model_dir / "vocab.txt", args.gpu_docs, (80, 200), seed=1)
    queries = synthetic_texts(model_dir / "vocab.txt", args.gpu_queries, (4, 12), seed=2)
    result: dict[str, Any] = {
        "machine": {
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu_threads": torch.get_num_threads(),
        },
        "auto_device": pick_device(None),
    }
    gpu = DenseBranch(DenseBranchConfig(model=str(path), batch_size=128))
    cpu = DenseBranch(DenseBranchConfig(model=str(path), device="cpu", batch_size=32))
    result["gpu_branch_device"] = str(gpu.model.device)

    # Agreement: the same texts on both devices.
    sample = docs[:64] + queries[:64]
    g = np.stack(gpu.encode_documents(sample))
    c = np.stack(cpu.encode_documents(sample))
    result["cpu_gpu_max_abs_diff"] = float(np.abs(g - c).max())
    result["cpu_gpu_min_cosine"] = float((g * c).sum(1).min())

    def docs_per_s(branch: DenseBranch, texts: list[str]) -> float:
        """One batch encode after a warm-up; CUDA is synchronised so the clock covers the GPU's work."""
        branch.encode_documents(texts[:64])
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        branch.encode_documents(texts)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return len(texts) / (time.perf_counter() - t0)

    result["encode_docs_per_s_gpu"] = docs_per_s(gpu, docs)
    result["encode_docs_per_s_cpu"] = docs_per_s(cpu, docs[:1000])
    for device, branch in (("gpu", gpu), ("cpu", cpu)):
        result[f"query_encode_ms_p50_{device}"] = ms_per_call(lambda q: branch.encode_queries([q]), queries[:200], f"{device} query")["p50"]

    # End to end: BM25 + dense (GPU chosen automatically) on Qdrant Edge.
    with tempfile.TemporaryDirectory() as tmp:
        branches = [{"kind": "bm25", "weight": 0.5}, {"kind": "dense", "weight": 0.5, "model": str(path), "batch_size": 128}]
        with new_edge_retriever(Path(tmp) / "index", branches, ingest_batch_size=1024) as r:
            t0 = time.perf_counter()
            r.add_documents([Document(text=t, id=str(i)) for i, t in enumerate(docs)])
            result["ingest_docs_per_s"] = len(docs) / (time.perf_counter() - t0)
            search = ms_per_call(lambda q: r.search(q, k=10), queries, "search")
            result["search_ms_p50"], result["search_ms_p95"] = search["p50"], search["p95"]
            result["dense_device_in_retriever"] = str(r.branches["dense"].model.device)
    write_results("gpu_dense", result, render_gpu(result))


def render_gpu(result: dict[str, Any]) -> str:
    rows = [[k, f"{v:.4g}" if isinstance(v, float) else str(v)] for k, v in result.items() if k not in ("machine", "provenance")]
    return f"# Dense branch on a GPU\n\nMachine: {result['machine']}\n\n" + md_table(["measure", "value"], rows)
