"""Reading JSONL files, BEIR folders and folders of text files (hybrid_retriever.sources)."""

from __future__ import annotations

import json
import logging
import re
import types
from pathlib import Path

import pytest

from hybrid_retriever import Document, InvalidInputError
from hybrid_retriever.cli import demo_corpus_path
from hybrid_retriever.sources import SourceReport, decode_text, read_beir, read_documents, read_jsonl, read_text_dir

from conftest import load_beir_slice


def write_lines(path: Path, rows: list[object]) -> Path:
    """One line per row: dicts as JSON, strings as they are."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------------- JSONL


def test_jsonl_fields_ids_titles_and_metadata(tmp_path: Path) -> None:
    f = write_lines(
        tmp_path / "docs.jsonl",
        [
            {"id": "a", "text": "Alpha text.", "topic": "x", "year": 2020},
            {"_id": 7, "text": "Beta text.", "title": "Beta", "tags": ["t1", "t2"]},
            {"text": "Gamma text.", "metadata": {"source": "wiki", "lang": "en"}, "lang": "de"},
        ],
    )
    docs = list(read_jsonl(f))
    assert [d.id for d in docs] == ["a", "7", "docs.jsonl:3"]
    assert docs[0] == Document(text="Alpha text.", metadata={"topic": "x", "year": 2020}, id="a")
    assert docs[1].text == "Beta\nBeta text."
    assert docs[1].metadata == {"title": "Beta", "tags": ["t1", "t2"]}
    # A nested "metadata" object is merged; top-level keys win over it.
    assert docs[2].metadata == {"source": "wiki", "lang": "de"}


def test_jsonl_is_streamed(tmp_path: Path) -> None:
    f = write_lines(tmp_path / "docs.jsonl", [{"id": "a", "text": "fine"}, "{broken"])
    stream = read_jsonl(f)
    assert isinstance(stream, types.GeneratorType)
    assert next(stream).id == "a"  # the bad second line is not read yet
    with pytest.raises(InvalidInputError, match="line 2"):
        next(stream)


def test_jsonl_blank_lines_and_bom(tmp_path: Path) -> None:
    f = tmp_path / "docs.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + b'{"id": "a", "text": "one"}\n\n   \n{"id": "b", "text": "two"}\n')
    assert [d.id for d in read_jsonl(f)] == ["a", "b"]


def test_jsonl_empty_text_is_skipped_with_one_counted_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = write_lines(
        tmp_path / "docs.jsonl",
        [{"id": "a", "text": "kept"}, {"id": "b", "text": ""}, {"id": "c", "text": "  \n "}, {"id": "d", "text": "", "title": "Title only"}],
    )
    with caplog.at_level(logging.WARNING, logger="hybrid_retriever.sources"):
        docs = list(read_jsonl(f))
    assert [(d.id, d.text) for d in docs] == [("a", "kept"), ("d", "Title only")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 2 line(s) with empty text" in warnings[0] and "line 2, 3" in warnings[0]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"docs\.jsonl, line 2: not valid JSON"),
        ('{"id": "x"}', r"line 2: no 'text' field"),
        ('{"id": "x", "text": null}', r"line 2: no 'text' field"),
        ('{"id": "x", "text": 5}', r"line 2: 'text' must be a string"),
        ('["a list"]', r"line 2: expected a JSON object"),
        ('{"id": true, "text": "t"}', r"line 2: the id must be a string or an integer"),
        ('{"id": "", "text": "t"}', r"line 2: the id is empty"),
        ('{"id": "x", "text": "t", "title": 3}', r"line 2: 'title' must be a string"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    f = write_lines(tmp_path / "docs.jsonl", [{"id": "ok", "text": "fine"}, line])
    with pytest.raises(InvalidInputError, match=message):
        list(read_jsonl(f))


def test_jsonl_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "docs.jsonl"
    f.write_bytes('{"id": "a", "text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        list(read_jsonl(f))


# -------------------------------------------------------------------------- BEIR


def test_beir_folder(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "corpus.jsonl",
        [
            {"_id": "d1", "title": "A title", "text": "Body one.", "metadata": {"url": "u"}},
            {"_id": "d2", "title": "", "text": "Body two."},
            {"_id": "d3", "title": "", "text": ""},
        ],
    )
    docs = list(read_beir(tmp_path))
    assert docs == [
        Document(text="A title\nBody one.", metadata={"url": "u", "title": "A title"}, id="d1"),
        Document(text="Body two.", metadata={}, id="d2"),
    ]


def test_beir_row_without_id_is_an_error(tmp_path: Path) -> None:
    write_lines(tmp_path / "corpus.jsonl", [{"_id": "d1", "text": "one"}, {"title": "T", "text": "no id"}])
    with pytest.raises(InvalidInputError, match=r"corpus\.jsonl, line 2: no id"):
        list(read_beir(tmp_path))


def test_one_reader_for_index_and_evaluation(tmp_path: Path) -> None:
    """evaluation.datasets.read_corpus reads what `index` reads: same ids, texts, metadata, empty rows and errors."""
    from hybrid_retriever.evaluation.datasets import read_corpus

    write_lines(
        tmp_path / "corpus.jsonl",
        [
            {"_id": "d1", "title": "A title", "text": "Body one.", "metadata": {"url": "u"}},
            {"_id": 2, "title": "", "text": "Body two."},
            {"_id": "d3", "title": "", "text": " "},
            {"_id": "d4", "title": "Only a title", "text": ""},
        ],
    )
    docs, empty = read_corpus(tmp_path / "corpus.jsonl")
    assert docs == list(read_beir(tmp_path)) and empty == ["d3"]
    assert [d.id for d in docs] == ["d1", "2", "d4"] and docs[2].text == "Only a title"
    write_lines(tmp_path / "corpus.jsonl", [{"_id": "d1", "text": "fine"}, {"_id": "d2"}])
    for read in (lambda: read_corpus(tmp_path / "corpus.jsonl"), lambda: list(read_beir(tmp_path))):
        with pytest.raises(InvalidInputError, match=r"line 2: no 'text' field"):
            read()


def test_beir_matches_the_shared_scifact_reader() -> None:
    """The first documents of a real BEIR collection, read independently by conftest's loader."""
    expected, _, _ = load_beir_slice("scifact", 50)
    from conftest import DATASETS

    got = []
    for d in read_beir(DATASETS / "scifact"):
        got.append(d)
        if len(got) == len(expected):
            break
    assert [d.id for d in got] == [d.id for d in expected]
    assert [d.text.strip() for d in got] == [d.text for d in expected]


def test_scifact_read_the_same_for_index_and_evaluation() -> None:
    from conftest import DATASETS
    from hybrid_retriever.evaluation.datasets import read_corpus

    load_beir_slice("scifact", 1)  # skips (counted in the summary) where the shared datasets are missing
    docs, empty = read_corpus(DATASETS / "scifact" / "corpus.jsonl")
    assert len(docs) == 5183 and empty == []
    assert docs == list(read_beir(DATASETS / "scifact"))
    # The ids and texts evaluation indexed before the readers were merged (so its results are unchanged).
    expected = []
    for line in (DATASETS / "scifact" / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        title, text = (row.get("title") or "").strip(), row.get("text") or ""
        expected.append((str(row["_id"]), f"{title}\n{text}" if title and text.strip() else title or text))
    assert [(d.id, d.text) for d in docs] == expected


def test_beir_folder_without_corpus(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no corpus.jsonl"):
        read_beir(tmp_path)


# ------------------------------------------------------------------ text folders


def test_text_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "b.txt").write_text("Bee text.", encoding="utf-8")
    (tmp_path / "a.md").write_text("# Heading\nAy text.", encoding="utf-8")
    (tmp_path / "sub" / "c.TXT").write_text("Sea text.", encoding="utf-8")
    (tmp_path / "sub" / "deeper" / "empty.md").write_text("  \n", encoding="utf-8")
    (tmp_path / "sub" / "skip.json").write_text("{}", encoding="utf-8")
    (tmp_path / ".hidden" / "secret.txt").write_text("hidden", encoding="utf-8")
    (tmp_path / ".dotfile.md").write_text("hidden too", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="hybrid_retriever.sources"):
        docs = list(read_text_dir(tmp_path))
    assert docs == [
        Document(text="# Heading\nAy text.", metadata={"source": "a.md"}, id="a.md"),
        Document(text="Bee text.", metadata={"source": "b.txt"}, id="b.txt"),
        Document(text="Sea text.", metadata={"source": "sub/c.TXT"}, id="sub/c.TXT"),
    ]
    assert any("skipped 1 file(s) with empty text" in r.getMessage() and "sub/deeper/empty.md" in r.getMessage() for r in caplog.records)


def test_text_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.csv").write_text("a,b", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"holds no \.txt/\.md files"):
        list(read_text_dir(tmp_path))
    (tmp_path / "bad.txt").write_bytes(b"\x00\x01bad\xff")
    with pytest.raises(InvalidInputError, match=r"bad\.txt cannot be read \(binary data"):
        list(read_text_dir(tmp_path, strict=True))


@pytest.mark.parametrize(
    ("data", "text", "encoding"),
    [
        ("Grüße aus Köln".encode("utf-8"), "Grüße aus Köln", "utf-8"),
        (b"\xef\xbb\xbfwith a BOM", "with a BOM", "utf-8"),
        ("Café crème brûlée, naïve façade.".encode("latin-1"), "Café crème brûlée, naïve façade.", "cp1252"),
        ("El niño está en España, ¿qué pasó?".encode("cp1252"), "El niño está en España, ¿qué pasó?", "cp1252"),
        ("Привет, как дела? Это обычный русский текст.".encode("cp1251"), "Привет, как дела? Это обычный русский текст.", "cp1251"),
        ("hello wörld".encode("utf-16"), "hello wörld", "utf_16"),
    ],
)
def test_decode_text_detects_the_encoding_where_utf8_fails(data: bytes, text: str, encoding: str) -> None:
    assert decode_text(data) == (text, encoding)


def test_unreadable_files_are_skipped_reported_and_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "ok.txt").write_text("Fine.", encoding="utf-8")
    (tmp_path / "latin.txt").write_bytes("Crème brûlée.".encode("latin-1"))
    (tmp_path / "blob.md").write_bytes(bytes(range(256)))
    report = SourceReport()
    with caplog.at_level(logging.WARNING, logger="hybrid_retriever.sources"):
        docs = list(read_documents(tmp_path, report=report))
    assert [(d.id, d.text) for d in docs] == [("latin.txt", "Crème brûlée."), ("ok.txt", "Fine.")]
    assert report.decoded == [("latin.txt", "cp1252")] and [n for n, _ in report.unreadable] == ["blob.md"]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped 1 file(s)" in messages and "blob.md: binary data" in messages and "latin.txt (cp1252)" in messages


# ------------------------------------------------------------------ dispatching


def test_read_documents_picks_the_reader(tmp_path: Path) -> None:
    jsonl = write_lines(tmp_path / "one.jsonl", [{"id": "j", "text": "from jsonl"}])
    beir = tmp_path / "beir"
    beir.mkdir()
    write_lines(beir / "corpus.jsonl", [{"_id": "b", "title": "T", "text": "from beir"}])
    (beir / "readme.md").write_text("not a document of a BEIR folder", encoding="utf-8")
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "t.txt").write_text("from text", encoding="utf-8")
    assert [(d.id, d.text) for d in read_documents(jsonl)] == [("j", "from jsonl")]
    assert [(d.id, d.text) for d in read_documents(beir)] == [("b", "T\nfrom beir")]
    assert [(d.id, d.text) for d in read_documents(texts)] == [("t.txt", "from text")]


def test_read_documents_rejects_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_documents(tmp_path / "missing.jsonl")  # checked at once, not on first read
    (tmp_path / "data.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"unsupported file type '\.csv'"):
        read_documents(tmp_path / "data.csv")


# -------------------------------------------------------------- the demo corpus


def test_bundled_demo_corpus() -> None:
    path = demo_corpus_path()
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    docs = list(read_jsonl(path))
    assert 150 <= len(docs) == len(rows) <= 250
    assert len({d.id for d in docs}) == len(docs)
    topics = {d.metadata["topic"] for d in docs}
    assert len(topics) >= 8
    for row, doc in zip(rows, docs):
        assert set(row) <= {"id", "title", "text", "topic", "year"}
        assert doc.text == f"{row['title']}\n{row['text']}"
        assert doc.metadata == {k: row[k] for k in ("topic", "year", "title") if k in row}
        assert "year" not in row or isinstance(row["year"], int)
        sentences = len(re.findall(r"[.!?](?:\s|$)", row["text"]))
        assert 2 <= sentences <= 5, (row["id"], sentences)


# ------------------------------------------------------------- symbolic links


def test_links_out_of_the_folder_are_not_followed_unless_asked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("private notes", encoding="utf-8")
    (outside / "dir").mkdir()
    (outside / "dir" / "also.txt").write_text("also outside", encoding="utf-8")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "own.md").write_text("own text", encoding="utf-8")
    (folder / "alias.md").symlink_to(folder / "own.md")  # a link that stays inside: read
    (folder / "leak.txt").symlink_to(outside / "secret.txt")
    (folder / "linked-dir").symlink_to(outside / "dir", target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="hybrid_retriever.sources"):
        docs = list(read_documents(folder))
    assert [d.id for d in docs] == ["alias.md", "own.md"]
    assert any("skipped 1 linked file(s)" in r.getMessage() and "leak.txt" in r.getMessage() for r in caplog.records)
    followed = list(read_documents(folder, follow_links=True))
    assert [(d.id, d.text) for d in followed] == [("alias.md", "own text"), ("leak.txt", "private notes"), ("own.md", "own text")]


def test_count_documents_counts_cheaply(tmp_path: Path) -> None:
    from hybrid_retriever.sources import count_documents

    f = write_lines(tmp_path / "docs.jsonl", [{"id": "a", "text": "one"}, "", {"id": "b", "text": ""}, {"id": "c", "text": "x"}])
    assert count_documents(f) == 3  # non-blank lines (the row with empty text is skipped only when read)
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.md").write_text("a", encoding="utf-8")
    (folder / "b.txt").write_text("b", encoding="utf-8")
    (folder / "c.csv").write_text("c", encoding="utf-8")
    (folder / "link.txt").symlink_to(f)
    assert count_documents(folder) == 2 and count_documents(folder, follow_links=True) == 3
