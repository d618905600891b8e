"""Raw branch runs, searched once per query and cached on disk.

Evaluation and tuning never search twice: every branch's ranked list (point ids
and raw scores, best first, at the deepest depth needed) and the exact scores of
the other branches' candidates (score completion) are stored per query in a JSONL
file. A run interrupted half-way resumes where it stopped; a cache made for another
index, depth or branch setup lives in another file (the file name is a hash of
those settings), so it is never mixed up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from tqdm.auto import tqdm

from hybrid_retriever.types import BranchResult, ScoredId

log = logging.getLogger(__name__)

#: 2: each branch run keeps the query facts adaptive fusion reads (:func:`~hybrid_retriever.fusion.adaptive.query_facts`).
CACHE_VERSION = 2


@dataclass
class BranchRun:
    """One branch's list for one query: point ids and raw scores best first, plus completed scores."""

    ids: list[str]
    scores: list[float]
    completed: dict[str, float] = field(default_factory=dict)
    encode_ms: float = 0.0
    search_ms: float = 0.0
    error: str | None = None
    #: What the search said about the query itself (:func:`~hybrid_retriever.fusion.adaptive.query_facts`).
    query: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "ids": self.ids,
            "scores": self.scores,
            "completed": self.completed,
            "encode_ms": self.encode_ms,
            "search_ms": self.search_ms,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "BranchRun":
        return cls(
            ids=list(d["ids"]),
            scores=[float(s) for s in d["scores"]],
            completed={k: float(v) for k, v in d.get("completed", {}).items()},
            encode_ms=float(d.get("encode_ms", 0.0)),
            search_ms=float(d.get("search_ms", 0.0)),
            error=d.get("error"),
            query=dict(d.get("query") or {}),
        )

    @classmethod
    def from_result(cls, r: BranchResult) -> "BranchRun":
        from hybrid_retriever.fusion import query_facts

        return cls(
            ids=[h.point_id for h in r.hits],
            scores=[float(h.score) for h in r.hits],
            completed={k: float(v) for k, v in r.completed.items()},
            encode_ms=r.encode_ms,
            search_ms=r.search_ms,
            error=r.error,
            query=query_facts(r),
        )


@dataclass
class QueryRuns:
    """Every branch's run for one query, and the wall time the search took (ms)."""

    qid: str
    text: str
    branches: dict[str, BranchRun]
    wall_ms: float = 0.0
    #: The index's adaptive-fusion context when the runs were searched (:func:`adaptive_context`); not per row.
    context: dict[str, Any] = field(default_factory=dict, compare=False)

    def adaptive_context(self) -> tuple[str | None, dict[str, frozenset[str] | None]]:
        """The content language and each branch's model languages, as :meth:`HybridRetriever.adaptive_context` gave them."""
        langs = self.context.get("languages") or {}
        return self.context.get("content_language"), {n: None if v is None else frozenset(v) for n, v in langs.items()}

    def to_branch_results(self, depth: Mapping[str, int] | None = None) -> dict[str, BranchResult]:
        """The runs as the retriever's :class:`BranchResult` objects, each list cut to ``depth[branch]``.

        Candidates cut off a branch's list keep their score as a completed score, which is
        what a search at the smaller depth with score completion would have fetched.
        """
        out: dict[str, BranchResult] = {}
        cut = {n: (depth or {}).get(n, len(r.ids)) for n, r in self.branches.items()}
        union = {i for n, r in self.branches.items() if r.error is None for i in r.ids[: cut[n]]}
        for n, r in self.branches.items():
            d = cut[n]
            hits = [ScoredId(pid, s, rank) for rank, (pid, s) in enumerate(zip(r.ids[:d], r.scores[:d]), start=1)]
            known = dict(r.completed)
            known.update(zip(r.ids[d:], r.scores[d:]))
            own = set(r.ids[:d])
            completed = {i: known[i] for i in union - own if i in known}
            out[n] = BranchResult(
                branch=n, hits=hits, completed=completed, encode_ms=r.encode_ms, search_ms=r.search_ms, error=r.error
            )
        return out


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


class RunCache:
    """Cached branch runs of many queries, optionally persisted to ``path`` (JSONL)."""

    def __init__(self, branches: Sequence[str], depth: Mapping[str, int], complete: bool, path: Path | None = None,
                 fingerprint: Mapping[str, Any] | None = None) -> None:
        self.branches = list(branches)
        self.depth = dict(depth)
        self.complete = complete
        self.path = path
        self.fingerprint = dict(fingerprint or {})
        self.runs: dict[str, QueryRuns] = {}
        #: Adaptive fusion's context of the index (recorded in the fingerprint), given to every run.
        self.context: dict[str, Any] = dict(self.fingerprint.get("adaptive") or {})
        self.resumed = 0
        self.searched = 0

    def __len__(self) -> int:
        return len(self.runs)

    def __contains__(self, qid: object) -> bool:
        return qid in self.runs

    def __getitem__(self, qid: str) -> QueryRuns:
        return self.runs[qid]

    def __iter__(self) -> Iterator[str]:
        return iter(self.runs)

    def subset(self, qids: Sequence[str]) -> list[QueryRuns]:
        return [self.runs[q] for q in qids]

    # -- persistence ---------------------------------------------------------------

    def _load(self) -> None:
        for row in read_cache_rows(self.path, CACHE_VERSION):
            qr = QueryRuns(
                qid=row["qid"], text=row["text"], wall_ms=float(row.get("wall_ms", 0.0)),
                branches={n: BranchRun.from_json(b) for n, b in row["branches"].items()}, context=self.context,
            )
            self.runs[qr.qid] = qr

    def _write(self, items: Sequence[QueryRuns]) -> None:
        rows = [
            {"qid": qr.qid, "text": qr.text, "wall_ms": qr.wall_ms, "branches": {n: b.to_json() for n, b in qr.branches.items()}}
            for qr in items
        ]
        append_cache_rows(self.path, CACHE_VERSION, self.fingerprint, rows)

    def add(self, items: Sequence[QueryRuns]) -> None:
        for qr in items:
            qr.context = self.context
            self.runs[qr.qid] = qr
        self._write(items)


def fingerprint(retriever: Any, depth: Mapping[str, int], complete: bool, filter: Any = None) -> dict[str, Any]:
    """What the cached runs depend on: the index (location, size, branch settings), depth, completion, filter,
    and adaptive fusion's context (content language, model languages), which fusing the runs reads."""
    manifest = retriever.store.read_manifest() or {}
    content, languages = retriever.adaptive_context()
    return {
        "adaptive": {"content_language": content,
                     "languages": {n: None if v is None else sorted(v) for n, v in languages.items()}},
        "location": str(retriever.store.location),
        "count": retriever.count(),
        "branches": manifest.get("branches", {}),
        "depth": dict(depth),
        "complete": complete,
        "filter": json.dumps(filter, sort_keys=True, default=str) if filter is not None else None,
    }


def collect_runs(
    retriever: Any,
    queries: Mapping[str, str],
    *,
    depth: int | Mapping[str, int] | None = None,
    complete: bool = True,
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    filter: Any = None,
    progress: bool = True,
    cache: RunCache | None = None,
) -> RunCache:
    """Search every query once with every branch and cache the raw runs.

    ``depth`` is one depth for all branches or a mapping branch -> depth (default: each
    branch's configured depth). With ``complete`` each candidate gets its exact score in
    the branches that did not return it. With ``cache_dir`` the runs are appended to a
    file there after each batch, and queries already in it are not searched again.
    ``wall_ms`` per query is the batch's search time divided by its size, so use
    ``batch_size=1`` to measure per-query latency.
    """
    names = list(retriever.branches)
    if cache is not None:
        depth, complete = cache.depth, cache.complete
    if isinstance(depth, Mapping):
        depths = {n: int(depth.get(n, retriever.config.branch(n).depth)) for n in names}
    else:
        depths = {n: int(depth or retriever.config.branch(n).depth) for n in names}
    fp = fingerprint(retriever, depths, complete, filter)
    if cache is None:
        path = None
        if cache_dir is not None:
            key = hashlib.sha1(json.dumps(fp, sort_keys=True, default=str).encode()).hexdigest()[:16]
            path = Path(cache_dir) / f"runs-{key}.jsonl"
        cache = RunCache(names, depths, complete, path, fp)
        cache._load()
    todo = [(q, t) for q, t in queries.items() if not (q in cache.runs and cache.runs[q].text == t)]
    cache.resumed = len(queries) - len(todo)
    if cache.resumed:
        log.info("resuming: %d of %d queries already cached in %s", cache.resumed, len(queries), cache.path)
    bar = tqdm(total=len(todo), desc="searching", unit="query", disable=not progress or not todo)
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            t0 = time.perf_counter()
            results = retriever.search_branches([t for _, t in batch], filter=filter, depth=depths, complete=complete)
            wall = (time.perf_counter() - t0) * 1000 / len(batch)
            cache.add([
                QueryRuns(qid=q, text=t, wall_ms=wall, branches={n: BranchRun.from_result(r) for n, r in res.items()})
                for (q, t), res in zip(batch, results)
            ])
            cache.searched += len(batch)
            bar.update(len(batch))
    finally:
        bar.close()
    return cache


def read_cache_rows(path: Path | None, version: int) -> Iterator[dict[str, Any]]:
    """The rows of a resumable JSONL cache: a header line (``version``, fingerprint), then one JSON row per line.

    A file with an unreadable header or another version is deleted (the cache starts afresh);
    reading stops at a line cut short by an interruption (everything before it is good).
    """
    if path is None or not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        try:
            meta = json.loads(f.readline())
        except json.JSONDecodeError:
            meta = None
        if not isinstance(meta, dict) or meta.get("version") != version:
            log.warning("cache %s is unreadable or from another version; starting afresh", path)
            f.close()
            path.unlink()
            return
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                return


def append_cache_rows(path: Path | None, version: int, fingerprint: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
    """Append ``rows`` to the cache at ``path``, writing its header first when the file is new."""
    if path is None:
        return
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        if new:
            f.write(json.dumps({"version": version, "fingerprint": fingerprint}) + "\n")
        for row in rows:
            f.write(json.dumps(row) + "\n")
