"""Splitting long documents into chunks that fit the dense model's window.

A dense model embeds only the first ``max_seq_length`` tokens of a text (256 for
all-MiniLM-L6-v2): the rest of a long file is invisible to it. :class:`Chunker` splits
each document into chunks of at most ``size`` tokens of that model (or characters),
Markdown-aware: it breaks at headings, then blocks and paragraphs, then sentences and
only then words, so a chunk holds whole sections where they fit. The splitting itself is
done by `semantic-text-splitter <https://pypi.org/project/semantic-text-splitter/>`_
(the ``chunking`` extra): a maintained Rust library with no Python dependencies that
counts sizes with the model's own Hugging Face tokenizer and returns each chunk's
character offset.

Every chunk is a :class:`~hybrid_retriever.types.Document` with the id
``<document id>#<n>`` (``n`` from 0) and, besides the document's own metadata:

* ``source``: the document's id (for a folder of files: the file's path), unless the
  document's metadata already names one;
* ``chunk``: ``n``; ``chunks``: how many chunks the document has;
* ``char_start``, ``char_end``: the chunk's span in the document's text
  (``text[char_start:char_end] == chunk text``).

    >>> chunker = Chunker(size=200, overlap=20)                     # doctest: +SKIP
    >>> chunks = list(chunker.chunk(read_documents("docs/")))        # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Iterator, Literal

from hybrid_retriever.errors import ConfigError, InvalidInputError
from hybrid_retriever.types import Document

log = logging.getLogger(__name__)

#: Separates a document's id from its chunk number in chunk ids.
CHUNK_ID_SEPARATOR = "#"
#: Chunk size when sizes count characters and none is given.
DEFAULT_CHARACTERS = 1000
#: Suffixes of documents split with the Markdown splitter (the others with the plain-text one).
MARKDOWN_SUFFIXES = (".md", ".markdown")

_EXTRA = 'pip install "hybrid-retriever[chunking]"'

Unit = Literal["tokens", "characters"]


def splitter_available() -> bool:
    """Whether the ``chunking`` extra (semantic-text-splitter) is installed."""
    try:
        import semantic_text_splitter  # noqa: F401
    except ImportError:
        return False
    return True


def chunk_id(doc_id: str, n: int) -> str:
    """The id of chunk ``n`` of document ``doc_id``."""
    return f"{doc_id}{CHUNK_ID_SEPARATOR}{n}"


def parent_id(doc: Any) -> str | None:
    """The id of the document a chunk was cut from (``a.md#3`` -> ``a.md``), else the document's own id.

    ``doc`` is a :class:`~hybrid_retriever.types.Document` or a hit: anything with ``id`` and ``metadata``.
    """
    if doc.id is None:
        return None
    n = doc.metadata.get("chunk")
    suffix = f"{CHUNK_ID_SEPARATOR}{n}"
    if isinstance(n, int) and not isinstance(n, bool) and doc.id.endswith(suffix):
        return str(doc.id[: -len(suffix)])
    return str(doc.id)


@dataclass(frozen=True)
class ModelWindow:
    """What a model can see: its tokenizer and how many tokens of a text it embeds.

    ``special_tokens`` is what the model adds around every text ([CLS], [SEP]), so a
    chunk may hold ``max_tokens - special_tokens`` tokens of text.
    """

    tokenizer: Any  # a `tokenizers.Tokenizer` with truncation and padding off
    max_tokens: int
    special_tokens: int = 0

    @property
    def capacity(self) -> int:
        """Tokens of text that fit in the window."""
        return max(self.max_tokens - self.special_tokens, 1)

    def count(self, text: str) -> int:
        """Tokens of ``text`` (without the special tokens)."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    @classmethod
    def of(cls, model: Any) -> "ModelWindow":
        """The window of a loaded ``SentenceTransformer`` (its tokenizer and ``max_seq_length``)."""
        hf = getattr(model, "tokenizer", None)
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is None:
            raise ConfigError(
                "the dense model has no fast (Rust) tokenizer to count tokens with; chunk by characters instead "
                "(--chunk-unit characters)"
            )
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(backend.to_str())  # a copy: the model's own keeps its truncation
        tokenizer.no_truncation()
        tokenizer.no_padding()
        special = int(hf.num_special_tokens_to_add()) if hasattr(hf, "num_special_tokens_to_add") else 0
        return cls(tokenizer=tokenizer, max_tokens=int(model.max_seq_length), special_tokens=special)


class Chunker:
    """Splits documents into chunks of at most ``size`` tokens (with ``window``) or characters.

    ``overlap`` (same unit) is the most text two neighbouring chunks share. With a
    ``window`` and no ``size``, chunks fill the model's window.
    """

    def __init__(self, size: int | None = None, overlap: int = 0, *, window: ModelWindow | None = None) -> None:
        self.unit: Unit = "tokens" if window is not None else "characters"
        if size is None:
            size = window.capacity if window is not None else DEFAULT_CHARACTERS
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidInputError(f"the chunk size must be a positive number of {self.unit}, got {size!r}")
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < size:
            raise InvalidInputError(
                f"the chunk overlap must be at least 0 and smaller than the chunk size ({size} {self.unit}), got {overlap!r}"
            )
        if window is not None and size > window.capacity:
            log.warning(
                "chunk size %d tokens is more than the dense model embeds (%d tokens of text); the end of longer "
                "chunks is not embedded", size, window.capacity,
            )
        self.size = size
        self.overlap = overlap
        self.window = window
        self._markdown, self._text = self._splitters()

    def _splitters(self) -> tuple[Any, Any]:
        try:
            from semantic_text_splitter import MarkdownSplitter, TextSplitter
        except ImportError:
            raise ConfigError(f"chunking needs the semantic-text-splitter package: {_EXTRA}") from None
        if self.window is None:
            return MarkdownSplitter(self.size, overlap=self.overlap), TextSplitter(self.size, overlap=self.overlap)
        tok = self.window.tokenizer
        return (
            MarkdownSplitter.from_huggingface_tokenizer(tok, self.size, overlap=self.overlap),
            TextSplitter.from_huggingface_tokenizer(tok, self.size, overlap=self.overlap),
        )

    def describe(self) -> str:
        """The settings in words, e.g. ``254 tokens, overlap 0``."""
        return f"{self.size} {self.unit}, overlap {self.overlap}"

    def spans(self, text: str, *, markdown: bool = True) -> list[tuple[int, int]]:
        """The chunks of ``text`` as ``(start, end)`` character offsets, in order."""
        splitter = self._markdown if markdown else self._text
        return [(start, start + len(chunk)) for start, chunk in splitter.chunk_indices(text)]

    def split(self, doc: Document) -> list[Document]:
        """The chunks of one document (see the module docs for their ids and metadata)."""
        if doc.id is None:
            raise InvalidInputError("a document to chunk needs an id: chunk ids are '<document id>#<n>'")
        spans = self.spans(doc.text, markdown=_is_markdown(doc))
        out = []
        for n, (start, end) in enumerate(spans):
            meta = {**doc.metadata, "chunk": n, "chunks": len(spans), "char_start": start, "char_end": end}
            meta.setdefault("source", doc.id)
            out.append(replace(doc, id=chunk_id(doc.id, n), text=doc.text[start:end], metadata=meta))
        return out

    def chunk(self, docs: Iterable[Document]) -> Iterator[Document]:
        """Stream the chunks of ``docs``."""
        for doc in docs:
            yield from self.split(doc)


def _is_markdown(doc: Document) -> bool:
    name = str(doc.metadata.get("source") or doc.id or "")
    return name.lower().endswith(MARKDOWN_SUFFIXES)


class WindowCheck:
    """Passes documents through, counting those longer than the dense model's window.

    Call :meth:`report` at the end for one warning (a long document's tail is not embedded).
    """

    def __init__(self, window: ModelWindow) -> None:
        self.window = window
        self.seen = 0
        self.longer: list[str] = []

    def __call__(self, docs: Iterable[Document]) -> Iterator[Document]:
        for doc in docs:
            self.seen += 1
            # Characters bound tokens from below for these tokenizers: skip counting short texts.
            if len(doc.text) > self.window.capacity and self.window.count(doc.text) > self.window.capacity:
                self.longer.append(str(doc.id))
            yield doc

    def report(self) -> None:
        """Log one warning when some documents were longer than the window."""
        if not self.longer:
            return
        shown = ", ".join(self.longer[:5]) + (", ..." if len(self.longer) > 5 else "")
        log.warning(
            "%d of %d documents are longer than the dense model's window of %d tokens (%s): only their first %d "
            "tokens are embedded. Index with --chunk-size (e.g. --chunk-size %d) to split them into chunks.",
            len(self.longer), self.seen, self.window.max_tokens, shown, self.window.max_tokens, self.window.capacity,
        )


class ChunkCounts:
    """Passes chunks through, recording how many chunks each document made (for :func:`stale_chunk_ids`)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, chunks: Iterable[Document]) -> Iterator[Document]:
        for c in chunks:
            if c.metadata.get("chunk") == 0 and c.id is not None:
                self.counts[c.id.rsplit(CHUNK_ID_SEPARATOR, 1)[0]] = int(c.metadata["chunks"])
            yield c


def stale_chunk_ids(counts: dict[str, int], get: Callable[[list[str]], list[Document]]) -> list[str]:
    """Stored ids that a re-chunked document no longer has: chunks past its new count, or the whole unchunked document.

    ``counts`` maps document ids to their number of chunks now; ``get`` reads stored
    documents by id (e.g. :meth:`HybridRetriever.get`). A document that had 7 chunks and
    now has 5 leaves ``#5`` and ``#6`` behind; an index built before chunking holds the
    document under its own id.
    """
    probes = [chunk_id(doc, n) for doc, n in counts.items()] + list(counts)
    found = {d.id: d for d in get(probes)}
    stale: list[str] = []
    for doc, n in counts.items():
        after = found.get(chunk_id(doc, n))
        if after is not None:
            stale += [chunk_id(doc, k) for k in range(n, int(after.metadata.get("chunks", n + 1)))]
        if doc in found and "chunk" not in found[doc].metadata:
            stale.append(doc)
    return stale
