"""The search hot path, old code against new: fused search (query vectors pre-encoded) and the same Edge calls by hand.

    python -m benchmarks hotpath --base /path/to/old/checkout [--rounds 4 --queries 150]
    python -m benchmarks hotpath --instructions --base /path/to/old/checkout [--queries 100]   # needs valgrind

Each round runs a fresh child process per checkout (old and new alternate) on one SciFact index built by this
checkout, which searches every query, in a random order per query, as ``fused`` (``HybridRetriever.search`` with
the query vectors pre-encoded) and ``by hand`` (the same Edge calls written directly: ``harness.fused_edge_calls``).
``--instructions`` instead counts instructions per query under valgrind, which the load on shared cores does not
move, and adds them to the results. Writes ``results/hotpath.{json,md}`` (the Markdown says how to read them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (REPO, SETTINGS, Question, cache, child_command, child_json, edge_query_vectors, fused_edge_calls,
    git_commit, index_collection, load_collection, load_embeddings, log, machine_info, machine_md, md_table, read_results,
    with_cached_queries, write_results)


def searches(root: Path, index: Path, n: int) -> tuple[Any, Any, list[str], Any]:
    """(Child) the index opened with this process's library, a copy of it whose query vectors come from the
    embedding cache, the first ``n`` SciFact test queries, and the same Edge calls by hand (:func:`fused_edge_calls`)."""
    from hybrid_retriever import HybridRetriever

    col = load_collection(root, "scifact")
    qids = col.judged("test")[:n]
    queries = [col.queries[q] for q in qids]
    vectors = dict(zip(queries, load_embeddings("scifact").query_vectors(qids)))
    r = HybridRetriever.open(str(index))
    r.branches["dense"].encode_queries = lambda texts: [vectors[t] for t in texts]  # type: ignore[method-assign]
    rc, table = with_cached_queries(r, queries)
    sparse_q, dense_q = edge_query_vectors(table)
    edge_calls = fused_edge_calls(rc.store.shard, 100)

    def by_hand(q: str) -> None:
        edge_calls(sparse_q[q], dense_q[q])

    return r, rc, queries, by_hand


def child(root: Path, index: Path, n: int, seed: int) -> dict[str, Any]:
    """(Child) per-query ms of ``fused`` and ``by hand`` with this process's library, and the fused top 10s."""
    import gc

    r, rc, queries, by_hand = searches(root, index, n)
    systems = {"fused": lambda q: rc.search(q), "by hand": by_hand}
    for q in queries[:20]:
        for f in systems.values():
            f(q)
    gc.collect()
    gc.freeze()
    # not harness.interleaved: each round has its own seed (--seed + round) for its random orders
    rng = np.random.default_rng(seed)
    ms: dict[str, list[float]] = {s: [] for s in systems}
    cpu: dict[str, list[float]] = {s: [] for s in systems}
    names = list(systems)
    for q in queries:
        for s in (names[i] for i in rng.permutation(len(names))):
            c0, t0 = time.process_time(), time.perf_counter()
            systems[s](q)
            ms[s].append((time.perf_counter() - t0) * 1000)
            cpu[s].append((time.process_time() - c0) * 1000)
    hits = [[(h.id, h.score) for h in rc.search(q)] for q in queries]  # scores too: equal to the bit
    r.close()
    return {"ms": ms, "cpu_ms": cpu, "hits": hits}


def instructions_child(root: Path, index: Path, n: int, mode: str, flags: Path) -> None:
    """(Child, under callgrind with instrumentation off) warm up, then run ``n`` searches of ``mode`` (fused or
    by hand) between flag files, while the parent has instrumentation on (:func:`count_instructions`)."""
    import gc

    r, rc, queries, by_hand = searches(root, index, n)
    search = rc.search if mode == "fused" else by_hand
    for q in queries[:20]:
        search(q)
    gc.collect()
    gc.freeze()
    (flags / "ready").touch()
    _wait_for(flags / "go")
    for q in queries:
        search(q)
    (flags / "done").touch()
    _wait_for(flags / "stop")
    r.close()


def _wait_for(flag: Path, proc: Any = None) -> None:
    while not flag.exists():
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the child under valgrind exited ({proc.returncode}) before {flag.name}")
        time.sleep(0.05)


def count_instructions(checkout: Path, args: Any, index: Path, mode: str, label: str = "new") -> float:
    """Instructions per search of ``mode`` with ``checkout``'s library (valgrind's callgrind, counted only while
    the searches run): a cost that, unlike CPU time, does not move with the load on the machine."""
    import re
    import shutil
    import tempfile

    flags = Path(tempfile.mkdtemp(dir=cache("hotpath")))
    out = flags / "callgrind.out"
    child, env = child_command("hotpath", ["--instructions-child", mode, "--flags", str(flags), "--index", str(index),
                                           "--datasets", str(args.datasets), "--queries", str(args.queries)], checkout)
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *child]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(flags / "ready", proc)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        (flags / "go").touch()
        _wait_for(flags / "done", proc)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
        (flags / "stop").touch()
        proc.wait(timeout=600)
        totals = re.search(r"^totals:\s*(\d+)", out.read_text(), re.M)
        if totals is None:
            raise SystemExit(f"no instruction totals in {out}")
        shutil.copy(out, cache("hotpath") / f"callgrind-{label}-{mode.replace(' ', '-')}.out")  # for callgrind_annotate
        return int(totals.group(1)) / args.queries
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(flags, ignore_errors=True)


def instructions(args: Any, index: Path) -> None:
    """``--instructions``: instructions per query, fused and by hand, old checkout and new (added to results/hotpath.*).

    The timings already in the results stay; the header then names both runs (timings, then instructions) and the
    timing run's commit (the instruction section names its own).
    """
    import shutil

    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("hotpath --instructions needs valgrind (callgrind and callgrind_control) on PATH: install valgrind")
    systems = {args.base_label: args.base.resolve(), "new": REPO}
    counts = {name: {mode: count_instructions(path, args, index, mode, name) for mode in ("fused", "by hand")}
              for name, path in systems.items()}
    for name, c in counts.items():
        log.info("%s: fused %.2fM, by hand %.2fM instructions per query", name, c["fused"] / 1e6, c["by hand"] / 1e6)
    res = read_results("hotpath")
    res["instructions"] = {"command": SETTINGS.command, "git_commit": git_commit(), "queries": args.queries, "per_query": counts}
    timing = res.get("provenance") if "per_checkout" in res else None
    res["provenance"] = {
        "command": f"{timing['command'].split(' + ')[0]} + {SETTINGS.command}" if timing else SETTINGS.command,
        "git_commit": timing["git_commit"] if timing else git_commit(),
        "config_hash": timing["config_hash"] if timing else SETTINGS.config_hash,
    }
    write_results("hotpath", res, render(res), rendered_only=True)


def render_instructions(res: dict[str, Any]) -> str:
    """The instruction counts (``--instructions``) as Markdown. Where the instructions go: ``callgrind_annotate
    --inclusive=yes`` of the new code's fused run (``<cache>/hotpath/callgrind-new-fused.out``), read on 2026-12-07
    at git 9bb1ba2 (figures per query)."""
    ins = res["instructions"]
    rows = [[name, c["fused"] / 1e6, c["by hand"] / 1e6, (c["fused"] - c["by hand"]) / 1e6, c["fused"] / c["by hand"]]
            for name, c in ins["per_query"].items()]
    return f"""## Instructions per query (valgrind), old code against new

Regenerate: `{ins['command']}` (git {ins['git_commit']}). Instructions executed by the whole process while
{ins['queries']} SciFact test queries are searched (callgrind, instrumentation on for the timed loop only), per query:
a count that the load on the shared cores does not move, unlike the CPU times above.

{md_table(["code", "fused (M)", "by hand (M)", "library (fused - by hand, M)", "fused / by hand"], rows)}

Where the new code's instructions beyond the hand-written calls go (``callgrind_annotate --inclusive=yes``
of its fused run, kept as ``<benchmark cache>/hotpath/callgrind-new-fused.out``; per query, of ≈5.25M):

- **Reading point ids from Edge's answers, ≈1.0M (≈19%).** qdrant-edge builds a Python `uuid.UUID`
  (`uuid.UUID.__init__` runs in the interpreter) for every `ScoredPoint.id` read: ≈7,300 instructions
  each. A fused search reads ≈341 per query (both branch lists with their tie margin, 2 × 110, and the
  completion answers, whose scores must be matched to their points); the hand-written calls read ≈210
  (they never look at the completion answers). qdrant-edge's Python API has no cheaper way to read ids.
- **numpy, ≈0.56M**: fusion's small-array calls (normalisation, interpolation, top-k order).
- **The rest, ≈3.7M, is interpreter time of the library's own Python**, spread over fusion (adaptive
  signals and weights, the interpolation's candidate columns), the runs and score completion (key sets,
  the id memo), the top 10's hits and provenance (a `BranchScore` per branch) and request building.

Both sides pay alike for the native searches and for score completion's `HasIdCondition` (≈1.1M for
≈140 ids: qdrant-edge first tries each `uuid.UUID` as an integer and formats a `TypeError` for it).
(These counts are of the code before the id memo stopped replacing its entries at each search; the
change moves the count by 0.2% but spares the garbage collector a fresh object per id and search, which
shows in the CPU times above.) 1.15× would need the library's share cut from ≈0.70 of the hand-written calls to 0.15: more than its
Python can give up while completion needs every id read as a Python object; a batch accessor in
qdrant-edge (ids as integers or bytes) or completion inside one Edge request would be the next steps.
"""


def run_child(checkout: Path, args: Any, seed: int, index: Path, in_process: bool = False) -> dict[str, Any]:
    """One round of one checkout: a fresh child process (``in_process``: this process, this checkout's library,
    which ``--smoke`` uses for the new code so that it starts one child only)."""
    if in_process:
        return json.loads(json.dumps(child(args.datasets, index, args.queries, seed)))  # as a child's JSON gives it
    return child_json("hotpath", ["--child", "--index", str(index), "--datasets", str(args.datasets), "--queries",
                                  str(args.queries), "--seed", str(seed)], checkout)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--base", type=Path, help="checkout of the old code")
    ap.add_argument("--base-label", default="old")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--queries", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--instructions", action="store_true", help="count instructions per query under valgrind (old and new)")
    ap.add_argument("--instructions-child", choices=["fused", "by hand"], help="(child) the searches counted under valgrind")
    ap.add_argument("--flags", type=Path, help="(child under valgrind) folder of the flag files")
    ap.add_argument("--index", type=Path, help="(child) the index the parent built")
    ap.add_argument("--child-out", type=Path)


def run(args: argparse.Namespace) -> None:
    if args.child:
        return args.child_out.write_text(json.dumps(child(args.datasets, args.index, args.queries, args.seed)))
    if args.instructions_child:
        return instructions_child(args.datasets, args.index, args.queries, args.instructions_child, args.flags)
    if args.base is None:
        raise SystemExit("hotpath needs --base: a checkout of the old code to compare with")
    index = cache("hotpath") / "index"
    if not (index / "manifest.json").is_file():  # SciFact's texts with their cached MiniLM vectors, by this checkout
        log.info("building the index at %s", index)
        r, docs = index_collection(load_collection(args.datasets, "scifact", splits=()), index, prefix="scifact/")
        r.close()
        log.info("indexed %d documents", len(docs))
    if args.instructions:
        return instructions(args, index)
    info = machine_info()
    systems = {args.base_label: args.base.resolve(), "new": REPO}
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in systems}
    for rnd in range(args.rounds):
        order = list(systems) if rnd % 2 == 0 else list(systems)[::-1]
        for name in order:
            in_process = SETTINGS.smoke and name == "new"  # --smoke: one child process only
            runs[name].append(run_child(systems[name], args, args.seed + rnd, index, in_process))
            m = runs[name][-1]["ms"]
            c = runs[name][-1]["cpu_ms"]
            log.info("round %d %s: fused p50 %.3f ms (CPU %.3f), by hand p50 %.3f ms (CPU %.3f)", rnd + 1, name,
                     np.median(m["fused"]), np.median(c["fused"]), np.median(m["by hand"]), np.median(c["by hand"]))
    info["loadavg_end"] = list(os.getloadavg())
    per: dict[str, Any] = {}
    for name, rs in runs.items():
        per[name] = {"queries_per_round": len(rs[0]["ms"]["fused"])}
        for clock in ("ms", "cpu_ms"):
            fused = np.concatenate([r[clock]["fused"] for r in rs])
            hand = np.concatenate([r[clock]["by hand"] for r in rs])
            per[name][clock] = {
                "fused_p50": float(np.median(fused)),
                "by_hand_p50": float(np.median(hand)),
                "library_python_median_paired": float(np.median(fused - hand)),
                "fused_over_by_hand_median_ratio": float(np.median(fused / np.maximum(hand, 1e-6))),
            }
    old = args.base_label
    round_ratio = [float(np.median(b["cpu_ms"]["fused"]) / np.median(a["cpu_ms"]["fused"])) for a, b in zip(runs[old], runs["new"])]
    same = all(a["hits"] == b["hits"] for a, b in zip(runs[old], runs["new"]))
    res = {
        "base_label": old,
        "machine": info,
        "collections": ["scifact"],
        "per_checkout": per,
        "new_over_old_fused_per_round": round_ratio,
        "new_over_old_fused_median": statistics.median(round_ratio),
        "same_top10_all_queries": same,
        "raw": {n: [{"ms": r["ms"], "cpu_ms": r["cpu_ms"]} for r in rs] for n, rs in runs.items()},
    }
    res["provenance"] = {"command": SETTINGS.command, "git_commit": git_commit(), "config_hash": SETTINGS.config_hash}
    previous = read_results("hotpath")
    if "instructions" in previous:  # the counts (--instructions) stay with the timings; the header names both runs
        res["instructions"] = previous["instructions"]
        res["provenance"]["command"] += " + " + previous["instructions"]["command"]
    write_results("hotpath", res, render(res), rendered_only=True)


def render(res: dict[str, Any]) -> str:
    if "per_checkout" not in res:  # --instructions before any timing run
        return render_instructions(res)
    p = res["per_checkout"]
    rows = [[n, clock_name, v[clock]["fused_p50"], v[clock]["by_hand_p50"], v[clock]["library_python_median_paired"],
             v[clock]["fused_over_by_hand_median_ratio"]]
            for clock, clock_name in (("cpu_ms", "CPU time"), ("ms", "wall time")) for n, v in p.items()]
    new = p["new"]["cpu_ms"]
    return f"""# Hot path: fused search against the same Edge calls by hand, old code against new

{machine_md(res['machine'])}

Index: {', '.join(res['collections'])} (its 5,183 documents with their MiniLM vectors from the
benchmark cache; the default configuration: BM25 + MiniLM, adaptive DBSF fusion, depth 100, score
completion, k = 10). Queries: {p['new']['queries_per_round']} SciFact test queries with their cached MiniLM vectors,
so no encoder runs in the timed path. Each round is a fresh process per checkout, old and new
alternating, each query's two systems in random order; ms per query. With the 2 cores shared by many
busy processes (load average above), wall time mostly measures waiting for a core; the process's
CPU time per query (``time.process_time``, every thread of the process) is what the code costs and
is the figure the targets are read on.

{md_table(["code", "clock", "fused p50", "by hand p50", "library Python (median paired diff)", "fused / by hand (median ratio)"], rows)}

New / old, fused search CPU time: {res['new_over_old_fused_median']:.3f} (median over rounds; per round
{', '.join(f'{x:.3f}' for x in res['new_over_old_fused_per_round'])}). Top 10 of every query, ids and scores to the bit:
{'identical' if res['same_top10_all_queries'] else 'DIFFERENT'} between the checkouts.

Targets (issue 21), CPU time: library Python ≤ 1 ms per fused query: **{new['library_python_median_paired']:.2f} ms**;
fused ≤ 1.15× the same work by hand: **{new['fused_over_by_hand_median_ratio']:.2f}×**.

What changed (issue 21, second round; CPU times above are read with the load average in mind, the
instruction counts below are not moved by it): a search keeps every point as the store's key until its
final top k (`Store.search_ranked`; on Qdrant Edge the UUID's 128-bit integer, hashed and compared
in C and ordered as the text ids are) through tie order, score completion (keys map back to Edge's
own id objects, remembered once per id, so no id is parsed again) and fusion, in parallel lists per branch
(`hybrid_retriever/branch_runs.py`) instead of a `ScoredId` per hit; text ids, documents and
provenance are made for the returned hits only (`search_branches` turns the same runs into its
`BranchResult`s). Interpolation prepares its candidate columns with C-level dict and map calls and
skips the NaN filters when there is no NaN; numpy's reductions are called directly. The dense
model's fragmentation (a second tokenisation of each query) is measured only where adaptive
fusion reads it (a query whose language is outside the model's languages). The first round
(before f6482fa): an id memo in the Edge store, numpy interpolation, BM25 encoded on the calling
thread.
""" + ("\n" + render_instructions(res) if "instructions" in res else "")


QUESTION = Question("hotpath", "the search hot path, old code against new: the library's own Python per fused query",
                    add_arguments, run, {"hotpath": render},
                    smoke=["--base", str(REPO), "--base-label", "same", "--rounds", "1", "--queries", "3"])
