"""Reading documents to index: JSONL files, BEIR folders and folders of text files.

Every reader is a generator, so a corpus is streamed, never held in memory::

    >>> from hybrid_retriever.sources import read_documents          # doctest: +SKIP
    >>> with HybridRetriever.open("./index") as r:
    ...     r.add_documents(read_documents("corpus.jsonl"))

Formats
-------
* **JSONL** (``.jsonl``/``.ndjson``): one JSON object per line with ``text``, an optional
  ``id`` (or ``_id``) and ``title``; every other key becomes metadata (the keys of a
  ``metadata`` object are merged in). A row without an id gets ``<file name>:<line>``.
* **BEIR folder** (holds ``corpus.jsonl``): rows ``{"_id", "title", "text", "metadata"?}``;
  the text is ``title + "\\n" + text`` when there is a title, and metadata is the row's
  ``metadata`` object plus ``{"title": ...}``; every row needs an id. The evaluation
  loaders (:mod:`hybrid_retriever.evaluation.datasets`) read corpora with this same reader.
* **Folder of text files**: every ``.txt`` and ``.md`` file below it (hidden files and
  folders skipped), id and ``metadata["source"]`` = the path relative to the folder.
  A file that is not UTF-8 is decoded with the encoding ``charset-normalizer`` detects
  (e.g. a Latin-1 file), with one warning naming the files and encodings. A file that still
  cannot be read (binary, unreadable bytes, no permission) is skipped with a warning and
  listed in ``report.unreadable`` (a :class:`SourceReport`); with ``strict=True`` it is an
  error instead.
  Symbolic links are not followed out of the folder (a linked file whose target lies
  outside is skipped with a warning) unless ``follow_links=True``; linked folders are
  never entered.

Long documents can be split into chunks as they are read: pass a
:class:`~hybrid_retriever.chunking.Chunker` as ``chunker`` (see that module).

Rows or files whose text is empty are skipped and counted in one logged warning;
malformed input (bad JSON, a row without ``text``, a JSONL file that is not UTF-8, an id used
on two lines) raises :class:`~hybrid_retriever.errors.InvalidInputError` naming the file and line(s).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.types import Document

if TYPE_CHECKING:
    from hybrid_retriever.chunking import Chunker

log = logging.getLogger(__name__)

#: File suffixes read as JSON Lines.
JSONL_SUFFIXES = (".jsonl", ".ndjson")
#: File suffixes read from a folder of text files.
TEXT_SUFFIXES = (".txt", ".md")
#: The corpus file that marks a BEIR folder.
BEIR_CORPUS = "corpus.jsonl"

_SUPPORTED = "a .jsonl file, a BEIR folder (with corpus.jsonl) or a folder of .txt/.md files"


@dataclass
class SourceReport:
    """What reading a folder of text files met: files decoded with a detected encoding, and files skipped.

    ``decoded``: ``(file, encoding)`` for each file that was not UTF-8 and was read with the
    encoding charset-normalizer detected; ``unreadable``: ``(file, reason)`` for each file
    skipped because it could not be read (paths relative to the folder).
    """

    decoded: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def read_documents(
    path: str | Path,
    *,
    chunker: "Chunker | None" = None,
    follow_links: bool = False,
    strict: bool = False,
    report: SourceReport | None = None,
) -> Iterator[Document]:
    """Stream the documents of ``path``, choosing the reader from what the path is.

    A file ending in ``.jsonl``/``.ndjson`` is read with :func:`read_jsonl`; a folder
    holding ``corpus.jsonl`` with :func:`read_beir`; any other folder with
    :func:`read_text_dir` (``follow_links``, ``strict`` and ``report`` as there). With
    ``chunker``, each document is split into chunks as it is read. The path is checked
    now; the documents are read lazily.
    """
    docs = _reader(Path(path).expanduser(), follow_links, strict, report)
    return chunker.chunk(docs) if chunker is not None else docs


def source_kind(path: str | Path) -> str:
    """What ``path`` is as a source: ``"jsonl"``, ``"beir"`` or ``"text"`` (a folder of text files)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return "beir" if (p / BEIR_CORPUS).is_file() else "text"
    return "jsonl"


def count_documents(path: str | Path, *, follow_links: bool = False) -> int:
    """How many documents ``path`` holds at most, counted cheaply (no parsing): for a progress bar's total.

    JSONL/BEIR: the non-blank lines (rows with empty text, skipped when read, are counted);
    a folder: its text files.
    """
    p = Path(path).expanduser()
    kind = source_kind(p)
    if kind == "text":
        return sum(1 for _ in _text_files(p, TEXT_SUFFIXES, follow_links=follow_links))
    corpus = p / BEIR_CORPUS if kind == "beir" else p
    with open(corpus, "rb") as f:
        return sum(1 for line in f if line.strip())


def _reader(p: Path, follow_links: bool, strict: bool = False, report: SourceReport | None = None) -> Iterator[Document]:
    if not p.exists():
        raise InvalidInputError(f"source {p} does not exist; give {_SUPPORTED}")
    if p.is_dir():
        if (p / BEIR_CORPUS).is_file():
            return read_beir(p)
        return read_text_dir(p, follow_links=follow_links, strict=strict, report=report)
    if p.suffix.lower() in JSONL_SUFFIXES:
        return read_jsonl(p)
    raise InvalidInputError(f"cannot read source {p}: unsupported file type {p.suffix or '(none)'!r}; give {_SUPPORTED}")


def read_jsonl(path: str | Path) -> Iterator[Document]:
    """Stream documents from a JSON Lines file (see the module docs for the row format)."""
    p = _existing_file(path)
    return _read_rows(p, beir=False)


def read_beir(folder: str | Path) -> Iterator[Document]:
    """Stream the corpus of a BEIR dataset folder (its ``corpus.jsonl``)."""
    root = Path(folder).expanduser()
    corpus = root / BEIR_CORPUS
    if not corpus.is_file():
        raise InvalidInputError(f"{root} is not a BEIR folder: it has no {BEIR_CORPUS}")
    return _read_rows(corpus, beir=True)


def read_corpus_rows(path: str | Path, *, empty: list[str] | None = None) -> Iterator[Document]:
    """Stream a corpus file in the BEIR row format (``{"_id"|"id", "title"?, "text", "metadata"?}``).

    The one reader of corpora for :func:`read_beir` and the evaluation loaders. The ids of
    rows whose text is empty (skipped) are appended to ``empty`` when it is given.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidInputError(f"corpus file {p} does not exist")
    return _read_rows(p, beir=True, empty_ids=empty)


def read_text_dir(
    folder: str | Path,
    suffixes: tuple[str, ...] = TEXT_SUFFIXES,
    *,
    follow_links: bool = False,
    strict: bool = False,
    report: SourceReport | None = None,
) -> Iterator[Document]:
    """Stream every file with one of ``suffixes`` below ``folder``, in sorted path order.

    A symbolic link to a file outside ``folder`` is skipped (with a warning) unless
    ``follow_links``: a folder's own files are what gets indexed. A file that is not UTF-8
    is read with its detected encoding; one that cannot be read at all is skipped with a
    warning and recorded in ``report`` (:class:`SourceReport`), or with ``strict`` raises
    :class:`~hybrid_retriever.errors.InvalidInputError`.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a folder; give a folder of {'/'.join(suffixes)} files")
    return _read_text_files(root, tuple(s.lower() for s in suffixes), follow_links, strict, report if report is not None else SourceReport())


# ----------------------------------------------------------------------- internals


def _existing_file(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidInputError(f"{p} is not a file; give a .jsonl file with one JSON object per line")
    return p


def _read_rows(path: Path, *, beir: bool, empty_ids: list[str] | None = None) -> Iterator[Document]:
    empty: list[int] = []
    lines_of: dict[str, int] = {}  # id -> the line it was first seen on
    try:
        with open(path, encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{path}, line {lineno}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInputError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from None
                doc = _row_to_document(row, where, default_id=f"{path.name}:{lineno}", beir=beir)
                first = lines_of.setdefault(doc.id, lineno)  # type: ignore[arg-type]
                if first != lineno:
                    raise InvalidInputError(
                        f"{where}: duplicate document id {doc.id!r}, first on line {first}; ids must be unique in a source"
                    )
                if doc.text.strip():
                    yield doc
                else:
                    empty.append(lineno)
                    if empty_ids is not None:
                        empty_ids.append(str(doc.id))
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); re-encode it as UTF-8") from None
    finally:
        _warn_skipped(path, "line", empty)


def _row_to_document(row: Any, where: str, *, default_id: str, beir: bool) -> Document:
    """The document of one row (its text may be empty: the caller skips it)."""
    if not isinstance(row, dict):
        raise InvalidInputError(f"{where}: expected a JSON object, got {type(row).__name__}")
    row = dict(row)
    if "text" not in row or row["text"] is None:
        raise InvalidInputError(f"{where}: no 'text' field; every row needs the document text under 'text'")
    text = row.pop("text")
    if not isinstance(text, str):
        raise InvalidInputError(f"{where}: 'text' must be a string, got {type(text).__name__}")
    doc_id = _row_id(row.pop("id", None), row.pop("_id", None), where)
    if doc_id is None:
        if beir:
            raise InvalidInputError(f"{where}: no id; every row of a BEIR corpus needs an '_id'")
        doc_id = default_id
    title = row.pop("title", None)
    if title is not None and not isinstance(title, str):
        raise InvalidInputError(f"{where}: 'title' must be a string, got {type(title).__name__}")
    metadata: dict[str, Any] = {}
    nested = row.pop("metadata", None)
    if isinstance(nested, dict):
        metadata.update(nested)
    elif nested is not None and not beir:
        metadata["metadata"] = nested
    if not beir:  # a BEIR row's other keys are not part of the format
        metadata.update(row)
    title = (title or "").strip()
    if title:
        metadata["title"] = title
        text = f"{title}\n{text}" if text.strip() else title
    return Document(text=text, metadata=metadata, id=doc_id)


def _row_id(primary: Any, secondary: Any, where: str) -> str | None:
    value = primary if primary is not None else secondary
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInputError(f"{where}: the id must be a string or an integer, got {value!r}")
    value = str(value)
    if not value:
        raise InvalidInputError(f"{where}: the id is empty; give a non-empty id or leave the field out")
    return value


def _text_files(root: Path, suffixes: tuple[str, ...], *, follow_links: bool, outside: list[str] | None = None) -> Iterator[Path]:
    """The text files below ``root`` in sorted order; links leading outside go to ``outside`` unless ``follow_links``."""
    inside = root.resolve()
    for file in sorted(root.rglob("*")):  # rglob does not enter linked folders
        rel = file.relative_to(root)
        if file.suffix.lower() not in suffixes or any(part.startswith(".") for part in rel.parts) or not file.is_file():
            continue
        if not follow_links and not file.resolve().is_relative_to(inside):
            if outside is not None:
                outside.append(rel.as_posix())
            continue
        yield file


#: Encodings preferred among equally good detections (charset-normalizer's names).
_PREFERRED_ENCODINGS = ("cp1252", "latin_1", "iso8859_15")


def decode_text(data: bytes) -> tuple[str, str]:
    """The text of a file's bytes and the encoding used: UTF-8 (a BOM dropped), else the one
    charset-normalizer detects. Raises :class:`UnicodeError` where no encoding fits (binary data)."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as exc:
        if b"\x00" in data:  # NUL bytes: binary, or UTF-16/32 without a BOM (detection guesses those poorly)
            if not data.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise UnicodeError(f"binary data (a NUL byte; {exc.reason} at byte {exc.start})") from None
        from charset_normalizer import from_bytes

        matches = from_bytes(data)
        best = matches.best()
        if best is None:
            raise UnicodeError(f"not UTF-8 ({exc.reason} at byte {exc.start}) and no encoding was detected") from None
        # A short text often fits several single-byte encodings equally well (same chaos and
        # coherence): among those, Windows-1252 (Western European, the usual non-UTF-8 text) wins.
        tied = {m.encoding: m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)}
        chosen = next((tied[e] for e in _PREFERRED_ENCODINGS if e in tied), best)
        return str(chosen), chosen.encoding


def _read_text_files(
    root: Path, suffixes: tuple[str, ...], follow_links: bool, strict: bool, report: SourceReport
) -> Iterator[Document]:
    found = 0
    empty: list[str] = []
    outside: list[str] = []
    decoded_before, unreadable_before = len(report.decoded), len(report.unreadable)
    try:
        for file in _text_files(root, suffixes, follow_links=follow_links, outside=outside):
            rel = file.relative_to(root)
            found += 1
            name = rel.as_posix()
            try:
                text, encoding = decode_text(file.read_bytes())
            except (OSError, UnicodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                if strict:
                    raise InvalidInputError(
                        f"{file} cannot be read ({reason}); fix or remove the file, or index without --strict to skip it"
                    ) from None
                report.unreadable.append((name, reason))
                continue
            if encoding != "utf-8":
                report.decoded.append((name, encoding))
            if not text.strip():
                empty.append(name)
                continue
            yield Document(text=text, metadata={"source": name}, id=name)
        if not found:
            raise InvalidInputError(f"{root} holds no {'/'.join(suffixes)} files (and no {BEIR_CORPUS}); give {_SUPPORTED}")
    finally:
        _warn_skipped(root, "file", empty)
        _warn_encodings(root, report.decoded[decoded_before:], report.unreadable[unreadable_before:])
        if outside:
            shown = ", ".join(outside[:10]) + (", ..." if len(outside) > 10 else "")
            log.warning(
                "skipped %d linked file(s) in %s whose target is outside the folder (%s); "
                "pass follow_links=True (CLI: --follow-links) to index them", len(outside), root, shown,
            )


def _warn_encodings(root: Path, decoded: list[tuple[str, str]], unreadable: list[tuple[str, str]]) -> None:
    if decoded:
        shown = ", ".join(f"{n} ({e})" for n, e in decoded[:10]) + (", ..." if len(decoded) > 10 else "")
        log.warning("read %d file(s) in %s that are not UTF-8 with their detected encoding: %s", len(decoded), root, shown)
    if unreadable:
        shown = "; ".join(f"{n}: {why}" for n, why in unreadable[:10]) + ("; ..." if len(unreadable) > 10 else "")
        log.warning(
            "skipped %d file(s) in %s that cannot be read (%s); fix or remove them (--strict stops at such a file)",
            len(unreadable), root, shown,
        )


def _warn_skipped(source: Path, unit: str, where: list[Any]) -> None:
    if not where:
        return
    shown = ", ".join(str(w) for w in where[:10]) + (", ..." if len(where) > 10 else "")
    log.warning("skipped %d %s(s) with empty text in %s (%s %s)", len(where), unit, source, unit, shown)
