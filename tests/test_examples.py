"""The examples run as __main__ (offline) and print what they promise; the LangChain README quick start runs."""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"python_api": ROOT / "examples" / "python_api.py", "langchain_rag": ROOT / "examples" / "langchain_rag.py"}
LC_README = ROOT / "adapters" / "hybrid_retriever_langchain" / "README.md"


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    """What each example prints when run as ``__main__`` (in this process, to reuse the loaded torch)."""
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by conftest: the examples must not need the network
    done = {}
    for name, path in EXAMPLES.items():
        buf = io.StringIO()
        argv = sys.argv
        sys.argv = [str(path)]
        try:
            with contextlib.redirect_stdout(buf):
                runpy.run_path(str(path), run_name="__main__")
        finally:
            sys.argv = argv
        done[name] = buf.getvalue()
    return done


def section(text: str, title_prefix: str) -> str:
    """The lines of one '== title' section of python_api.py's output."""
    m = re.search(rf"^== {re.escape(title_prefix)}.*?\n(.*?)(?=^==|^reopened|^as JSON|\Z)", text, re.S | re.M)
    assert m, f"no section {title_prefix!r} in:\n{text}"
    return m.group(1)


def hit_ids(block: str) -> list[str]:
    return re.findall(r"^\s+#\d+ (\S+)", block, re.M)


def test_python_api_example(outputs):
    out = outputs["python_api"]
    assert "indexed 6 documents; metadata fields: ['topic', 'year']" in out

    plain = section(out, "search 'which database")
    assert len(hit_ids(plain)) == 3 and hit_ids(plain)[:2] == ["qdrant", "postgres"]
    assert len(re.findall(r"^\s+bm25\s+raw=", plain, re.M)) == 3 and len(re.findall(r"^\s+dense\s+raw=", plain, re.M)) == 3
    # qdrant has every query term BM25 indexes ("database", "rust"): rank 1 in both branches.
    assert re.search(r"#1 qdrant\s+fused=1\.000.*\n\s+bm25\s+raw=[\d.]+ normalized=1\.000 rank=1\n\s+dense\s+raw=[\d.]+ normalized=1\.000 rank=1", plain)

    filtered = section(out, "search 'ranking with fused lists' where")
    assert set(hit_ids(filtered)) == {"rrf", "sbert"}  # topic ranking and year >= 2000; bm25 (1994) excluded
    assert all(t == "ranking" for t in re.findall(r"topic=(\S+)", filtered))

    assert "reopened: 6 documents, branches ['bm25', 'dense']" in out
    assert "reopened results identical: True" in out
    assert hit_ids(section(out, "after reopen")) == hit_ids(plain)


def test_langchain_rag_example(outputs):
    out = outputs["langchain_rag"]
    assert out.startswith("Question: How does hybrid search combine BM25 with dense retrieval?")
    answer = re.search(r"^Answer: (.+)$", out, re.M)
    assert answer and answer.group(1).startswith("Hybrid search fuses")
    context = out.split("Context:\n", 1)[1].split("Answer:", 1)[0]
    assert context.startswith("[hybrid.md] Hybrid search runs lexical and dense retrieval")

    docs = re.findall(r"^\s+#(\d) (\S+) \[(\S+)\] fused=([\d.]+)$", out, re.M)
    assert [r for r, _, _, _ in docs] == ["1", "2", "3"] and docs[0][1] == "hybrid"
    assert "eiffel" not in [i for _, i, _, _ in docs]
    fused = [float(f) for *_, f in docs]
    assert fused == sorted(fused, reverse=True)
    # Every retrieved document shows both branches' raw score, normalised score and rank.
    assert len(re.findall(r"^\s+bm25\s+raw=\S+ normalized=\S+ rank=\S+", out, re.M)) == 3
    assert len(re.findall(r"^\s+dense\s+raw=\S+ normalized=\S+ rank=\S+", out, re.M)) == 3
    # The order of the context is the order of the retrieved documents.
    sources = re.findall(r"^\[(\S+)\] ", context, re.M)
    assert sources == [s for _, _, s, _ in docs]


def test_langchain_readme_quick_start_runs(capsys):
    text = LC_README.read_text(encoding="utf-8")
    quick = text.split("### Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", quick, re.S)
    assert code, "the quick start has no python block"
    exec(compile(code.group(1), str(LC_README), "exec"), {"__name__": "__readme__"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("qdrant {'raw': ")
    assert lines[1] in ("['rrf']", "['bm25']")  # k=1 among the two 'ir' documents
    assert lines[2].startswith("[['qdrant', ")
    assert lines[3] == "Qdrant [qdrant]."
