"""CUDA half precision against float32 for cross-encoder rerankers: same top 10? how many pairs per second?

    python -m benchmarks rerank device-pack           # here, after `rerank report`: the trained reranker (float16), the
                                                      #   fused top 20 of the test queries and the library's missing
                                                      #   wheels into benchmarks/.cache/rerank-dev (< 64 MiB)
    bash benchmarks/rerank_device.sh                  # there (a GPU machine, no network): `rerank gpu-check`
    python -m benchmarks rerank gpu-check --cpu-smoke # anywhere: the same code on the CPU, float32, tiny sizes

Two models: the SciFact reranker trained by ``rerank train`` (MiniLM-L6 size, 128 tokens) and a
cross-encoder of common size built here with random weights (BERT-base: 12 layers, hidden 768, 256
tokens, seeded; no download). Each scores the fused top 20 of SciFact test queries in float32, float16
and bfloat16 on the GPU (batches of 64, median of 3 timed runs after a warm-up); the report gives pairs
per second, the speed-up over float32, the share of queries whose top 10 is in the same order as
float32's, and the largest score difference. Target (issue 23): float16 at least 1.8× float32's pairs
per second with top-10 agreement of at least 0.95.

The check itself uses only torch, transformers and numpy; the entry point imports the library's
configuration, so ``device-pack`` also carries the wheels the GPU image lacks.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import BENCH, SETTINGS, cache, log, md_table, write_results

#: Where ``device-pack`` writes (carried to the GPU machine); under ``--smoke`` a folder of the smoke cache.
DEV = BENCH / ".cache" / "rerank-dev"
TARGET = {"speedup": 1.8, "agreement": 0.95}
#: Wheels the GPU image lacks (it has torch, transformers, sentence-transformers, numpy) for ``python -m benchmarks``.
WHEELS = ["pydantic==2.14.4", "pydantic_core==2.50.5", "annotated-types==0.8.0", "typing-inspection==0.4.5",
          "qdrant-client==1.20.0", "qdrant-edge-py==0.9.0", "rerankers==0.10.0"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The GPU check's options (on the rerank question's parser)."""
    p.add_argument("--cpu-smoke", action="store_true", help="gpu-check: CPU, float32 only, 3 queries, a tiny random BERT")
    p.add_argument("--queries", type=int, default=300, help="gpu-check: test queries scored (default: all packed)")
    p.add_argument("--batch", type=int, default=64, help="gpu-check: pairs per batch")
    p.add_argument("--runs", type=int, default=3, help="gpu-check: timed runs per model and dtype (the median is kept)")
    p.add_argument("--dev", type=Path, default=None, help=f"device-pack / gpu-check: the packed folder (default: {DEV})")


def dev_dir(args: argparse.Namespace) -> Path:
    if args.dev is not None:
        return Path(args.dev)
    return cache("rerank-dev") if SETTINGS.smoke else DEV


def pack(args: argparse.Namespace, work: Path) -> None:
    """The trained reranker as float16 safetensors, the fused top 20 of the test queries (``work/candidates.json``,
    written by ``rerank report``) and, except under ``--smoke``, the wheels of :data:`WHEELS`."""
    import torch
    from safetensors.torch import load_file, save_file

    dev = dev_dir(args)
    src = Path(args.model)
    dst = dev / "model"
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix in (".json", ".txt") and not f.name.startswith("hybrid_retriever"):
            shutil.copy(f, dst / f.name)
    weights = load_file(str(src / "model.safetensors"))
    save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()},
              str(dst / "model.safetensors"))
    cands = json.loads((work / "candidates.json").read_text())
    with gzip.open(dev / "pairs.json.gz", "wt", encoding="utf-8") as g:
        json.dump({q: {"query": c["query"], "docs": c["docs"][:20]} for q, c in cands.items()}, g)
    if not SETTINGS.smoke:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
                        "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform",
                        "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "-d", str(dev / "whl"), *WHEELS],
                       check=True)
    size = sum(f.stat().st_size for f in dev.rglob("*") if f.is_file())
    log.info("packed %d queries and the model into %s (%.1f MiB)", len(cands), dev, size / 2**20)


def load_pairs(dev: Path, n_queries: int | None) -> dict[str, dict[str, Any]]:
    f = dev / "pairs.json.gz"
    if not f.is_file():
        raise SystemExit(f"no packed pairs at {f}: run `python -m benchmarks rerank report device-pack` first")
    with gzip.open(f, "rt", encoding="utf-8") as g:
        data = json.load(g)
    keys = sorted(data)[:n_queries] if n_queries else sorted(data)
    return {k: data[k] for k in keys}


def build_models(dev: Path, smoke: bool) -> dict[str, tuple[Any, Any, int]]:
    """name -> (model in float32 on the CPU, tokenizer, max length)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(dev / "model"))
    trained = AutoModelForSequenceClassification.from_pretrained(str(dev / "model"), dtype=torch.float32).eval()
    torch.manual_seed(0)
    size = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64) if smoke else \
        dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    base = BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, num_labels=1, **size)).eval()
    return {"trained reranker (MiniLM-L6 size)": (trained, tok, 128),
            ("tiny random BERT (smoke)" if smoke else "random BERT-base size"): (base, tok, 256)}


def score_all(model: Any, tok: Any, pairs: dict[str, dict[str, Any]], length: int, device: str, batch: int
              ) -> tuple[dict[str, list[float]], float]:
    """Every query's scores and the seconds the forward passes took (tokenised beforehand, synchronised)."""
    import torch

    flat = [(q, c["query"], d) for q, c in pairs.items() for d in c["docs"]]
    batches = []
    for s in range(0, len(flat), batch):
        part = flat[s : s + batch]
        enc = tok([x[1] for x in part], [x[2] for x in part], padding=True, truncation=True, max_length=length,
                  return_tensors="pt")
        batches.append({k: v.to(device) for k, v in enc.items()})
    out: list[float] = []
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            out.extend(model(**b).logits[:, 0].float().cpu().tolist())
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    scores: dict[str, list[float]] = {}
    for (q, _, _), s in zip(flat, out):
        scores.setdefault(q, []).append(s)
    return scores, seconds


def top10(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:10]


def check(args: argparse.Namespace) -> None:
    """float32, float16 and bfloat16 on CUDA (``--cpu-smoke``: float32 on the CPU) into ``rerank_gpu.json/.md``."""
    import torch

    smoke = args.cpu_smoke
    device = "cpu" if smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("rerank gpu-check needs CUDA: run it on a machine with a GPU (benchmarks/rerank_device.sh), "
                         "or add --cpu-smoke to run the same code on the CPU")
    dev = dev_dir(args)
    dtypes = ["float32"] if smoke else ["float32", "float16", "bfloat16"]
    pairs = load_pairs(dev, 3 if smoke else args.queries)
    n_pairs = sum(len(c["docs"]) for c in pairs.values())
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({platform.machine()}, {os.cpu_count()} cores)",
        "smoke": smoke, "queries": len(pairs), "pairs": n_pairs, "batch": args.batch, "runs": args.runs,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "models": {}}
    t_all = time.perf_counter()
    for name, (model, tok, length) in build_models(dev, smoke).items():
        rows: dict[str, Any] = {}
        reference: dict[str, list[float]] = {}
        for dt in dtypes:
            # a copy of the float32 model each time: bfloat16 is not rounded through float16
            m = copy.deepcopy(model).to(device=device, dtype=getattr(torch, dt))
            score_all(m, tok, pairs, length, device, args.batch)  # warm-up (kernels, allocator)
            times, scores = [], {}
            for _ in range(args.runs):
                scores, sec = score_all(m, tok, pairs, length, device, args.batch)
                times.append(sec)
            if dt == "float32":
                reference = scores
            sec = statistics.median(times)
            same = [top10(scores[q]) == top10(reference[q]) for q in pairs]
            rows[dt] = {"pairs_per_s": n_pairs / sec, "seconds": sec, "top10_agreement": sum(same) / len(same),
                        "max_abs_diff": max(abs(a - b) for q in pairs for a, b in zip(scores[q], reference[q]))}
        for dt in dtypes:
            rows[dt]["speedup"] = rows[dt]["pairs_per_s"] / rows["float32"]["pairs_per_s"]
        report["models"][name] = {"max_length": length, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                                  "dtypes": rows}
        del m
    report["wall_seconds"] = time.perf_counter() - t_all
    write_results("rerank_gpu", report, render(report))


def _model_tables(r: dict[str, Any], level: str) -> list[str]:
    lines = []
    for name, m in r["models"].items():
        rows = []
        for dt, v in m["dtypes"].items():
            meets = "" if dt == "float32" else ("yes" if v["speedup"] >= TARGET["speedup"] and v["top10_agreement"] >= TARGET["agreement"] else "no")
            rows.append([dt, f"{v['pairs_per_s']:,.0f}", f"{v['speedup']:.2f}×", f"{v['top10_agreement']:.3f}",
                         f"{v['max_abs_diff']:.3g}", meets])
        lines += [f"{level} {name}: {m['params_m']:.0f} M parameters, {m['max_length']} tokens", "",
                  md_table(["dtype", "pairs / s", "speed-up vs float32", "queries with float32's top 10 (in order)",
                            "max abs score diff", "meets target"], rows)]
    lines += ["The random BERT-base model's scores mean nothing; it measures speed and how much half precision moves "
              "the order of a model of that size (its near-ties make agreement a strict test).", ""]
    return lines


def render(r: dict[str, Any]) -> str:
    """``rerank_gpu.md`` from its JSON: a GPU run, a ``--cpu-smoke`` run, or (``not_run``) the note that no GPU ran it
    with the CPU smoke run's tables."""
    if r.get("not_run"):
        return "\n".join([r["not_run"], "", *_model_tables(r, "###")])
    lines = ["# Rerank on a GPU: float16 / bfloat16 against float32", "",
             f"{r['device']}; {r['queries']} SciFact test queries × their fused top 20 = {r['pairs']} pairs, batches "
             f"of {r['batch']}, median of {r['runs']} timed runs after a warm-up; torch {r['versions']['torch']}, "
             f"transformers {r['versions']['transformers']}; {r['date']}; {r['wall_seconds']:.0f} s in all.", ""]
    if r["smoke"]:
        lines += ["**Smoke run on the CPU (float32 only, 3 queries, a tiny random BERT): it shows the script works, "
                  "not how a GPU performs.**", ""]
    lines += [f"Target (issue 23): float16 ≥ {TARGET['speedup']}× float32's pairs per second, with the same top 10 as "
              f"float32 for ≥ {TARGET['agreement']:.0%} of the queries.", ""]
    return "\n".join(lines + _model_tables(r, "##"))
