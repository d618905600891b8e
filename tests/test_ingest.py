"""Ingestion bookkeeping: skip unchanged documents, the duplicate-id rule, stopping, time-bounded batches, and the CLI's index."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from typer.testing import CliRunner

from hybrid_retriever import Document, HybridRetriever, InvalidInputError, RetrieverConfig
from hybrid_retriever.branches import BM25Branch
from hybrid_retriever.cli import app
from hybrid_retriever.config import BM25BranchConfig
from hybrid_retriever.ingest import PAYLOAD_HASH, BatchSizer, DuplicateIdError, IngestReport
from hybrid_retriever.retriever import point_id

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


class CountingBM25(BM25Branch):
    """The real BM25 branch, counting the texts it encodes."""

    def __init__(self) -> None:
        # A named language: with language auto a small index re-encodes its stored BM25 vectors at every
        # ingest until the language is decided for good (tests/test_languages.py), which these counts would see.
        super().__init__(BM25BranchConfig(language="english"))
        self.encoded: list[str] = []
        self.batches: list[int] = []

    def encode_documents(self, texts):
        self.encoded.extend(texts)
        self.batches.append(len(texts))
        return super().encode_documents(texts)


def bm25_retriever(path: Path) -> tuple[HybridRetriever, CountingBM25]:
    cfg = RetrieverConfig.validate_data(
        {"store": {"kind": "edge", "path": str(path)}, "branches": [{"kind": "bm25", "language": "english"}],
         "runtime": {"show_progress": False}}
    )
    branch = CountingBM25()
    return HybridRetriever(cfg, branches=[branch]), branch


def docs(n: int, prefix: str = "d", start: int = 0) -> list[Document]:
    return [Document(f"Field notes number {i} about rivers and {prefix}.", id=f"{prefix}{i}", metadata={"i": i}) for i in range(start, start + n)]


# ------------------------------------------------------------------ skip unchanged


def test_skip_unchanged_counts_and_encodes_only_what_changed(tmp_path: Path) -> None:
    r, branch = bm25_retriever(tmp_path / "index")
    first = docs(10)
    assert r.add_documents(first) == [d.id for d in first]
    stored = r.store.retrieve([point_id("d3")])[0]
    assert len(stored.payload[PAYLOAD_HASH]) == 32  # every point carries its content hash

    branch.encoded.clear()
    report = IngestReport()
    again = r.add_documents(iter(first), skip_unchanged=True, report=report)
    assert again == [d.id for d in first]  # ids of everything handled, skipped included
    assert (report.written, report.replaced, report.skipped) == (0, 0, 10) and branch.encoded == []

    changed = list(first)
    changed[2] = Document("A new text for d2 about glaciers.", id="d2", metadata={"i": 2})
    changed[5] = Document(first[5].text, id="d5", metadata={"i": 5, "reviewed": True})  # metadata counts too
    changed += docs(2, start=10)
    report = IngestReport()
    r.add_documents(changed, skip_unchanged=True, report=report, batch_size=3)
    assert (report.written, report.replaced, report.new, report.skipped) == (4, 2, 2, 8)
    assert sorted(branch.encoded) == sorted(["A new text for d2 about glaciers.", first[5].text] + [d.text for d in docs(2, start=10)])
    assert r.count() == 12 and r.get(["d2"])[0].text == "A new text for d2 about glaciers."
    assert r.search("glaciers", k=1)[0].id == "d2"

    # Without skip_unchanged everything is encoded again (the default: re-adding replaces).
    branch.encoded.clear()
    report = IngestReport()
    r.add_texts([d.text for d in first], metadatas=[d.metadata for d in first], ids=[d.id for d in first], report=report)
    assert report.written == 10 and len(branch.encoded) == 10
    r.close()


# -------------------------------------------------------------- duplicate ids


def stream_with_duplicate(first_at: int, second_at: int, n: int = 12) -> Iterator[Document]:
    for i, d in enumerate(docs(n, prefix="s"), start=1):
        yield Document("a repeated id", id="twice") if i in (first_at, second_at) else d


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5, 256])
def test_duplicate_rule_does_not_depend_on_the_batch_size(tmp_path: Path, batch_size: int) -> None:
    """A repeated id is an error wherever it is; the error names both positions and exactly what was written."""
    r, _ = bm25_retriever(tmp_path / "index")
    r.add_documents(docs(4))
    with pytest.raises(DuplicateIdError) as info:
        r.add_documents(stream_with_duplicate(3, 9), batch_size=batch_size, batch_seconds=None)
    err = info.value
    assert err.doc_id == "twice" and err.positions == (3, 9)
    assert "documents #3 and #9 of the input" in str(err)
    # Batches before the one holding #9 are stored, nothing from that batch on.
    stored_before = (9 - 1) // batch_size * batch_size
    expected = [d.id for d in stream_with_duplicate(3, 9)][:stored_before]
    assert err.written_ids == expected
    assert f"{len(expected)} documents before it were written" in str(err) if expected else "nothing was written" in str(err)
    assert r.count() == 4 + len(expected)
    assert [d.id for d in r.get(expected)] == expected
    r.close()


def test_duplicates_in_a_list_or_a_new_index_write_nothing(tmp_path: Path) -> None:
    r, _ = bm25_retriever(tmp_path / "index")
    with pytest.raises(DuplicateIdError, match="documents #3 and #9 of the input.*nothing was written"):
        r.add_documents(stream_with_duplicate(3, 9), batch_size=2)  # a new index reads a sample first
    assert r.count() == 0
    r.add_documents(docs(2))
    with pytest.raises(DuplicateIdError, match="#1 and #3 .*nothing was written"):
        r.add_texts(["one", "two", "three"], ids=["x", "y", "x"], batch_size=1)
    assert r.count() == 2
    r.close()


def test_a_bad_document_in_a_later_batch_says_what_was_written(tmp_path: Path) -> None:
    r, _ = bm25_retriever(tmp_path / "index")
    r.add_documents(docs(2))
    stream = docs(6, prefix="b") + [Document("  ", id="blank")]
    with pytest.raises(InvalidInputError, match=r"blank.*6 documents before it were written \('b0', 'b1', 'b2', \.\.\., 'b5'\)"):
        r.add_documents(iter(stream), batch_size=3, batch_seconds=None)
    assert r.count() == 8
    r.close()


def test_the_jsonl_reader_names_both_lines_of_a_duplicate(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "text": f"row {i}"} for i in range(5)] + [{"id": "r1", "text": "again"}]
    source = tmp_path / "dupes.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    cfg = tmp_path / "bm25.json"
    cfg.write_text(json.dumps({"branches": [{"kind": "bm25"}]}), encoding="utf-8")
    result = runner.invoke(app, ["index", str(source), "--index", str(tmp_path / "i"), "--config", str(cfg), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "dupes.jsonl, line 6: duplicate document id 'r1', first on line 2" in result.stderr


# ------------------------------------------------------------------ stopping and batches


def test_request_stop_ends_after_the_current_batch(tmp_path: Path) -> None:
    r, _ = bm25_retriever(tmp_path / "index")
    r.add_documents(docs(2))
    report = IngestReport()

    def stream() -> Iterator[Document]:
        for i, d in enumerate(docs(50, prefix="x")):
            if i == 7:
                report.request_stop()  # as the CLI's Ctrl-C handler does, mid-batch
            yield d

    ids = r.add_documents(stream(), report=report, batch_size=5, batch_seconds=None)
    assert report.stopped and ids == [f"x{i}" for i in range(10)] and report.written == 10
    assert r.count() == 12
    r.close()


def test_batch_sizer_follows_the_measured_rate() -> None:
    sizer = BatchSizer(256, seconds=2.0)
    assert sizer.size == 8
    sizer.record(8, 1.0)  # 8 docs/s -> 16 docs in 2 s
    assert sizer.size == 16
    sizer.record(16, 0.1)  # 160 docs/s -> 320, but at most 4x a step and the batch size
    assert sizer.size == 64
    sizer.record(64, 0.1)
    assert sizer.size == 256
    sizer.record(256, 100.0)  # slow: 2.56 docs/s -> 5
    assert sizer.size == 5
    fixed = BatchSizer(100, seconds=None)
    fixed.record(1, 50.0)
    assert fixed.size == 100


def test_time_bounded_batches_start_small_and_grow(tmp_path: Path) -> None:
    r, branch = bm25_retriever(tmp_path / "index")
    r.add_documents(docs(2))
    branch.batches.clear()
    r.add_documents(iter(docs(300, prefix="t")), batch_size=100, batch_seconds=2.0)
    assert branch.batches[:2] == [8, 32] and max(branch.batches) == 100 and sum(branch.batches) == 300  # BM25 is fast
    branch.batches.clear()
    r.add_documents(iter(docs(300, prefix="u")), batch_size=100)  # the default: fixed batches
    assert branch.batches == [100, 100, 100]
    r.close()


# --------------------------------------------------------------------------- CLI


def test_index_twice_skips_unchanged_and_reencodes_changed(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("# Rivers\n\nRivers carve valleys over time.", encoding="utf-8")
    (folder / "b.txt").write_text("Glaciers move slowly down mountains.", encoding="utf-8")
    index = tmp_path / "index"
    cfg = tmp_path / "bm25.json"
    cfg.write_text(json.dumps({"branches": [{"kind": "bm25"}]}), encoding="utf-8")
    first = runner.invoke(app, ["index", str(folder), "--index", str(index), "--config", str(cfg), "--no-progress"])
    assert first.exit_code == 0, first.output
    assert "Indexed 2 chunks" in first.stdout and "2 new, 0 changed, 0 unchanged (skipped)" in first.stdout
    (folder / "b.txt").write_text("Glaciers move slowly down mountains, carving fjords.", encoding="utf-8")
    (folder / "c.txt").write_text("Deserts receive little rain.", encoding="utf-8")
    second = runner.invoke(app, ["index", str(folder), "--index", str(index), "--no-progress"])
    assert second.exit_code == 0, second.output
    assert "1 new, 1 changed, 1 unchanged (skipped)" in second.stdout and "holds 3 entries" in second.stdout
    forced = runner.invoke(app, ["index", str(folder), "--index", str(index), "--no-progress", "--reindex"])
    assert forced.exit_code == 0 and "3 encoded again (--reindex)" in forced.stdout


def test_index_of_a_long_markdown_file_is_chunked_to_the_window(tmp_path: Path) -> None:
    """The default: a folder's files are split into chunks of the dense model's window; hits are chunks."""
    folder = tmp_path / "docs"
    folder.mkdir()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (folder / "README.md").write_text(text, encoding="utf-8")
    index = tmp_path / "index"
    result = runner.invoke(app, ["index", str(folder), "--index", str(index), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert re.search(r"Indexed \d+ chunks from .* \(at most 254 tokens, overlap 0\)", result.stdout)
    hits = json.loads(runner.invoke(app, ["query", "install the LangChain extra", "--index", str(index), "--json", "-k", "3"]).stdout)
    for h in hits:
        m = h["metadata"]
        assert h["id"] == f"README.md#{m['chunk']}" and m["source"] == "README.md"
        assert text[m["char_start"] : m["char_end"]] == h["text"] and len(h["text"]) < len(text) / 4


def test_unchunked_long_rows_are_warned_about(tmp_path: Path) -> None:
    source = tmp_path / "long.jsonl"
    rows = [{"id": "short", "text": "a short row"}, {"id": "long", "text": "many words here " * 200}]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["index", str(source), "--index", str(tmp_path / "i"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "1 of 2 documents are longer than the dense model's window of 256 tokens (long)" in result.stderr
    assert "--chunk-size" in result.stderr


def test_ctrl_c_stops_after_the_current_batch_and_exits_130(tmp_path: Path) -> None:
    """A real SIGINT to a running `hybrid-retriever index`: what was written is kept and reported; a re-run goes on."""
    source = tmp_path / "corpus.jsonl"
    words = "rivers glaciers deserts forests volcanoes oceans".split()
    n = 400
    rows = [{"id": f"d{i}", "text": f"Document {i} is about {words[i % 6]} and what lives there. " * 5} for i in range(n)]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    index = tmp_path / "index"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "hybrid_retriever.cli", "index", str(source), "--index", str(index), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 240
        while not (index / "manifest.json").exists():  # the first batch is being written
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
            time.sleep(0.2)
        time.sleep(1.0)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        answered = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "stopping after the current batch;" in err and "documents written" in err
    written = int(re.search(r"stopped: (\d+) documents written", err).group(1))
    assert 0 < written < n
    assert answered < 30, answered  # batches are bounded by time (2 s), not by 256 documents
    with HybridRetriever.open(str(index)) as r:
        assert r.count() == written
    # Going on: the written documents are skipped, the others indexed.
    again = runner.invoke(app, ["index", str(source), "--index", str(index), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert f"{n - written} new, 0 changed, {written} unchanged (skipped)" in again.stdout


def test_reindexing_a_shrunk_file_removes_its_stale_chunks(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    note = folder / "a.txt"
    note.write_text("Rivers carve valleys.\n\nGlaciers move slowly.\n\nDeserts get little rain.", encoding="utf-8")
    (folder / "b.txt").write_text("Forests hold many trees.", encoding="utf-8")
    index = tmp_path / "index"
    cfg = tmp_path / "bm25.json"
    cfg.write_text(json.dumps({"branches": [{"kind": "bm25"}]}), encoding="utf-8")
    whole = runner.invoke(app, ["index", str(folder), "--index", str(index), "--config", str(cfg), "--no-progress", "--chunk-size", "0"])
    assert whole.exit_code == 0 and "Indexed 2 documents" in whole.stdout, whole.output
    chunk = ["--chunk-size", "25", "--chunk-unit", "characters", "--no-progress"]
    split = runner.invoke(app, ["index", str(folder), "--index", str(index), *chunk])
    # The files indexed whole before are replaced by their chunks.
    assert "4 new, 0 changed, 0 unchanged (skipped), 2 stale chunks removed" in split.stdout, split.output
    with HybridRetriever.open(str(index)) as r:
        assert sorted(d.id for d in r.documents()) == ["a.txt#0", "a.txt#1", "a.txt#2", "b.txt#0"]
    note.write_text("Rivers carve valleys.", encoding="utf-8")
    shrunk = runner.invoke(app, ["index", str(folder), "--index", str(index), *chunk])
    assert "0 new, 1 changed, 1 unchanged (skipped), 2 stale chunks removed" in shrunk.stdout, shrunk.output
    with HybridRetriever.open(str(index)) as r:
        assert sorted(d.id for d in r.documents()) == ["a.txt#0", "b.txt#0"]
        assert r.get(["a.txt#0"])[0].metadata["chunks"] == 1
