"""Crash test: a process ingesting into an Edge index is SIGKILLed at seeded random points.

After each kill the index reopens, holds every document the child reported written (and
nothing twice, nothing unknown), answers searches, and re-running the ingest converges to
exactly the corpus. The harness is tests/crash_harness.py (run it directly for more trials
and a table); the child is tests/crash_child.py (BM25 only, so it starts in about a second).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crash_harness import KILL_POINTS, run_trials, table


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_killed_ingest_loses_nothing_reported_and_converges(tmp_path: Path) -> None:
    trials, _ = run_trials(tmp_path, trials=len(KILL_POINTS), n_docs=1000, batch_size=100)
    report = table(trials)
    assert {t.kill_point for t in trials} == set(KILL_POINTS)
    for t in trials:
        assert not t.problems, f"trial {t.trial} ({t.kill_point}): {t.problems}\n{report}"
        assert t.data_lost == 0 and t.duplicates == 0
        assert t.found_after_reopen >= t.reported_written
        assert t.in_flight_stored in (0, 100), "a batch is one upsert: stored whole or not at all"
        assert t.search_ok and t.reingest_converged
