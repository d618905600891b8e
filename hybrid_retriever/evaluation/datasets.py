"""Judged query sets: BEIR folders, TREC run/qrels files and the project's own JSONL.

Every loader returns a :class:`JudgedQueries`: the judged queries only (a query
without judgements cannot be scored), their graded qrels and what was dropped on
the way. Judgements naming a document that is not in the corpus, or a query that
has no text, are counted, logged as a warning and left out; an empty qrels file or
a split that does not exist is an error that says what to do.

    >>> jq = load_beir("datasets/scifact", split="test")          # doctest: +SKIP
    >>> len(jq.queries), jq.n_judgements, jq.unknown_docs          # doctest: +SKIP
    (300, 339, 0)
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.sources import read_corpus_rows
from hybrid_retriever.types import Document

log = logging.getLogger(__name__)

#: query id -> document id -> relevance grade (0 = judged not relevant).
Qrels = dict[str, dict[str, int]]
#: query id -> document id -> retrieval score.
Run = dict[str, dict[str, float]]


@dataclass
class JudgedQueries:
    """Judged queries with their graded relevance judgements.

    ``queries`` holds only queries that have at least one judgement left after
    cleaning; ``qrels`` the judgements (grade >= 1 counts as relevant). ``corpus``
    is the collection's documents when the source has them (BEIR folders), else None.
    """

    queries: dict[str, str]
    qrels: Qrels
    name: str = ""
    split: str | None = None
    source: str = ""
    corpus: list[Document] | None = None
    unknown_docs: int = 0
    unknown_queries: int = 0
    unjudged_queries: int = 0
    empty_documents: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def n_judgements(self) -> int:
        return sum(len(v) for v in self.qrels.values())

    @property
    def no_relevant(self) -> list[str]:
        """Judged queries with no document of grade >= 1 (they score 0 on every metric)."""
        return [q for q, d in self.qrels.items() if not any(g >= 1 for g in d.values())]

    def subset(self, qids: Iterable[str]) -> "JudgedQueries":
        """The same collection restricted to ``qids`` (in that order)."""
        keep = [q for q in qids if q in self.queries]
        return JudgedQueries(
            queries={q: self.queries[q] for q in keep},
            qrels={q: self.qrels[q] for q in keep},
            name=self.name,
            split=self.split,
            source=self.source,
            corpus=self.corpus,
            empty_documents=self.empty_documents,
        )

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary for reports."""
        return {
            "name": self.name,
            "split": self.split,
            "source": self.source,
            "queries": len(self.queries),
            "judgements": self.n_judgements,
            "queries_without_relevant": len(self.no_relevant),
            "unknown_docs": self.unknown_docs,
            "unknown_queries": self.unknown_queries,
            "unjudged_queries_skipped": self.unjudged_queries,
            "corpus_documents": len(self.corpus) if self.corpus is not None else None,
            "warnings": list(self.warnings),
        }


# --------------------------------------------------------------------------- readers


def _grade(value: str, where: str) -> int:
    try:
        f = float(value)
    except ValueError:
        raise InvalidInputError(f"{where}: relevance {value!r} is not a number") from None
    if math.isnan(f) or f != int(f):
        raise InvalidInputError(f"{where}: relevance {value!r} must be an integer grade")
    return int(f)


def read_qrels(path: str | Path) -> Qrels:
    """Read qrels: BEIR TSV (``query-id corpus-id score``, header optional) or TREC (``qid iter docid rel``)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"qrels file {p} does not exist")
    qrels: Qrels = {}
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split("\t") if "\t" in line else line.split()
            parts = [x.strip() for x in parts]
            if not line.strip():
                continue
            if len(parts) == 3:
                q, d, s = parts
            elif len(parts) == 4:
                q, _, d, s = parts
            else:
                raise InvalidInputError(
                    f"{p}:{n}: expected 3 columns (query-id, corpus-id, score) or 4 (TREC: qid iter docid rel), got {len(parts)}"
                )
            if n == 1:
                try:
                    float(s)
                except ValueError:
                    continue  # header line
            qrels.setdefault(q, {})[d] = _grade(s, f"{p}:{n}")
    if not qrels:
        raise InvalidInputError(f"qrels file {p} has no judgements; give a file with at least one 'query doc grade' line")
    return qrels


def read_trec_run(path: str | Path) -> Run:
    """Read a TREC run file (``qid Q0 docid rank score tag``)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"run file {p} does not exist")
    run: Run = {}
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise InvalidInputError(f"{p}:{n}: a TREC run line has 6 columns (qid Q0 docid rank score tag), got {len(parts)}")
            try:
                score = float(parts[4])
            except ValueError:
                raise InvalidInputError(f"{p}:{n}: score {parts[4]!r} is not a number") from None
            run.setdefault(parts[0], {})[parts[2]] = score
    return run


def write_trec_run(path: str | Path, ranked: Mapping[str, Sequence[tuple[str, float]]], tag: str = "hybrid-retriever") -> None:
    """Write ranked lists (query id -> [(doc id, score), ...] best first) as a TREC run file."""
    with open(path, "w", encoding="utf-8") as f:
        for q, items in ranked.items():
            for rank, (d, s) in enumerate(items, start=1):
                f.write(f"{q} Q0 {d} {rank} {s:.8g} {tag}\n")


def read_trec_qrels(path: str | Path) -> Qrels:
    """Read a TREC qrels file (``qid iter docid rel``); same as :func:`read_qrels`."""
    return read_qrels(path)


def _jsonl(path: Path) -> Iterable[tuple[int, dict]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{path}:{n}: not valid JSON ({exc})") from None
            if not isinstance(row, dict):
                raise InvalidInputError(f"{path}:{n}: each line must be a JSON object")
            yield n, row


def _row_id(row: dict, path: Path, n: int, keys: Sequence[str] = ("_id", "id")) -> str:
    for k in keys:
        if k in row and row[k] is not None:
            return str(row[k])
    raise InvalidInputError(f"{path}:{n}: no id field (one of {list(keys)})")


def read_queries(path: str | Path) -> dict[str, str]:
    """Read queries: JSONL (``{"_id"|"id", "text"}``) or TSV (``id<TAB>text``)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"queries file {p} does not exist")
    out: dict[str, str] = {}
    if p.suffix.lower() in (".tsv", ".txt"):
        with open(p, encoding="utf-8") as f:
            for line in f:
                if "\t" in line:
                    q, t = line.rstrip("\n").split("\t", 1)
                    out[q] = t
        return out
    for n, row in _jsonl(p):
        out[_row_id(row, p, n, ("_id", "id", "query_id", "qid"))] = str(row.get("text", row.get("query", "")))
    return out


def read_corpus(path: str | Path) -> tuple[list[Document], list[str]]:
    """Read a JSONL corpus (``{"_id"|"id", "title"?, "text", "metadata"?}``).

    Read with :func:`hybrid_retriever.sources.read_corpus_rows`, the reader ``hybrid-retriever index``
    uses for BEIR folders, so ids, texts (``title + "\\n" + text``), metadata and errors are the same.
    Returns the documents and the ids of documents whose text is empty (they cannot be indexed and are skipped).
    """
    empty: list[str] = []
    docs = list(read_corpus_rows(path, empty=empty))
    return docs, empty


# --------------------------------------------------------------------------- builders


def judged_queries(
    queries: Mapping[str, str],
    qrels: Qrels,
    *,
    doc_ids: set[str] | None = None,
    name: str = "",
    split: str | None = None,
    source: str = "",
    corpus: list[Document] | None = None,
    empty_documents: Sequence[str] = (),
) -> JudgedQueries:
    """Clean raw queries and qrels into a :class:`JudgedQueries`.

    Judgements of documents outside ``doc_ids`` (when given) and of queries with no
    text are counted, warned about and dropped; queries without judgements are not
    evaluated. Raises when nothing judged is left.
    """
    if not qrels:
        raise InvalidInputError(f"{source or 'qrels'}: no judgements; evaluation needs at least one judged query")
    known_docs = None if doc_ids is None else set(doc_ids) | set(empty_documents)
    warnings: list[str] = []
    unknown_docs = 0
    unknown_queries = 0
    clean: Qrels = {}
    for q, judged in qrels.items():
        text = queries.get(q)
        if text is None or not str(text).strip():
            unknown_queries += 1
            continue
        kept = {d: g for d, g in judged.items() if known_docs is None or d in known_docs}
        unknown_docs += len(judged) - len(kept)
        if kept:
            clean[q] = kept
    if unknown_queries:
        warnings.append(f"{unknown_queries} judged query id(s) have no query text; their judgements were skipped")
    if unknown_docs:
        warnings.append(f"{unknown_docs} judgement(s) name documents that are not in the corpus; they were skipped")
    for w in warnings:
        log.warning("%s: %s", source or name or "qrels", w)
    if not clean:
        raise InvalidInputError(
            f"{source or 'qrels'}: none of the {len(qrels)} judged queries is usable (no query text, or every judged "
            "document is missing from the corpus); check that queries, qrels and corpus belong together"
        )
    unjudged = sum(1 for q in queries if q not in qrels)
    return JudgedQueries(
        queries={q: str(queries[q]) for q in clean},
        qrels=clean,
        name=name,
        split=split,
        source=source,
        corpus=corpus,
        unknown_docs=unknown_docs,
        unknown_queries=unknown_queries,
        unjudged_queries=unjudged,
        empty_documents=list(empty_documents),
        warnings=warnings,
    )


def beir_splits(path: str | Path) -> list[str]:
    """The qrels splits a BEIR folder has (``qrels/<split>.tsv``)."""
    d = Path(path) / "qrels"
    return sorted(p.stem for p in d.glob("*.tsv")) if d.is_dir() else []


def load_beir(path: str | Path, split: str = "test", *, load_corpus: bool = True) -> JudgedQueries:
    """Load a BEIR folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""
    root = Path(path)
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a folder; a BEIR collection is a folder with corpus.jsonl, queries.jsonl and qrels/")
    splits = beir_splits(root)
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise InvalidInputError(
            f"{root} has no split {split!r} (no qrels/{split}.tsv); available splits: {', '.join(splits) or 'none'}"
        )
    qrels = read_qrels(qrels_path)
    queries = read_queries(root / "queries.jsonl")
    corpus, empty = read_corpus(root / "corpus.jsonl") if load_corpus else (None, [])
    return judged_queries(
        queries,
        qrels,
        doc_ids={d.id for d in corpus if d.id} if corpus is not None else None,
        name=root.name,
        split=split,
        source=str(qrels_path),
        corpus=corpus,
        empty_documents=empty,
    )


def load_jsonl_queries(path: str | Path, corpus: str | Path | None = None) -> JudgedQueries:
    """Load the project's judged-queries JSONL: one ``{"id", "text", "relevant"}`` per line.

    ``relevant`` is a list of document ids (grade 1 each) or a mapping id -> grade;
    ``corpus`` is an optional JSONL corpus to check the ids against.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"queries file {p} does not exist")
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    for n, row in _jsonl(p):
        qid = _row_id(row, p, n, ("id", "_id", "query_id", "qid"))
        queries[qid] = str(row.get("text", row.get("query", "")))
        rel = row.get("relevant", row.get("qrels"))
        if rel is None:
            continue
        if isinstance(rel, dict):
            qrels[qid] = {str(d): _grade(str(g), f"{p}:{n}") for d, g in rel.items()}
        elif isinstance(rel, list):
            qrels[qid] = {str(d): 1 for d in rel}
        else:
            raise InvalidInputError(f"{p}:{n}: 'relevant' must be a list of ids or a mapping id -> grade")
    qrels = {q: d for q, d in qrels.items() if d}
    if not qrels:
        raise InvalidInputError(f"{p}: no query has 'relevant' documents; judged queries need a 'relevant' field")
    docs, empty = read_corpus(corpus) if corpus else (None, [])
    return judged_queries(
        queries,
        qrels,
        doc_ids={d.id for d in docs if d.id} if docs is not None else None,
        name=p.stem,
        source=str(p),
        corpus=docs,
        empty_documents=empty,
    )


def load_judged(
    data: str | Path | None = None,
    *,
    split: str = "test",
    queries: str | Path | None = None,
    qrels: str | Path | None = None,
    corpus: str | Path | None = None,
) -> JudgedQueries:
    """Load judged queries from whatever the user has.

    - ``data`` a folder: a BEIR collection (``split`` picks ``qrels/<split>.tsv``);
    - ``data`` a ``.jsonl`` file: the project's judged-queries JSONL;
    - ``queries`` + ``qrels`` files (JSONL/TSV queries; BEIR TSV or TREC qrels),
      with an optional JSONL ``corpus``.
    """
    if qrels is not None or queries is not None:
        if qrels is None or queries is None:
            raise InvalidInputError("give both --queries and --qrels (or a BEIR folder / judged JSONL file as DATA)")
        docs, empty = read_corpus(corpus) if corpus else (None, [])
        return judged_queries(
            read_queries(queries),
            read_qrels(qrels),
            doc_ids={d.id for d in docs if d.id} if docs is not None else None,
            name=Path(qrels).stem,
            source=str(qrels),
            corpus=docs,
            empty_documents=empty,
        )
    if data is None:
        raise InvalidInputError("no judged data given: pass a BEIR folder, a judged-queries JSONL, or --queries and --qrels")
    p = Path(data)
    if p.is_dir():
        return load_beir(p, split=split)
    if p.is_file() and p.suffix.lower() in (".jsonl", ".json"):
        return load_jsonl_queries(p, corpus=corpus)
    if not p.exists():
        raise InvalidInputError(f"{p} does not exist")
    raise InvalidInputError(f"{p}: expected a BEIR folder or a .jsonl file of judged queries")
