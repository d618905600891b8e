"""CUDA half precision against float32 for cross-encoder rerankers: same top 10? how many pairs per second?

    python benchmarks/rerank_device.py pack            # here: the trained reranker (float16) and SciFact pairs
                                                       #   into benchmarks/.cache/rerank-dev (< 64 MiB)
    bash benchmarks/rerank_device.sh                   # there (a GPU machine, no network): the check below
    python benchmarks/rerank_device.py check --smoke   # anywhere: the same code on the CPU, float32, tiny sizes

Two models: the SciFact reranker trained by ``benchmarks/rerank.py train`` (MiniLM-L6
size, 128 tokens) and a cross-encoder of common size built here with random weights
(BERT-base: 12 layers, hidden 768, 256 tokens, seeded; no download). Each scores the
fused top 20 of SciFact test queries in float32, float16 and bfloat16 on the GPU (batches
of 64, median of 3 timed runs after a warm-up); the report gives pairs per second, the
speed-up over float32, the share of queries whose top 10 is in the same order as
float32's, and the largest score difference. Target (issue 23): float16 at least 1.8×
float32's pairs per second with top-10 agreement of at least 0.95.

Only torch, transformers, safetensors and numpy are imported (the GPU image has them; the
library itself is not installed there).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
DEV = BENCH / ".cache" / "rerank-dev"
RESULTS = BENCH / "results"
TARGET = {"speedup": 1.8, "agreement": 0.95}


def pack(args: argparse.Namespace) -> None:
    """The trained reranker as float16 safetensors and the fused top 20 of the test queries (from `rerank.py report`)."""
    import torch
    from safetensors.torch import load_file, save_file

    src = Path(args.model)
    dst = DEV / "model"
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix in (".json", ".txt") and not f.name.startswith("hybrid_retriever"):
            shutil.copy(f, dst / f.name)
    weights = load_file(str(src / "model.safetensors"))
    save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()},
              str(dst / "model.safetensors"))
    cands = json.loads((Path(args.work) / "candidates.json").read_text())
    with gzip.open(DEV / "pairs.json.gz", "wt", encoding="utf-8") as g:
        json.dump({q: {"query": c["query"], "docs": c["docs"][:20]} for q, c in cands.items()}, g)
    size = sum(f.stat().st_size for f in DEV.rglob("*") if f.is_file())
    print(f"packed {len(cands)} queries and the model into {DEV} ({size / 2**20:.1f} MiB)")


def load_pairs(n_queries: int | None) -> dict[str, dict[str, Any]]:
    with gzip.open(DEV / "pairs.json.gz", "rt", encoding="utf-8") as g:
        data = json.load(g)
    keys = sorted(data)[:n_queries] if n_queries else sorted(data)
    return {k: data[k] for k in keys}


def build_models(smoke: bool) -> dict[str, tuple[Any, Any, int]]:
    """name -> (model in float32 on the CPU, tokenizer, max length)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(DEV / "model"))
    trained = AutoModelForSequenceClassification.from_pretrained(str(DEV / "model"), dtype=torch.float32).eval()
    torch.manual_seed(0)
    size = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64) if smoke else \
        dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    base = BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, num_labels=1, **size)).eval()
    return {"trained reranker (MiniLM-L6 size)": (trained, tok, 128),
            ("tiny random BERT (smoke)" if smoke else "random BERT-base size"): (base, tok, 256)}


def score_all(model: Any, tok: Any, pairs: dict[str, dict[str, Any]], length: int, device: str, batch: int) -> tuple[dict[str, list[float]], float]:
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
    import torch

    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --smoke on a CPU")
    dtypes = ["float32"] if args.smoke else ["float32", "float16", "bfloat16"]
    pairs = load_pairs(3 if args.smoke else args.queries)
    n_pairs = sum(len(c["docs"]) for c in pairs.values())
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({platform.machine()}, {os.cpu_count()} cores)",
                              "smoke": args.smoke, "queries": len(pairs), "pairs": n_pairs, "batch": args.batch,
                              "runs": args.runs, "versions": {"torch": torch.__version__,
                                                              "transformers": __import__("transformers").__version__},
                              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "models": {}}
    t_all = time.perf_counter()
    for name, (model, tok, length) in build_models(args.smoke).items():
        rows: dict[str, Any] = {}
        reference: dict[str, list[float]] = {}
        for dt in dtypes:
            m = model.to(device=device, dtype=getattr(torch, dt))
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
        model.to("cpu")
    report["wall_seconds"] = time.perf_counter() - t_all
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rerank_gpu.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "rerank_gpu.md").write_text(render(report))
    print(render(report))


def render(r: dict[str, Any]) -> str:
    lines = ["# Rerank on a GPU: float16 / bfloat16 against float32", "",
             f"{r['device']}; {r['queries']} SciFact test queries × their fused top 20 = {r['pairs']} pairs, batches "
             f"of {r['batch']}, median of {r['runs']} timed runs after a warm-up; torch {r['versions']['torch']}, "
             f"transformers {r['versions']['transformers']}; {r['date']}; {r['wall_seconds']:.0f} s in all.", ""]
    if r["smoke"]:
        lines += ["**Smoke run on the CPU (float32 only, 3 queries, a tiny random BERT): it shows the script works, "
                  "not how a GPU performs.**", ""]
    lines += [f"Target (issue 23): float16 ≥ {TARGET['speedup']}× float32's pairs per second, with the same top 10 as "
              f"float32 for ≥ {TARGET['agreement']:.0%} of the queries.", ""]
    for name, m in r["models"].items():
        lines += [f"## {name}: {m['params_m']:.0f} M parameters, {m['max_length']} tokens", "",
                  "| dtype | pairs / s | speed-up vs float32 | queries with float32's top 10 (in order) | max abs score diff | meets target |",
                  "|---|---|---|---|---|---|"]
        for dt, v in m["dtypes"].items():
            meets = "" if dt == "float32" else ("yes" if v["speedup"] >= TARGET["speedup"] and v["top10_agreement"] >= TARGET["agreement"] else "no")
            lines.append(f"| {dt} | {v['pairs_per_s']:,.0f} | {v['speedup']:.2f}× | {v['top10_agreement']:.3f} | "
                         f"{v['max_abs_diff']:.3g} | {meets} |")
        lines.append("")
    lines += ["The random BERT-base model's scores mean nothing; it measures speed and how much half precision moves "
              "the order of a model of that size (its near-ties make agreement a strict test).", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["pack", "check"])
    p.add_argument("--smoke", action="store_true", help="CPU, float32 only, 3 queries, a tiny random BERT")
    p.add_argument("--queries", type=int, default=300, help="test queries scored (default: all packed)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", default=os.environ.get("OUT") or str(RESULTS), help="folder for rerank_gpu.md/.json")
    p.add_argument("--model", default=None, help="pack: the trained reranker folder (default: rerank.py's)")
    p.add_argument("--work", default=None, help="pack: rerank.py's work folder (candidates.json)")
    args = p.parse_args()
    if args.command == "pack":
        work = Path(args.work or os.environ.get("RERANK_WORK") or
                    Path(os.environ.get("HYBRID_RETRIEVER_BENCH_CACHE") or BENCH / ".cache") / "rerank")
        args.work = str(work)
        args.model = args.model or str(work / "scifact-reranker")
        pack(args)
    else:
        check(args)


if __name__ == "__main__":
    sys.exit(main())
