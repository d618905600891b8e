"""The dense branch on a GPU: automatic device choice, CPU/GPU agreement, encoding throughput, end to end.

Run on a machine with CUDA (the lent device machine here):

    python3 benchmarks/gpu_dense.py MODEL_DIR OUT_DIR

MODEL_DIR is a sentence-transformers folder with the all-MiniLM-L6-v2 architecture. The
device machine cannot receive the 90 MB weights within its transfer limit, so when the
folder has no weights the script initialises them randomly (seeded): throughput
depends on the architecture, not on the weights, and CPU/GPU agreement is checked on
the same weights. Documents are synthetic (random words of the model's vocabulary).
Writes gpu_dense.json and gpu_dense.md into OUT_DIR.
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def ensure_weights(model_dir: Path) -> Path:
    if (model_dir / "model.safetensors").exists():
        return model_dir
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


def main(model_dir: str, out_dir: str) -> None:
    from hybrid_retriever import HybridRetriever, RetrieverConfig
    from hybrid_retriever.branches import DenseBranch
    from hybrid_retriever.config import DenseBranchConfig
    from hybrid_retriever.models import pick_device
    from hybrid_retriever.types import Document

    path = ensure_weights(Path(model_dir))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = synthetic_texts(Path(model_dir) / "vocab.txt", 10_000, (80, 200), seed=1)
    queries = synthetic_texts(Path(model_dir) / "vocab.txt", 500, (4, 12), seed=2)
    result: dict = {
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
    (out / "gpu_dense.json").write_text(json.dumps(result, indent=2))
    lines = ["# Dense branch on a GPU", "", f"Machine: {result['machine']}", "", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in result.items() if k != "machine"]
    (out / "gpu_dense.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
