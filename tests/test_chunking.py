"""Chunking long documents (hybrid_retriever.chunking) by the dense model's tokens or by characters."""

from __future__ import annotations

import logging

import pytest

from hybrid_retriever import Document, InvalidInputError
from hybrid_retriever.branches import DenseBranch
from hybrid_retriever.chunking import Chunker, ModelWindow, WindowCheck
from hybrid_retriever.sources import read_documents

SECTION = "Qdrant stores dense and sparse vectors. It is written in Rust and searches fast. "


def markdown_doc() -> str:
    return (
        "# Guide\n\nIntro paragraph about the guide.\n\n"
        "## Install\n\n" + SECTION * 3 + "\n\n"
        "## Search\n\n" + SECTION * 4 + "\n\n"
        "## Very long section\n\n" + ("One sentence about hybrid retrieval and fusion. " * 60)
    )


@pytest.fixture(scope="module")
def window(dense_branch: DenseBranch) -> ModelWindow:
    return ModelWindow.of(dense_branch.model)


def test_window_of_minilm(window: ModelWindow, dense_branch: DenseBranch) -> None:
    assert (window.max_tokens, window.special_tokens, window.capacity) == (256, 2, 254)
    # The count agrees with the model's own tokenizer (without [CLS]/[SEP]).
    text = "Hybrid retrieval: BM25 + dense."
    assert window.count(text) == len(dense_branch.model.tokenizer(text, add_special_tokens=False)["input_ids"])


def test_token_chunks_fit_and_have_ids_spans_and_metadata(window: ModelWindow, dense_branch: DenseBranch) -> None:
    text = markdown_doc()
    doc = Document(text=text, metadata={"source": "guide.md", "lang": "en"}, id="guide.md")
    chunks = Chunker(size=60, overlap=0, window=window).split(doc)
    assert len(chunks) >= 5
    tokenizer = dense_branch.model.tokenizer
    for n, c in enumerate(chunks):
        assert c.id == f"guide.md#{n}"
        m = c.metadata
        assert (m["source"], m["lang"], m["chunk"], m["chunks"]) == ("guide.md", "en", n, len(chunks))
        assert text[m["char_start"] : m["char_end"]] == c.text and c.text.strip()
        assert len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) <= 60
    # Markdown-aware: each section that fits starts its own chunk at its heading, whole.
    starts = [c.text.splitlines()[0] for c in chunks]
    assert "## Install" in starts and "## Search" in starts
    install = next(c for c in chunks if c.text.startswith("## Install"))
    assert install.text.rstrip().endswith(SECTION.strip())
    # The long section falls back to sentences: no chunk ends mid-sentence.
    assert all(c.text.rstrip().endswith((".", "guide.")) for c in chunks if "hybrid retrieval and fusion" in c.text)
    # Spans are in order and cover every word of the text.
    assert [c.metadata["char_start"] for c in chunks] == sorted(c.metadata["char_start"] for c in chunks)
    assert " ".join(text[c.metadata["char_start"] : c.metadata["char_end"]] for c in chunks).split() == text.split()


def test_default_size_fills_the_window_and_overlap_repeats_text(window: ModelWindow) -> None:
    doc = Document(text="Sentence number one is here. " * 200, id="d")
    full = Chunker(window=window).split(doc)
    assert all(window.count(c.text) <= 254 for c in full) and max(window.count(c.text) for c in full) > 200
    overlapping = Chunker(size=50, overlap=20, window=window).split(doc)
    for a, b in zip(overlapping, overlapping[1:]):
        assert b.metadata["char_start"] < a.metadata["char_end"]  # neighbours share text


def test_character_chunks_and_plain_text(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("First paragraph here.\n\nSecond paragraph, a bit longer.\n\nThird.", encoding="utf-8")
    (tmp_path / "short.md").write_text("# Tiny\n\nfits", encoding="utf-8")
    chunks = list(read_documents(tmp_path, chunker=Chunker(size=45)))
    assert [c.id for c in chunks] == ["notes.txt#0", "notes.txt#1", "short.md#0"]
    assert [c.text for c in chunks] == ["First paragraph here.", "Second paragraph, a bit longer.\n\nThird.", "# Tiny\n\nfits"]
    assert all(len(c.text) <= 45 for c in chunks)
    assert chunks[2].metadata == {"source": "short.md", "chunk": 0, "chunks": 1, "char_start": 0, "char_end": 12}


@pytest.mark.parametrize(
    "size, overlap, message",
    [(0, 0, "chunk size must be a positive"), (100, 100, "smaller than the chunk size"), (100, -1, "at least 0")],
)
def test_bad_settings(size: int, overlap: int, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Chunker(size=size, overlap=overlap)


def test_window_check_warns_about_long_unchunked_documents(window: ModelWindow, caplog: pytest.LogCaptureFixture) -> None:
    docs = [Document(text="short", id="a"), Document(text="word " * 300, id="long-1"), Document(text="x" * 300, id="b")]
    check = WindowCheck(window)
    with caplog.at_level(logging.WARNING, logger="hybrid_retriever.chunking"):
        assert list(check(docs)) == docs
        check.report()
    # "word " * 300 is 300 tokens; 300 x's are a few word pieces (fits).
    assert check.longer == ["long-1"]
    assert any("1 of 3 documents are longer than the dense model's window of 256 tokens" in r.getMessage() for r in caplog.records)
