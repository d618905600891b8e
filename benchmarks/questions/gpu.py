"""The dense branch on a GPU (``python -m benchmarks encoders --parts gpu``): automatic device choice,
CPU/GPU agreement, encoding throughput, end to end. Writes ``results/gpu_dense.{json,md}``.

Run on a machine with CUDA (the lent device machine here); ``--smoke`` runs the same code on CPU with a
few documents. ``--model-dir`` is a sentence-transformers folder with the all-MiniLM-L6-v2 architecture
(default: the library's packaged MiniLM). The device machine could not receive the 90 MB weights within
its transfer limit, so when the folder has no weights they are initialised randomly (seeded): throughput
depends on the architecture, not on the weights, and CPU/GPU agreement is checked on the same weights.
Documents are synthetic (random words of the model's vocabulary).
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import SETTINGS, write_results


def gpu_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--model-dir", type=Path, default=None, help="gpu: the model folder (default: the packaged MiniLM)")
    ap.add_argument("--gpu-docs", type=int, default=10_000, help="gpu: synthetic documents encoded")
    ap.add_argument("--gpu-queries", type=int, default=500, help="gpu: synthetic queries")


def ensure_weights(model_dir: Path) -> Path:
    if (model_dir / "model.safetensors").exists():
        return model_dir
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    out = Path(tempfile.mkdtemp()) / "minilm-random"
    import shutil

    shutil.copytree(model_dir, out)
    BertModel(BertConfig.from_pretrained(str(model_dir))).save_pretrained(str(out))
    return out


def synthetic_texts(vocab_file: Path, n: int, words: tuple[int, int], seed: int) -> list[str]:
    vocab = [w for w in vocab_file.read_text(encoding="utf-8").split() if w.isalpha() and len(w) > 2]
    rnd = random.Random(seed)
    return [" ".join(rnd.choices(vocab, k=rnd.randint(*words))) for _ in range(n)]


def run_gpu(args: argparse.Namespace) -> None:
    import torch

    from hybrid_retriever import HybridRetriever, RetrieverConfig
    from hybrid_retriever.branches import DenseBranch
    from hybrid_retriever.config import DenseBranchConfig
    from hybrid_retriever.models import pick_device, resolve_model_path
    from hybrid_retriever.types import Document

    if not torch.cuda.is_available() and not SETTINGS.smoke:
        raise SystemExit("the gpu part needs CUDA: run it on a machine with a GPU (--smoke checks its code on CPU)")
    model_dir = args.model_dir or Path(resolve_model_path(DenseBranchConfig().model))
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

    def query_ms(branch: DenseBranch) -> float:
        times = []
        for q in queries[:200]:
            t0 = time.perf_counter()
            branch.encode_queries([q])
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    result["query_encode_ms_p50_gpu"] = query_ms(gpu)
    result["query_encode_ms_p50_cpu"] = query_ms(cpu)

    # End to end: BM25 + dense (GPU chosen automatically) on Qdrant Edge.
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RetrieverConfig.model_validate(
            {
                "store": {"kind": "edge", "path": str(Path(tmp) / "index")},
                "branches": [{"kind": "bm25", "weight": 0.5}, {"kind": "dense", "weight": 0.5, "model": str(path), "batch_size": 128}],
                "runtime": {"show_progress": False, "ingest_batch_size": 1024},
            }
        )
        with HybridRetriever(cfg) as r:
            t0 = time.perf_counter()
            r.add_documents([Document(text=t, id=str(i)) for i, t in enumerate(docs)])
            result["ingest_docs_per_s"] = len(docs) / (time.perf_counter() - t0)
            times = []
            for q in queries:
                t0 = time.perf_counter()
                r.search(q, k=10)
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            result["search_ms_p50"] = times[len(times) // 2]
            result["search_ms_p95"] = times[int(len(times) * 0.95)]
            result["dense_device_in_retriever"] = str(r.branches["dense"].model.device)  # type: ignore[attr-defined]
    write_results("gpu_dense", result, render_gpu(result))


def render_gpu(result: dict[str, Any]) -> str:
    lines = ["# Dense branch on a GPU", "", f"Machine: {result['machine']}", "", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in result.items()
              if k not in ("machine", "provenance")]
    return "\n".join(lines) + "\n"
