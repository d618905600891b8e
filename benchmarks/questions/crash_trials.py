"""Ingests SIGKILLed at seeded random points, and what survived (the longer run of tests/test_crash.py).

    python -m benchmarks crash_trials --trials 24

Runs ``tests/crash_harness.py`` (each trial starts ``crash_child.py`` on a fresh Edge index, kills it at
a seeded point of one kind, reopens the index and checks it against what the child reported written;
then re-adding the corpus must converge to exactly the corpus). Writes ``results/crash_trials.{json,md}``;
fails when a trial found a problem. ``notes`` in the JSON (the reading of a run, written by a person) are
kept when the trials are rerun.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, Question, log, md_table, read_results, write_results


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=100)


def run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    import crash_harness  # tests/crash_harness.py, which tests/test_crash.py runs too

    with tempfile.TemporaryDirectory() as tmp:
        trials, timing = crash_harness.run_trials(Path(tmp), args.trials, args.docs, args.batch_size)
    data = {"timing": asdict(timing), "trials": [asdict(t) for t in trials], "machine_line": crash_harness.machine(),
            "setup": {"trials": args.trials, "docs": args.docs, "batch_size": args.batch_size},
            "notes": read_results("crash_trials").get("notes", "")}
    write_results("crash_trials", data, render(data))
    bad = [t for t in trials if t.problems]
    for t in bad:
        log.error("trial %d: %s", t.trial, "; ".join(t.problems))
    if bad:
        raise SystemExit(f"{len(bad)} crash trials found problems")


def render(data: dict[str, Any]) -> str:
    s, t = data["setup"], data["timing"]
    head = ["trial", "aimed at", "landed", "killed after (last line + delay)", "reported written", "found after reopen",
            "in-flight batch stored", "scratch stored", "duplicates", "data lost", "reopen", "search", "re-ingest converged"]
    keys = ["trial", "kill_point", "landed", "killed_after", "reported_written", "found_after_reopen", "in_flight_stored",
            "scratch_stored", "duplicates", "data_lost", "reopen"]
    rows = [[*(str(x[k]) for k in keys), "ok" if x["search_ok"] else "FAIL", "yes" if x["reingest_converged"] else "NO"]
            for x in data["trials"]]
    return (
        f"# Crash trials\n\n`python tests/crash_harness.py --trials {s['trials']} --docs {s['docs']} --batch-size {s['batch_size']}` "
        f"on {data['machine_line']}.\n\n"
        f"{s['trials']} trials, {s['docs']} documents in batches of {s['batch_size']}; child timing on this machine: "
        f"batch {t['batch_s'] * 1000:.0f} ms, delete {t['delete_s'] * 1000:.0f} ms, optimize {t['optimize_s'] * 1000:.0f} ms, "
        f"whole run {t['total_s']:.1f} s\n\n"
        + md_table(head, rows)
        + (f"\n{data['notes']}" if data.get("notes") else "")
    )


QUESTION = Question("crash_trials", "ingests SIGKILLed at seeded random points: what survived", add_arguments, run,
                    {"crash_trials": render}, smoke=["--trials", "2", "--docs", "60", "--batch-size", "20"])
