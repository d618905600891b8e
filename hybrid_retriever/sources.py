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
* **BEIR folder** (holds ``corpus.jsonl``): rows ``{"_id", "title", "text"}``; the text
  is ``title + "\\n" + text`` when there is a title, and metadata is ``{"title": ...}``.
* **Folder of text files**: every ``.txt`` and ``.md`` file below it (hidden files and
  folders skipped), id and ``metadata["source"]`` = the path relative to the folder.

Rows or files whose text is empty are skipped and counted in one logged warning;
malformed input (bad JSON, a row without ``text``, undecodable bytes) raises
:class:`~hybrid_retriever.errors.InvalidInputError` naming the file and line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterator

from hybrid_retriever.errors import InvalidInputError
from hybrid_retriever.types import Document

log = logging.getLogger(__name__)

#: File suffixes read as JSON Lines.
JSONL_SUFFIXES = (".jsonl", ".ndjson")
#: File suffixes read from a folder of text files.
TEXT_SUFFIXES = (".txt", ".md")
#: The corpus file that marks a BEIR folder.
BEIR_CORPUS = "corpus.jsonl"

_SUPPORTED = "a .jsonl file, a BEIR folder (with corpus.jsonl) or a folder of .txt/.md files"


def read_documents(path: str | Path) -> Iterator[Document]:
    """Stream the documents of ``path``, choosing the reader from what the path is.

    A file ending in ``.jsonl``/``.ndjson`` is read with :func:`read_jsonl`; a folder
    holding ``corpus.jsonl`` with :func:`read_beir`; any other folder with
    :func:`read_text_dir`. The path is checked now; the documents are read lazily.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InvalidInputError(f"source {p} does not exist; give {_SUPPORTED}")
    if p.is_dir():
        return read_beir(p) if (p / BEIR_CORPUS).is_file() else read_text_dir(p)
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


def read_text_dir(folder: str | Path, suffixes: tuple[str, ...] = TEXT_SUFFIXES) -> Iterator[Document]:
    """Stream every file with one of ``suffixes`` below ``folder``, in sorted path order."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a folder; give a folder of {'/'.join(suffixes)} files")
    return _read_text_files(root, tuple(s.lower() for s in suffixes))


# ----------------------------------------------------------------------- internals


def _existing_file(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidInputError(f"{p} is not a file; give a .jsonl file with one JSON object per line")
    return p


def _read_rows(path: Path, *, beir: bool) -> Iterator[Document]:
    empty: list[int] = []
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
                if doc is None:
                    empty.append(lineno)
                else:
                    yield doc
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); re-encode it as UTF-8") from None
    finally:
        _warn_skipped(path, "line", empty)


def _row_to_document(row: Any, where: str, *, default_id: str, beir: bool) -> Document | None:
    """The document of one row, or None when its text is empty."""
    if not isinstance(row, dict):
        raise InvalidInputError(f"{where}: expected a JSON object, got {type(row).__name__}")
    row = dict(row)
    if "text" not in row or row["text"] is None:
        raise InvalidInputError(f"{where}: no 'text' field; every row needs the document text under 'text'")
    text = row.pop("text")
    if not isinstance(text, str):
        raise InvalidInputError(f"{where}: 'text' must be a string, got {type(text).__name__}")
    doc_id = _row_id(row.pop("id", None), row.pop("_id", None), where) or default_id
    title = row.pop("title", None)
    if title is not None and not isinstance(title, str):
        raise InvalidInputError(f"{where}: 'title' must be a string, got {type(title).__name__}")
    metadata: dict[str, Any] = {}
    if not beir:
        nested = row.pop("metadata", None)
        if isinstance(nested, dict):
            metadata.update(nested)
        elif nested is not None:
            metadata["metadata"] = nested
        metadata.update(row)
    title = (title or "").strip()
    if title:
        metadata["title"] = title
        text = f"{title}\n{text}" if text.strip() else title
    if not text.strip():
        return None
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


def _read_text_files(root: Path, suffixes: tuple[str, ...]) -> Iterator[Document]:
    found = 0
    empty: list[str] = []
    try:
        for file in sorted(root.rglob("*")):
            rel = file.relative_to(root)
            if file.suffix.lower() not in suffixes or any(part.startswith(".") for part in rel.parts) or not file.is_file():
                continue
            found += 1
            try:
                text = file.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as exc:
                raise InvalidInputError(f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start}); re-encode it as UTF-8") from None
            name = rel.as_posix()
            if not text.strip():
                empty.append(name)
                continue
            yield Document(text=text, metadata={"source": name}, id=name)
        if not found:
            raise InvalidInputError(f"{root} holds no {'/'.join(suffixes)} files (and no {BEIR_CORPUS}); give {_SUPPORTED}")
    finally:
        _warn_skipped(root, "file", empty)


def _warn_skipped(source: Path, unit: str, where: list[Any]) -> None:
    if not where:
        return
    shown = ", ".join(str(w) for w in where[:10]) + (", ..." if len(where) > 10 else "")
    log.warning("skipped %d %s(s) with empty text in %s (%s %s)", len(where), unit, source, unit, shown)
