"""Kill an ingesting process at random points and check what survives (used by test_crash.py).

Each trial starts ``crash_child.py`` on a fresh Edge index, SIGKILLs it at a seeded
random point of one kind (see :data:`KILL_POINTS`), then reopens the index in this
process and checks it against what the child reported written: every reported document
is there with its text, nothing is there twice or from outside the batch in flight,
search answers; then re-adding the whole corpus converges to exactly the corpus.

    python tests/crash_harness.py --trials 20 --out crash_trials.md     # the table for a report
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hybrid_retriever import HybridRetriever
from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.retriever import point_id

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crash_child import crash_config  # noqa: E402

CHILD = Path(__file__).resolve().parent / "crash_child.py"

#: Where a trial kills the child: in the first batch (index creation: shard, manifest,
#: first upsert), inside a later batch, exactly between two batches (the child waits),
#: while it deletes the scratch documents, inside optimize() (which then rewrites a
#: segment), or at any time since start (imports included).
KILL_POINTS = ("creation", "during-batch", "between-batches", "during-delete", "during-optimize", "anytime")

#: Consonants only: Qdrant's Snowball stemmer finds no suffix to strip in a vowel-less word,
#: so every document's marker word stays unique after tokenisation.
_MARK = "bcfhjkmnpqrtvwxz"
_SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "gu", "ba", "zo", "fe", "hi", "va", "lu"]


def marker(i: int) -> str:
    """The word only document ``i`` contains."""
    return "zq" + "".join(_MARK[(i >> s) & 15] for s in (8, 4, 0))


def make_corpus(n: int, seed: int = 0, prefix: str = "d", first: int = 0) -> list[dict[str, str]]:
    """``n`` documents ``{"id", "text"}``: a unique marker word among 20-60 words of a small vocabulary.

    Document ``<prefix><i>`` carries :func:`marker` ``(i)``; ``first`` is the first ``i``.
    """
    rng = random.Random(seed)
    vocab = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))) for _ in range(300)]
    return [
        {"id": f"{prefix}{i:05d}", "text": " ".join([marker(i)] + [rng.choice(vocab) for _ in range(rng.randint(20, 60))])}
        for i in range(first, first + n)
    ]


@dataclass
class Trial:
    """One kill and what was found after it."""

    trial: int
    seed: int
    kill_point: str
    #: The child's last line before it died and how long after it the kill came.
    killed_after: str = ""
    #: Where the kill landed, from the last line (the aim is not exact on a busy machine).
    landed: str = ""
    reported_written: int = 0
    found_after_reopen: int = 0
    duplicates: int = 0
    data_lost: int = 0
    #: Documents of the batch in flight that were stored anyway (all or none: an upsert is one WAL record).
    in_flight_stored: int = 0
    #: Scratch documents stored (they are added and deleted again before optimize).
    scratch_stored: int = 0
    reopen: str = ""
    search_ok: bool = False
    reingest_converged: bool = False
    problems: list[str] = field(default_factory=list)


class _Child:
    """The child process and its stdout lines, read on a thread (so a kill can come at any moment)."""

    def __init__(self, index: Path, corpus: Path, batch_size: int, step: bool) -> None:
        cmd = [sys.executable, str(CHILD), str(index), str(corpus), str(corpus.with_name("scratch.jsonl")), str(batch_size)]
        if step:
            cmd.append("--step")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self._released = 0  # --step: the child has been let past batches reporting less than this
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append((time.monotonic(), line.strip()))
                self._cond.notify_all()
        with self._cond:
            self.lines.append((time.monotonic(), "<eof>"))
            self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 120.0) -> tuple[float, str] | None:  # type: ignore[no-untyped-def]
        """The first line matching ``predicate`` (None if the child ended or time ran out first)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, line in self.lines:
                    if predicate(line):
                        return t, line
                if self.lines and self.lines[-1][1] == "<eof>":
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def step_to(self, written: int) -> tuple[float, str] | None:
        """Let a ``--step`` child go on batch by batch until it reports ``written``; it then waits."""
        assert self.proc.stdin is not None
        while True:
            seen = self.wait_for(lambda s: s.startswith("written ") and int(s.split()[1]) >= self._released)
            if seen is None or int(seen[1].split()[1]) >= written:
                return seen
            self._released = int(seen[1].split()[1]) + 1
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no cleanup, no flush, no atexit
        self.proc.wait()
        self._reader.join(timeout=10)

    def finish(self, timeout: float = 300.0) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()  # a --step child reads EOF and runs on
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        if self.proc.returncode != 0:
            raise RuntimeError(f"crash child failed ({self.proc.returncode}): {self.proc.stderr.read() if self.proc.stderr else ''}")

    def reported(self) -> int:
        return max((int(line.split()[1]) for _, line in self.lines if line.startswith("written ")), default=0)


@dataclass
class Timing:
    """How long the child's phases take on this machine (measured once, to aim the kills)."""

    batch_s: float
    delete_s: float
    optimize_s: float
    total_s: float


def calibrate(root: Path, corpus: Path, batch_size: int) -> Timing:
    """Run one child to completion and time its batches, the delete and optimize."""
    child = _Child(root / "calibration", corpus, batch_size, step=False)
    child.finish()
    at = {line: t for t, line in child.lines}
    written = [t for t, line in child.lines if line.startswith("written ")]
    return Timing(
        batch_s=(written[-1] - written[0]) / max(len(written) - 1, 1),
        delete_s=at["scratch-deleted"] - at["scratch-written"],
        optimize_s=at["optimize-done"] - at["optimize-start"],
        total_s=at["done"] - child.started,
    )


def run_trial(
    n: int, seed: int, root: Path, corpus_path: Path, docs: list[dict[str, str]], scratch: list[dict[str, str]],
    batch_size: int, timing: Timing,
) -> Trial:
    """One seeded kill of one kind, then the checks; problems are listed on the result, not raised."""
    rng = random.Random(seed)
    kind = KILL_POINTS[n % len(KILL_POINTS)]
    t = Trial(trial=n, seed=seed, kill_point=kind)
    index = root / f"trial{n:02d}"
    n_batches = -(-len(docs) // batch_size)
    k = rng.randint(1, n_batches - 1)
    child = _Child(index, corpus_path, batch_size, step=kind == "between-batches")
    if kind == "creation":
        seen, delay = child.wait_for(lambda s: s == "ready"), rng.uniform(0, timing.batch_s)
    elif kind == "during-batch":
        seen, delay = child.wait_for(lambda s: s == f"written {min(k * batch_size, len(docs))}"), rng.uniform(0, timing.batch_s)
    elif kind == "between-batches":
        seen, delay = child.step_to(min(k * batch_size, len(docs))), 0.0
    elif kind == "during-delete":
        seen, delay = child.wait_for(lambda s: s == "scratch-written"), rng.uniform(0, timing.delete_s)
    elif kind == "during-optimize":
        seen, delay = child.wait_for(lambda s: s == "optimize-start"), rng.uniform(0, 0.3 * timing.optimize_s)
    else:
        seen, delay = (child.started, "start"), rng.uniform(0, 0.8 * timing.total_s)
    if seen is None:
        child.kill()
        t.problems.append(f"the child ended before the kill point: {child.proc.stderr.read() if child.proc.stderr else ''}")
        return t
    time.sleep(max(0.0, seen[0] + delay - time.monotonic()))
    exited = child.proc.poll() is not None
    child.kill()
    last = [line for _, line in child.lines if line != "<eof>"]
    t.killed_after = f"{last[-1] if last else '(nothing)'} +{delay * 1000:.0f} ms"
    t.landed = "after the child exited" if exited else _landed(last[-1] if last else "", len(docs), batch_size, kind == "between-batches")
    t.reported_written = child.reported()
    deleted = any(line == "scratch-deleted" for _, line in child.lines)
    _check(t, index, docs, scratch, deleted, batch_size, rng)
    return t


def _landed(last: str, n_docs: int, batch_size: int, stepping: bool) -> str:
    """The phase a child was in, from the last line it printed."""
    if last.startswith("written "):
        n = int(last.split()[1])
        if n == n_docs:
            return "adding scratch batches"
        b = n // batch_size
        return f"between batches {b} and {b + 1}" if stepping else f"in batch {b + 1} (or just before it)"
    return {
        "": "starting (imports)",
        "ready": "in batch 1 (index creation)",
        "scratch-written": "in delete",
        "scratch-deleted": "in optimize",
        "optimize-start": "in optimize",
        "optimize-done": "closing",
        "done": "exiting",
    }.get(last, last)


def _check(
    t: Trial, index: Path, docs: list[dict[str, str]], scratch: list[dict[str, str]], scratch_deleted: bool,
    batch_size: int, rng: random.Random,
) -> None:
    from hybrid_retriever import Document

    reported = docs[: t.reported_written]
    in_flight = {d["id"] for d in docs[t.reported_written : t.reported_written + batch_size]}
    scratch_ids = {d["id"] for d in scratch}
    text_of = {d["id"]: d["text"] for d in docs + scratch}
    try:
        r = HybridRetriever.open(str(index))
        t.reopen = "opened"
    except InvalidInputError as exc:
        if t.reported_written:
            t.problems.append(f"index with {t.reported_written} reported documents does not open: {exc}")
            return
        # Killed before the index existed: a new retriever must be able to build it here.
        t.reopen = "no index yet"
        r = HybridRetriever(crash_config(str(index)))
    with r:
        stored = list(r.documents())
        ids = [d.id for d in stored]
        t.found_after_reopen = r.count()
        t.duplicates = len(ids) - len(set(ids))
        present = set(ids)
        t.data_lost = sum(1 for d in reported if d["id"] not in present)
        t.in_flight_stored = len(present & in_flight)
        t.scratch_stored = len(present & scratch_ids)
        if t.found_after_reopen != len(ids):
            t.problems.append(f"count() says {t.found_after_reopen}, iteration gives {len(ids)}")
        strangers = present - {d["id"] for d in reported} - in_flight - scratch_ids
        if strangers:
            t.problems.append(f"{len(strangers)} stored documents were neither reported nor in flight")
        if scratch_deleted and present & scratch_ids:
            t.problems.append(f"{len(present & scratch_ids)} scratch documents are back after their delete was reported")
        wrong = [d.id for d in stored if d.text != text_of.get(d.id)]
        if wrong:
            t.problems.append(f"{len(wrong)} stored documents have the wrong text, e.g. {wrong[0]}")
        if present:
            probe = rng.choice(sorted(present))
            hits = r.search(marker(int(probe[1:])), k=3)
            t.search_ok = bool(hits) and hits[0].id == probe
            if not t.search_ok:
                t.problems.append(f"search for {probe}'s marker word returns {[h.id for h in hits]}")
        else:
            t.search_ok = r.search("anything", k=3) == []
        # Re-running the ingest (corpus in, scratch out) converges to exactly the corpus.
        r.add_documents([Document(text=d["text"], id=d["id"]) for d in docs], batch_size=batch_size)
        r.delete(sorted(scratch_ids))
        r.optimize()
        again = list(r.documents())
        probe = rng.choice(docs)
        hits = r.search(marker(int(probe["id"][1:])), k=1)
        t.reingest_converged = (
            r.count() == len(docs)
            and sorted(d.id for d in again) == [d["id"] for d in docs]
            and all(d.text == text_of[d.id] for d in again)
            and all(p.point_id == point_id(p.payload["doc_id"]) for p in r.store.scroll(len(docs) + 1)[0])
            and bool(hits) and hits[0].id == probe["id"]
        )
        if not t.reingest_converged:
            t.problems.append("re-ingesting the corpus did not give exactly the corpus back")
    if t.duplicates:
        t.problems.append(f"{t.duplicates} duplicate documents")
    if t.data_lost:
        t.problems.append(f"{t.data_lost} reported documents lost")


def run_trials(root: Path, trials: int, n_docs: int = 1500, batch_size: int = 100, base_seed: int = 14) -> tuple[list[Trial], Timing]:
    """Calibrate, then run ``trials`` seeded trials cycling through :data:`KILL_POINTS`."""
    docs = make_corpus(n_docs)
    # Scratch documents: added and deleted again before optimize, half as many as the corpus.
    scratch = make_corpus(n_docs // 2, seed=1, prefix="x", first=n_docs)
    corpus = root / "corpus.jsonl"
    for path, rows in ((corpus, docs), (root / "scratch.jsonl", scratch)):
        path.write_text("".join(json.dumps(d) + "\n" for d in rows), encoding="utf-8")
    timing = calibrate(root, corpus, batch_size)
    return [
        run_trial(i, base_seed * 1000 + i, root, corpus, docs, scratch, batch_size, timing) for i in range(trials)
    ], timing


def table(trials: list[Trial]) -> str:
    """The trials as a Markdown table."""
    head = "| trial | aimed at | landed | killed after (last line + delay) | reported written | found after reopen | in-flight batch stored | scratch stored | duplicates | data lost | reopen | search | re-ingest converged |"
    rows = [head, "|" + "---|" * 13]
    for t in trials:
        rows.append(
            f"| {t.trial} | {t.kill_point} | {t.landed} | {t.killed_after} | {t.reported_written} | {t.found_after_reopen} | "
            f"{t.in_flight_stored} | {t.scratch_stored} | {t.duplicates} | {t.data_lost} | {t.reopen} | {'ok' if t.search_ok else 'FAIL'} | "
            f"{'yes' if t.reingest_converged else 'NO'} |"
        )
    return "\n".join(rows)


def machine() -> str:
    """One line describing where the trials ran."""
    import os
    import platform
    from importlib.metadata import version

    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs{load}, Python {platform.python_version()}, "
        f"qdrant-edge-py {version('qdrant-edge-py')}"
    )


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--out", type=Path, help="write the table (Markdown) and the trials (JSON beside it)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trials, timing = run_trials(Path(tmp), args.trials, args.docs, args.batch_size)
    text = (
        f"# Crash trials\n\n`python tests/crash_harness.py --trials {args.trials} --docs {args.docs} --batch-size {args.batch_size}` "
        f"on {machine()}.\n\n"
        f"{args.trials} trials, {args.docs} documents in batches of {args.batch_size}; child timing on this machine: "
        f"batch {timing.batch_s * 1000:.0f} ms, delete {timing.delete_s * 1000:.0f} ms, optimize {timing.optimize_s * 1000:.0f} ms, "
        f"whole run {timing.total_s:.1f} s\n\n"
        + table(trials)
    )
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
        args.out.with_suffix(".json").write_text(
            json.dumps({"timing": asdict(timing), "trials": [asdict(t) for t in trials]}, indent=2) + "\n", encoding="utf-8"
        )
    bad = [t for t in trials if t.problems]
    for t in bad:
        print(f"trial {t.trial}: {'; '.join(t.problems)}", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
