"""Rerank stage on SciFact: a cross-encoder trained on the train queries, evaluated on test.

    python -m benchmarks rerank train     # build the index (cached MiniLM vectors), train-reranker on qrels/train.tsv
    python -m benchmarks rerank dev       # the rerank weight per depth, tuned on held-out training queries
    python -m benchmarks rerank report    # fused vs fused + reranker at depth 20/50/100 on test, latency on CPU
    python -m benchmarks rerank --render-only   # the Markdown from benchmarks/results/rerank.json

On a GPU machine without network (``rerank_device.py``): ``python -m benchmarks rerank device-pack`` here
carries model, SciFact and wheels; ``benchmarks/rerank_device.sh`` there installs them, ``device-unpack``s,
then trains (``--full``), runs ``gpu-check`` and ``report``.

Nothing is tuned on the test split: the reranker is trained on the training queries
except a held-out hundred, on which ``hybrid-retriever tune --rerank-weights`` chooses the
interpolation weight; the test split is scored once with the reranker's order (the
library's default) and with the chosen weight. The reranker's scores of the
fused top 100 are computed once per test query and reused for depth 20 and 50 (a pair's
score does not depend on the depth). Latency: each query is searched fused-only and
with reranking at each depth, interleaved in a rotating order; the table reports the
median over queries of (reranked ms / fused ms) and the added milliseconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (Question, cache, load_collection, load_embeddings, machine_info, machine_md,
    md_table, write_results)
from benchmarks.questions import rerank_device

from hybrid_retriever import Document, HybridRetriever, RetrieverConfig

log = logging.getLogger("benchmarks.rerank")

NAME = "scifact"
#: Set by ``run``: the work folder (``RERANK_WORK`` or the benchmark cache's ``rerank``), its index and reranker.
WORK = INDEX = MODEL = Path()
DEPTHS = (20, 50, 100)
#: Training on the 2 CPU cores: every training query but the held-out ones, two epochs, three negatives per judged
#: pair from the fused top 30, 256 tokens per pair (the reranker scores with the same max length). The relevance
#: head starts random on top of a bi-encoder's weights, so the learning rate is at the high end of BERT fine-tuning.
MAX_LENGTH = 256
TRAINING = {"epochs": 2.0, "batch_size": 16, "learning_rate": 5e-5, "num_negatives": 3, "mine_depth": 30,
            "max_length": MAX_LENGTH, "mining_max_length": None, "seed": 0, "save_steps": 50}
#: With a GPU (--full): four negatives, one epoch at the usual learning rate.
FULL = {**TRAINING, "epochs": 1.0, "learning_rate": 3e-5, "num_negatives": 4, "save_steps": 100}
#: Training queries held out of training: the rerank weight is chosen on them (`tune --rerank-weights`).
HOLDOUT = 100
#: Rerank weights tried on the held-out queries (1 = reranker score alone, the library's default order).
WEIGHT_GRID = [round(0.1 * i, 1) for i in range(11)]
#: Set from the command line: a dense model folder instead of the packaged MiniLM, and encoding the corpus
#: instead of reading the embedding cache.
DENSE_MODEL: str | None = None
ENCODE = False


def open_index(root: Path) -> HybridRetriever:
    """SciFact's Edge index in the default configuration, built once (MiniLM vectors from the embedding cache)."""
    if (INDEX / "manifest.json").is_file():
        return HybridRetriever.open(str(INDEX), runtime={"show_progress": False})
    coll = load_collection(root, NAME)
    cfg: dict[str, Any] = {"store": {"kind": "edge", "path": str(INDEX)}, "runtime": {"show_progress": False}}
    if DENSE_MODEL is not None:  # the default configuration with the model read from a folder
        cfg["branches"] = [{"kind": "bm25", "weight": 0.5}, {"kind": "dense", "weight": 0.5, "model": DENSE_MODEL}]
    r = HybridRetriever(RetrieverConfig.validate_data(cfg))
    docs = [Document(text=t, id=i) for i, t in zip(coll.doc_ids, coll.texts) if t.strip()]
    if ENCODE:  # no embedding cache: the dense branch encodes the corpus (on a GPU when present)
        log.info("indexing and encoding %d documents", len(docs))
        r.add_documents(docs)
    else:
        emb = load_embeddings(NAME)
        row = {d: i for i, d in enumerate(emb.doc_ids)}
        log.info("indexing %d documents", len(docs))
        r.add_documents(docs, vectors={"dense": [emb.docs[row[d.id]] for d in docs]})
    r.optimize()
    return r


def sample(ids: list[str], n: int | None, seed: int = 0) -> list[str]:
    """A seeded sample of ``n`` ids in their original order (all of them when n is None)."""
    if n is None or n >= len(ids):
        return ids
    keep = set(np.random.default_rng(seed).choice(len(ids), size=n, replace=False).tolist())
    return [q for i, q in enumerate(ids) if i in keep]


def holdout_ids(train_ids: list[str], n: int) -> list[str]:
    """The training queries kept out of training (a seeded sample; another seed than any other sample here)."""
    return sample(train_ids, n, seed=1)


def train(args: argparse.Namespace) -> None:
    from hybrid_retriever.rerank.training import TrainingSettings, train_reranker

    coll = load_collection(args.datasets, NAME, splits=("train",))
    judged = coll.judged("train")
    held = set(holdout_ids(judged, args.holdout))
    qids = sample([q for q in judged if q not in held], args.train_queries)
    queries = {q: coll.queries[q] for q in qids}
    settings = dict(FULL if args.full else TRAINING)
    if DENSE_MODEL is not None:
        settings["base_model"] = DENSE_MODEL
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    if args.learning_rate is not None:
        settings["learning_rate"] = args.learning_rate
    previous = None
    if args.base_model is not None:  # a further round of training from a reranker trained here
        settings["base_model"] = str(args.base_model)
        previous = json.loads((WORK / "training.json").read_text())
    with open_index(args.datasets) as r:
        t0 = time.perf_counter()
        result = train_reranker(r, queries, coll.qrels["train"], args.model, TrainingSettings(**settings), progress=True)
        wall = time.perf_counter() - t0
    out = {"training": result.as_dict(), "wall_seconds": wall, "machine": machine_info(),
           "train_queries_available": len(judged), "holdout": sorted(held)}
    if previous is not None:
        out["previous_rounds"] = [*previous.pop("previous_rounds", []), previous]
    (WORK / "training.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    log.info("trained in %.0f s: %s", wall, result.seconds)


def dev(args: argparse.Namespace) -> None:
    """Choose the rerank weight per depth on the held-out training queries with the library's own
    ``hybrid-retriever tune --no-fusion --rerank-weights`` (reranker scores cached, 5-fold CV, one-SE rule)."""
    training = json.loads((WORK / "training.json").read_text())
    coll = load_collection(args.datasets, NAME, splits=("train",))
    held = training["holdout"]
    folder = WORK / "dev"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": coll.queries[q]}) + "\n" for q in held))
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q in held for d, g in coll.qrels["train"][q].items()))
    with HybridRetriever.open(str(INDEX), runtime={"show_progress": False}) as r:
        base = r.config
    cli = Path(sys.executable).with_name("hybrid-retriever")
    out: dict[str, Any] = {"queries": len(held), "weights": WEIGHT_GRID, "depths": {}}
    for d in sorted(args.depths):
        cfg = base.model_copy(update={"rerank": base.rerank.model_copy(update={
            "enabled": True, "model": str(args.model), "depth": d, "max_length": MAX_LENGTH, "batch_size": 32})})
        cfg.save(folder / f"rerank-{d}.yaml")
        t0 = time.perf_counter()
        subprocess.run([str(cli), "tune", "--index", str(INDEX), "--queries", str(folder / "queries.jsonl"),
                        "--qrels", str(folder / "qrels.tsv"), "--config", str(folder / f"rerank-{d}.yaml"),
                        "--no-fusion", "--rerank-weights", ",".join(map(str, WEIGHT_GRID)), "--cache", str(folder / "cache"),
                        "--out", str(folder / f"tuned-{d}.yaml"), "--report", str(folder / f"report-{d}")], check=True)
        res = json.loads((folder / f"report-{d}" / "tuning.json").read_text())["rerank"]
        res["seconds"] = time.perf_counter() - t0
        out["depths"][str(d)] = res
        log.info("depth %d: weight %s (held-out %.4f vs %.4f)", d, res["best_weight"], res["heldout_score"],
                 res["default_heldout_score"])
        (WORK / "dev.json").write_text(json.dumps(out, indent=2) + "\n")


def fused_runs(r: HybridRetriever, texts: list[str], depth: int) -> list[list[Any]]:
    out = []
    for s in range(0, len(texts), 32):
        out.extend(r.search_batch(texts[s : s + 32], k=depth, rerank=False))
    return out


def report(args: argparse.Namespace) -> None:
    from hybrid_retriever.evaluation.metrics import evaluate_ranked
    from hybrid_retriever.evaluation.rerank import collect_rerank_scores, reranked_ids
    from hybrid_retriever.evaluation.significance import compare
    from hybrid_retriever.rerank import Reranker
    from hybrid_retriever.retriever import point_id

    coll = load_collection(args.datasets, NAME, splits=("test",))
    qids = sample(coll.judged("test"), args.test_queries)
    qrels = coll.qrels["test"]
    texts = [coll.queries[q] for q in qids]
    rerank = {"enabled": True, "model": str(args.model), "max_length": MAX_LENGTH, "batch_size": 32}
    chosen = json.loads((WORK / "dev.json").read_text()) if (WORK / "dev.json").is_file() else None
    metrics = ["ndcg@10", "recall@20", "mrr@10"]
    with HybridRetriever.open(str(args.index or INDEX), runtime={"show_progress": False}, rerank=rerank) as r:
        t0 = time.perf_counter()
        hits = fused_runs(r, texts, max(args.depths))
        log.info("fused runs in %.0f s", time.perf_counter() - t0)
        fused = {q: [point_id(h.id) for h in hs] for q, hs in zip(qids, hits)}
        fused_scores = {q: [h.score for h in hs] for q, hs in zip(qids, hits)}
        by_pid = {point_id(h.id): h.id for hs in hits for h in hs}

        def doc_run(lists: dict[str, list[str]]) -> dict[str, dict[str, float]]:
            return evaluate_ranked({q: [by_pid[p] for p in ids] for q, ids in lists.items()}, {q: qrels[q] for q in qids}, metrics)

        per = {"fused": doc_run(fused)}
        t_rerank: dict[int, float] = {}
        training = json.loads((WORK / "training.json").read_text()) if (WORK / "training.json").is_file() else None
        data = {"collection": NAME, "split": "test", "n_queries": len(qids), "dev": chosen,
                "test_queries_available": len(coll.judged("test")), "metrics": metrics, "systems": {},
                "rerank_config": rerank, "training": training, "machine": machine_info(), "scoring_seconds": t_rerank,
                "depths_done": [], "gpu": "not run: no GPU was lent to this session"}
        if (WORK / "gpu.json").is_file():
            data["gpu"] = json.loads((WORK / "gpu.json").read_text())
        if DENSE_MODEL is not None:
            data["dense_note"] = (f"dense model read from {DENSE_MODEL}" + (" and the corpus encoded in this run" if ENCODE else ""))
        # Latency first (a small sample, reranker on the CPU), then quality depth by depth (reranker on the default
        # device), the results rewritten after each.
        r.reranker = Reranker(r.config.rerank.model_copy(update={"device": "cpu"}))
        data["latency"] = measure_latency(r, qids, texts, args)
        r.reranker = Reranker(r.config.rerank)
        data["quality_device"] = r.reranker.backend().device
        for d in sorted(args.depths):  # shallow first: each deeper pass scores only the new candidates
            t1 = time.perf_counter()
            sc = collect_rerank_scores(r, dict(zip(qids, texts)), {q: fused[q][:d] for q in qids},
                                       cache_dir=WORK / "scores", batch_queries=8, progress=True)
            t_rerank[d] = time.perf_counter() - t1
            per[f"rerank@{d}"] = doc_run({q: reranked_ids(fused[q], fused_scores[q], sc.scores[q], d) for q in qids})
            if chosen is not None and str(d) in chosen["depths"]:  # the weight chosen on held-out training queries
                w = float(chosen["depths"][str(d)]["best_weight"])
                per[f"tuned@{d}"] = doc_run({q: reranked_ids(fused[q], fused_scores[q], sc.scores[q], d, "interpolation", w)
                                             for q in qids})
            log.info("depth %d scored in %.0f s: nDCG@10 %.4f (fused %.4f)", d, t_rerank[d],
                     np.mean(list(per[f"rerank@{d}"]["ndcg@10"].values())), np.mean(list(per["fused"]["ndcg@10"].values())))
            base = [per["fused"]["ndcg@10"][q] for q in qids]
            for name, pq in per.items():
                vals = [pq["ndcg@10"][q] for q in qids]
                data["systems"][name] = {m: float(np.mean(list(pq[m].values()))) for m in metrics}
                if name != "fused":
                    data["systems"][name]["vs_fused"] = compare(base, vals, "randomization").as_dict()
            data["depths_done"].append(d)
            write_results("rerank", data, render(data))


def measure_latency(r: HybridRetriever, qids: list[str], texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Per query: fused-only and reranked at each depth, interleaved in a rotating order (k=10)."""
    from hybrid_retriever.rerank import Reranker

    rng = np.random.default_rng(0)
    sample = sorted(rng.choice(len(qids), size=min(args.latency_queries, len(qids)), replace=False).tolist())
    backend = r.reranker.backend()
    stages = {d: Reranker(r.config.rerank.model_copy(update={"depth": d}), ranker=backend) for d in args.depths}
    systems = ["fused", *[f"rerank@{d}" for d in args.depths]]
    ms: dict[str, list[float]] = {s: [] for s in systems}
    r.search(texts[sample[0]], k=10)  # warm-up
    for n, i in enumerate(sample):
        order = systems[n % len(systems):] + systems[: n % len(systems)]
        for s in order:
            r.reranker = None if s == "fused" else stages[int(s.split("@")[1])]
            t0 = time.perf_counter()
            r.search(texts[i], k=10)
            ms[s].append((time.perf_counter() - t0) * 1000)
    out: dict[str, Any] = {"queries": len(sample), "k": 10, "median_ms": {s: statistics.median(v) for s, v in ms.items()}}
    out["ratio_median"] = {s: statistics.median([a / b for a, b in zip(ms[s], ms["fused"])]) for s in systems[1:]}
    out["added_ms_median"] = {s: statistics.median([a - b for a, b in zip(ms[s], ms["fused"])]) for s in systems[1:]}
    out["per_query_ms"] = ms
    return out


def gpu_check(args: argparse.Namespace) -> None:
    """CUDA: the trained reranker in float32, float16 and bfloat16 on the same pairs — same order? pairs per second."""
    import torch

    from hybrid_retriever.config import RerankConfig
    from hybrid_retriever.rerank import Reranker

    if not torch.cuda.is_available():
        raise SystemExit("rerank gpu-check needs CUDA: run it on a machine with a GPU (benchmarks/rerank_device.sh)")
    coll = load_collection(args.datasets, NAME, splits=("test",))
    qids = coll.judged("test")[:50]
    with HybridRetriever.open(str(args.index or INDEX), runtime={"show_progress": False}) as r:
        hits = r.search_batch([coll.queries[q] for q in qids], k=100, rerank=False)
    queries = [coll.queries[q] for q in qids]
    docs = [[h.text for h in hs] for hs in hits]
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "pairs": sum(map(len, docs)), "max_length": 256}
    scores = {}
    for dtype in ("float32", "float16", "bfloat16"):
        stage = Reranker(RerankConfig(enabled=True, model=str(args.model), device="cuda", dtype=dtype, max_length=256,
                                      batch_size=64))
        stage.score(queries[:2], docs[:2])  # load and warm up
        torch.cuda.synchronize()
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            s = stage.score(queries, docs)
            torch.cuda.synchronize()
            runs.append(time.perf_counter() - t0)
        scores[dtype] = s
        out[dtype] = {"pairs_per_s": out["pairs"] / statistics.median(runs), "seconds": statistics.median(runs)}
        stage.close()
    auto = Reranker(RerankConfig(enabled=True, model=str(args.model)))
    out["auto"] = {"device": auto.backend().device, "dtype": str(auto.backend().dtype)}
    for dtype in ("float16", "bfloat16"):
        same_top10 = same_order = 0
        diffs = []
        for a, b in zip(scores["float32"], scores[dtype]):
            oa = sorted(range(len(a)), key=lambda i: -a[i])
            ob = sorted(range(len(b)), key=lambda i: -b[i])
            same_order += oa == ob
            same_top10 += oa[:10] == ob[:10]
            diffs.append(max(abs(x - y) for x, y in zip(a, b)))
        out[dtype].update({"queries_same_full_order": same_order, "queries_same_top10": same_top10,
                           "max_abs_score_diff": max(diffs), "queries": len(qids)})
    (WORK / "gpu.json").write_text(json.dumps(out, indent=2) + "\n")
    log.info("gpu check: %s", out)


def render(d: dict[str, Any]) -> str:
    t = d.get("training") or {}
    tr = t.get("training", {})
    st = tr.get("settings", {})
    # Training rounds, first to last (a round may start from the previous round's model).
    rounds = [p["training"] for p in t.get("previous_rounds", [])] + ([tr] if tr else [])
    sec = {k: sum(r.get("seconds", {}).get(k, 0.0) for r in rounds) for k in ("mining", "training")}
    steps = sum(int(r.get("steps", 0)) for r in rounds)
    wall = sum(p.get("wall_seconds", 0.0) for p in t.get("previous_rounds", [])) + t.get("wall_seconds", 0.0)
    n_avail = d.get("test_queries_available", d["n_queries"])
    tq = f"{d['n_queries']} of the {n_avail} test queries (a seeded sample)" if d["n_queries"] < n_avail else f"{d['n_queries']} test queries"
    dev = d.get("dev") or {}
    lines = [
        "# Rerank stage on SciFact (test)",
        "",
        f"{tq}. First stage: the default configuration (BM25 with the detected language's analyzer + "
        "all-MiniLM-L6-v2, adaptive fusion, depth 100 per branch; MiniLM document vectors from the embedding cache). "
        f"Reranker: all-MiniLM-L6-v2's encoder fine-tuned as a cross-encoder by `train-reranker` on "
        f"{tr.get('n_queries', '?')} SciFact **train** queries ({tr.get('n_pairs', '?')} labelled pairs: each judged pair "
        f"plus up to {st.get('num_negatives', '?')} hard negatives mined from the index's fused top {st.get('mine_depth', '?')}), "
        f"batch {st.get('batch_size', '?')}, max length {st.get('max_length', '?')} tokens, seed {st.get('seed', '?')}; "
        + "; then ".join(f"{r['settings']['epochs']:g} epochs at peak learning rate {r['settings']['learning_rate']:g} "
                         f"(mean loss {r['train_loss']:.3f})" for r in rounds) + ". "
        f"{len(t.get('holdout', []))} other training queries were held out of training; on them "
        "`hybrid-retriever tune --no-fusion --rerank-weights` chose the weight of the interpolated order for each depth "
        "(5-fold cross-validation, one-standard-error rule). Nothing was tuned on test.",
        "",
        "## Quality",
        "",
    ]
    rows = []
    for name, s in d["systems"].items():
        v = s.get("vs_fused")
        label = name
        if name.startswith("tuned@"):
            label = f"{name} (weight {dev['depths'][name.split('@')[1]]['best_weight']:g})"
        rows.append([label, s["ndcg@10"], s["recall@20"], s["mrr@10"],
                     f"{v['mean_diff']:+.4f}" if v else "", (f"{v['p_value']:.3g}" if v else "")])
    lines.append(md_table(["system", "nDCG@10", "Recall@20", "MRR@10", "Δ nDCG@10 vs fused", "p (paired randomisation)"], rows))
    missing = [x for x in DEPTHS if x not in d.get("depths_done", [])]
    if missing:
        lines += [f"Depth {', '.join(map(str, missing))} not measured: scoring the extra candidates did not fit the "
                  "session's time on the shared CPU cores (see the scoring times below).", ""]
    lines += [f"Scoring time of the candidates added at each depth (all {d['n_queries']} queries, CPU): "
              + ", ".join(f"depth {k}: {v:.0f} s" for k, v in d.get("scoring_seconds", {}).items()) + ".", ""]
    lines += [
        "`rerank@d`: the fused top d reordered by the reranker's score (the library's default order). `tuned@d`: ordered "
        "by w·minmax(reranker) + (1−w)·minmax(fused) with w chosen on the held-out training queries.",
        "",
    ]
    if dev.get("depths"):
        rows = [[k, f"{v['best_weight']:g}", v["heldout_score"], v["default_heldout_score"],
                 f"{v['significance'].get('p_value', float('nan')):.2g}"] for k, v in dev["depths"].items()]
        lines += [f"Weight choice on the {dev['queries']} held-out training queries (nDCG@10, cross-validated):", "",
                  md_table(["depth", "chosen weight", "held-out nDCG@10 (chosen)", "held-out nDCG@10 (weight 1)", "p"], rows)]
        untuned = [str(x) for x in d.get("depths_done", []) if str(x) not in dev["depths"]]
        if untuned:
            lines += [f"No weight was tuned for depth {', '.join(untuned)} (scoring the held-out queries that deep did not "
                      "fit the session), so that depth has no tuned row.", ""]
    lines += [
        "## Training time",
        "",
        f"Hard-negative mining (searching the index with the training queries, embedding the {tr.get('candidate_pool', '?')}-document "
        f"candidate pool; a later round reuses the embeddings): {sec['mining']:.0f} s; training ({steps} steps of "
        f"{st.get('batch_size', '?')} pairs over {len(rounds)} round(s)): {sec['training']:.0f} s; wall {wall:.0f} s "
        "on the 2 shared CPU cores (other work ran beside it).",
        "",
        "## Added latency on CPU",
        "",
    ]
    lat = d["latency"]
    rows = [["fused only", lat["median_ms"]["fused"], "", ""]]
    for s, ratio in lat["ratio_median"].items():
        rows.append([s, lat["median_ms"][s], ratio, lat["added_ms_median"][s]])
    lines.append(md_table(["system", "median ms / query", "median ratio to fused", "median added ms"], rows))
    lines += [
        f"{lat['queries']} test queries (a seeded sample), k=10, each searched fused-only and reranked at each depth, "
        f"interleaved in a rotating order; ratio = median over queries of (reranked ms / fused ms). Reranker on CPU, "
        f"float32, max length {d['rerank_config']['max_length']}, batch {d['rerank_config']['batch_size']}.",
        "",
    ]
    g = d.get("gpu")
    if isinstance(g, dict):
        rows = [[dt, g[dt]["pairs_per_s"], g[dt].get("queries_same_top10", ""), g[dt].get("queries_same_full_order", ""),
                 g[dt].get("max_abs_score_diff", "")] for dt in ("float32", "float16", "bfloat16")]
        lines += ["## GPU", "", f"The trained reranker on {g['device']}: {g['pairs']} pairs (the fused top 100 of "
                  f"{g['float16']['queries']} test queries), {g['max_length']} tokens, batches of 64; median of 3 runs. "
                  f"`device: auto, dtype: auto` resolved to {g['auto']['device']} / {g['auto']['dtype']}.", "",
                  md_table(["dtype", "pairs / s", "queries with the fp32 top 10", "queries with the fp32 full order",
                            "max |score − fp32 score|"], rows)]
    else:
        lines += ["## GPU", "", "The CUDA fp16/fp32 check was not run: no GPU was lent to this session.", ""]
    lines += ["## Machine", "", machine_md(d["machine"])]
    return "\n".join(lines) + "\n"


STEPS = ("train", "dev", "report", "gpu-check", "device-pack", "device-unpack")


def _step(value: str) -> str:
    if value not in STEPS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a step ({', '.join(STEPS)})")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("command", nargs="*", type=_step, metavar="STEP",
                   help=f"steps, in order: {', '.join(STEPS)} (default: report; device-pack / device-unpack: rerank_device.py)")
    p.add_argument("--full", action="store_true", help="the planned training setting (FULL), for a machine with a GPU")
    p.add_argument("--dense-model", default=None, help="dense model folder (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--encode", action="store_true", help="encode the corpus instead of reading the embedding cache")
    p.add_argument("--depths", type=int, nargs="*", default=list(DEPTHS))
    p.add_argument("--latency-queries", type=int, default=8)
    p.add_argument("--index", type=Path, default=None, help="the SciFact index (default: the one `train` built)")
    p.add_argument("--holdout", type=int, default=HOLDOUT, help="training queries kept out of training (rerank weight chosen on them)")
    p.add_argument("--train-queries", type=int, default=None, help="a seeded sample of the training queries (default: all)")
    p.add_argument("--epochs", type=float, default=None, help="training epochs (default: TRAINING's)")
    p.add_argument("--learning-rate", type=float, default=None, help="peak learning rate (default: TRAINING's)")
    p.add_argument("--base-model", type=Path, default=None,
                   help="train further from this reranker folder (a previous round's --model); the rounds are recorded")
    p.add_argument("--test-queries", type=int, default=None, help="a seeded sample of the test queries (default: all)")
    p.add_argument("--model", type=Path, default=None, help="reranker folder (default: the one `train` wrote)")


def run(args: argparse.Namespace) -> None:
    logging.getLogger("hybrid_retriever").setLevel(logging.INFO)
    global DENSE_MODEL, ENCODE, WORK, INDEX, MODEL
    WORK = Path(os.environ["RERANK_WORK"]) if os.environ.get("RERANK_WORK") else cache("rerank")
    INDEX, MODEL = WORK / "scifact-index", WORK / "scifact-reranker"
    args.model = args.model or MODEL
    WORK.mkdir(parents=True, exist_ok=True)
    DENSE_MODEL, ENCODE = args.dense_model, args.encode
    steps = {"train": train, "dev": dev, "gpu-check": gpu_check, "report": report,
             "device-pack": lambda a: rerank_device.pack(), "device-unpack": lambda a: rerank_device.unpack()}
    for command in args.command or ["report"]:
        steps[command](args)


QUESTION = Question("rerank", "the rerank stage on SciFact: a cross-encoder trained on train queries, weight chosen on "
                    "held-out ones, scored on test; latency; GPU check", add_arguments, run, {"rerank": render},
                    smoke=["train", "report", "--holdout", "1", "--epochs", "1", "--depths", "5", "--latency-queries", "2"])
