"""Cold start of the CLI and the service: a fresh process per measurement, old code against new, interleaved.

    python -m benchmarks coldstart --base /path/to/old/checkout [--reps 5]

Each repetition times, for both checkouts in random order, fresh processes of ``hybrid-retriever query TEXT
--index DEMO --json`` (a demo query, rotating through the four; to exit), ``hybrid-retriever serve --index DEMO``
(until ``GET /ready`` answers 200, the models loaded; then one ``POST /search``) and ``hybrid-retriever --help``
(to exit); the hits of both checkouts are compared. Both search the same demo index (``hybrid-retriever demo``)
with the same ONNX export cache (``$HYBRID_RETRIEVER_CACHE`` or a folder under the benchmark cache), each process
importing its checkout's library. A warm-up round per checkout first writes bytecode and (new code) records the
model folder's hash in the export record, as the first use of an installed package does.
Writes ``results/coldstart.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.harness import (REPO, SETTINGS, Question, cache, checkout_env, free_port, log, machine_info, machine_md, md_table,
    write_results)

QUERIES = [
    "who was Peruggia",
    "which amphibian can regenerate a missing leg",
    "Quill thermostat says the room is hot but it is cold",
    "first powered flight",
]
HEAVY = ("torch", "transformers", "sentence_transformers", "qdrant_client")
#: Runs the CLI and reports (on stderr) which heavy modules the process imported.
_RUN = (
    "import json, sys\n"
    "from hybrid_retriever.cli import app\n"
    "try:\n    app(sys.argv[1:], standalone_mode=False)\n"
    "finally:\n"
    f"    print('HEAVY=' + json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)\n"
)


def run_cli(checkout: Path, cache: Path, args: list[str], cwd: Path) -> tuple[float, str, list[str]]:
    """(seconds, stdout, heavy modules imported) of one fresh CLI process."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _RUN, *args], env=checkout_env(checkout, HYBRID_RETRIEVER_CACHE=str(cache)),
                          cwd=cwd, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{checkout}: {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    heavy = next((json.loads(line[6:]) for line in proc.stderr.splitlines() if line.startswith("HEAVY=")), [])
    return seconds, proc.stdout, heavy


def serve_ready(checkout: Path, cache: Path, index: Path, cwd: Path, query: str) -> tuple[float, list[dict[str, Any]]]:
    """(seconds until GET /ready answered 200, hits of one POST /search) of a fresh ``serve`` process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hybrid_retriever.cli", "serve", "--index", str(index), "--port", str(port),
         "--log-level", "warning"],
        env=checkout_env(checkout, HYBRID_RETRIEVER_CACHE=str(cache)), cwd=cwd, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{checkout}: serve exited: {proc.stderr.read()[-3000:] if proc.stderr else ''}")
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"{checkout}: serve not ready after 600 s")
            try:
                with urllib.request.urlopen(url + "/ready", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.02)
        seconds = time.perf_counter() - t0
        req = urllib.request.Request(url + "/search", data=json.dumps({"query": query, "k": 10}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            hits = json.loads(resp.read())["hits"]
        return seconds, hits
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def compare_hits(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """Same ids in the same order, and the largest score difference."""
    same = [h["id"] for h in a] == [h["id"] for h in b]
    diff = max((abs(x["score"] - y["score"]) for x, y in zip(a, b)), default=0.0)
    return {"same_ranking": same, "max_score_diff": diff}


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median": statistics.median(values), "min": min(values), "max": max(values)}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--base", type=Path, help="checkout of the old code (e.g. a git worktree of main)")
    ap.add_argument("--base-label", default="old", help="name of the old code in the report (e.g. its commit)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--index", type=Path, default=None, help="the demo index (default: under the benchmark cache)")
    ap.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> None:
    if args.base is None:
        raise SystemExit("coldstart needs --base: a checkout of the old code to compare with")
    work = cache("coldstart")
    args.index = args.index or work / "demo-index"
    model_cache = Path(os.environ.get("HYBRID_RETRIEVER_CACHE") or work / "model-cache")
    if SETTINGS.smoke:  # the library's own model cache: the one the demo index built in this process (below) uses
        from hybrid_retriever.models.onnx_backend import default_cache_dir

        model_cache = default_cache_dir()
    systems = {args.base_label: args.base.resolve(), "new": REPO}
    if not (args.index / "manifest.json").is_file():
        shutil.rmtree(args.index, ignore_errors=True)
        log.info("building the demo index at %s", args.index)
        if SETTINGS.smoke:  # in this process, which loads torch anyway (machine_info): the smoke loads it once
            import contextlib
            import io

            from hybrid_retriever.cli import demo

            with contextlib.redirect_stdout(io.StringIO()):
                demo(index_path=args.index, k=3)
        else:
            run_cli(REPO, model_cache, ["demo", "--index", str(args.index)], work)
    info = machine_info()
    for name, checkout in ({} if SETTINGS.smoke else systems).items():  # warm-up: bytecode, the ONNX export and its record
        run_cli(checkout, model_cache, ["query", QUERIES[0], "--index", str(args.index), "--json"], work)
        run_cli(checkout, model_cache, ["--help"], work)
        log.info("warmed up %s (%s)", name, checkout)
    rng = random.Random(args.seed)
    times: dict[str, dict[str, list[float]]] = {n: {"query": [], "serve_ready": [], "help": []} for n in systems}
    heavy: dict[str, dict[str, list[str]]] = {n: {} for n in systems}
    hits: dict[str, dict[str, Any]] = {n: {} for n in systems}
    for rep in range(args.reps):
        q = QUERIES[rep % len(QUERIES)]
        for kind in ("query", "serve_ready", "help"):
            order = list(systems)
            rng.shuffle(order)
            for name in order:
                checkout = systems[name]
                if kind == "query":
                    s, out, imported = run_cli(checkout, model_cache, ["query", q, "--index", str(args.index), "--json"], work)
                    hits[name][f"cli: {q}"] = json.loads(out)
                    heavy[name]["query"] = imported
                elif kind == "help":
                    s, _, imported = run_cli(checkout, model_cache, ["--help"], work)
                    heavy[name]["help"] = imported
                else:
                    s, served = serve_ready(checkout, model_cache, args.index, work, q)
                    hits[name][f"serve: {q}"] = served
                times[name][kind].append(s)
        log.info("rep %d/%d: %s", rep + 1, args.reps,
                 {n: {k: round(v[-1], 2) for k, v in t.items()} for n, t in times.items()})
    info["loadavg_end"] = list(os.getloadavg())
    old, new = args.base_label, "new"
    ratios = {kind: summary([b / a for a, b in zip(times[old][kind], times[new][kind])]) for kind in times[new]}
    same = {key: compare_hits(hits[old][key], hits[new][key]) for key in hits[new]}
    res = {
        "machine": info,
        "command": f"python -m benchmarks coldstart --base {args.base} --base-label {old} --reps {args.reps}",
        "systems": {n: str(p) for n, p in systems.items()},
        "seconds": {n: {k: summary(v) for k, v in t.items()} for n, t in times.items()},
        "raw_seconds": times,
        "ratio_new_over_old": ratios,
        "heavy_modules_imported": heavy,
        "results_compared": same,
        "targets": {
            "query_ratio_at_most_0.2": ratios["query"]["median"] <= 0.2,
            "serve_ready_ratio_at_most_0.333": ratios["serve_ready"]["median"] <= 1 / 3,
            "help_under_1s": summary(times[new]["help"])["median"] < 1.0,
        },
    }
    write_results("coldstart", res, render(res))


def render(res: dict[str, Any]) -> str:
    old = next(n for n in res["systems"] if n != "new")
    sec, ratio = res["seconds"], res["ratio_new_over_old"]
    labels = {"query": "cold `query` on the demo index", "serve_ready": "`serve` until `/ready` answers",
              "help": "`--help`"}
    rows = [
        [labels[k], sec[old][k]["median"], sec["new"][k]["median"], ratio[k]["median"], ratio[k]["min"], ratio[k]["max"]]
        for k in ("query", "serve_ready", "help")
    ]
    cmp = res["results_compared"]
    same = all(c["same_ranking"] for c in cmp.values())
    diff = max(c["max_score_diff"] for c in cmp.values())
    heavy = res["heavy_modules_imported"]
    t = res["targets"]
    n = sec["new"]["query"]["n"]
    return f"""# Cold start: `query`, `serve` and `--help` in fresh processes

Regenerate: `{res['command']}`

{machine_md(res['machine'])}

Old code: `{res['systems'][old]}`; new code: this checkout. Both search the same 200-document demo
index (`hybrid-retriever demo`) with the same cached ONNX export, each measurement a fresh
`python -m hybrid_retriever.cli` process, old and new interleaved in random order, {n} repetitions
(after one warm-up run each, which writes bytecode). Seconds are medians of wall time; the ratios are
medians (min-max) of the per-repetition ratios new/old, so load that hits both runs of a repetition
cancels out.

{md_table(["what", f"{old} s", "new s", "new/old", "min", "max"], rows)}

Targets: query ≤ 1/5 of old: **{'met' if t['query_ratio_at_most_0.2'] else 'missed'}**; serve ready ≤ 1/3:
**{'met' if t['serve_ready_ratio_at_most_0.333'] else 'missed'}**; `--help` under 1 s:
**{'met' if t['help_under_1s'] else 'missed'}**.

Heavy modules (torch, transformers, sentence-transformers, qdrant-client) imported by the new code's
`query`: {heavy['new'].get('query') or 'none'}; by its `--help`: {heavy['new'].get('help') or 'none'}
(old code's `query`: {', '.join(heavy[old].get('query', [])) or 'none'}).

Results: the {len(cmp)} compared searches (CLI and HTTP) returned {'the same documents in the same order' if same else 'DIFFERENT rankings'}
in both versions; the largest score difference is {diff:.1e} (the new code pools and normalises the
transformer's output in numpy rather than torch: float32 rounding in another summation order).

Where the time went before: importing sentence-transformers, transformers and torch (most of the
old `query`), loading the model with torch to fingerprint its weights before the cached ONNX export
could be trusted. Now the export's record carries the hash of the model folder's files (the same
hash the index manifest records), so a process whose export is cached tokenises with `tokenizers`,
runs ONNX Runtime and pools in numpy; torch loads only to export, to train, or for the torch backend
(`tests/test_coldstart.py` checks a real query imports none of them). What remains: Python and the
CLI (typer, rich, pydantic configuration), opening the Edge shard, hashing the model folder (index
manifest check) and the ONNX file (export check), and creating the ONNX Runtime session.
""" + res.get("addendum", "")  # Markdown added to the results by hand (a later measurement, dated in its title)


QUESTION = Question("coldstart", "cold start of `query`, `serve` and `--help` in fresh processes, old code against new",
                    add_arguments, run, {"coldstart": render},
                    smoke=["--base", str(REPO), "--base-label", "same", "--reps", "1"])
