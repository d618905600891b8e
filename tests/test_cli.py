"""The command line (typer's CliRunner, real models and indexes) and the README it documents."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from hybrid_retriever import HybridRetriever, RetrieverConfig
from hybrid_retriever.cli import DEMO_QUERIES, app

from conftest import SMALL_CORPUS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

runner = CliRunner()


def run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result: Any, *fragments: str) -> None:
    """Exit code 2, one 'error: ...' line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


SMALL_ROWS = [{"id": i, "text": t, **m} for i, t, m in SMALL_CORPUS]
BM25_ONLY = {"branches": [{"kind": "bm25"}], "fusion": {"method": "rrf"}, "runtime": {"show_progress": False}}


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small corpus indexed through the CLI with the default configuration (BM25 + MiniLM)."""
    root = tmp_path_factory.mktemp("cli")
    source = write_jsonl(root / "small.jsonl", SMALL_ROWS)
    result = run("index", source, "--index", root / "index", "--no-progress")
    assert result.exit_code == 0, result.output
    assert re.search(r"Indexed 8 documents from .*small\.jsonl: 8 new, 0 changed, 0 unchanged \(skipped\) in [\d.]+ s", result.stdout)
    assert "holds 8 documents" in result.stdout
    return root / "index"


# --------------------------------------------------------------------------- query


def test_query_json_matches_the_python_api(small_index: Path) -> None:
    result = run("query", "vector database written in Rust", "--index", small_index, "--k", 4, "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert hits[0]["id"] == "qdrant"
    assert hits[0]["metadata"] == {"topic": "db", "year": 2021}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    for h in hits:
        assert set(h["provenance"]) == {"bm25", "dense"}
        for p in h["provenance"].values():
            assert {"raw", "normalized", "rank", "completed"} <= set(p)
    with HybridRetriever.open(str(small_index)) as r:
        api = [h.as_dict() for h in r.search("vector database written in Rust", k=4)]
    assert [h["id"] for h in hits] == [h["id"] for h in api]
    assert scores == pytest.approx([h["score"] for h in api])


def test_query_explain_shows_every_branch(small_index: Path) -> None:
    result = run("query", "reciprocal rank fusion of ranked lists", "--index", small_index, "-k", 3, "--explain")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for header in ("fused", "bm25", "dense", "raw", "norm", "rank", "compl"):
        assert header in out
    rows = [line.split() for line in out.splitlines() if re.match(r"^\s*[1-3] ", line)]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert rows[0][1] == "rrf"
    # Each row: rank, id, fused, then per branch raw, norm, rank[, compl]: the numbers agree with --json.
    hits = json.loads(run("query", "reciprocal rank fusion of ranked lists", "--index", small_index, "-k", 3, "--json").stdout)
    for row, hit in zip(rows, hits):
        assert row[1] == hit["id"] and float(row[2]) == pytest.approx(hit["score"], abs=5e-4)
        bm25 = hit["provenance"]["bm25"]
        assert float(row[3]) == pytest.approx(bm25["raw"], abs=5e-4)
        assert row[5] == ("–" if bm25["rank"] is None else str(bm25["rank"]))
    assert "fusion: adaptive (dbsf, missing=exact); weights: bm25=0.50, dense=0.50" in out


def test_query_plain_output(small_index: Path) -> None:
    result = run("query", "cats sleeping", "--index", small_index, "--k", 2)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # Z-score fusion (the default) gives signed scores.
    assert re.fullmatch(r" 1\. -?\d\.\d{3}  cats", lines[0])
    assert lines[1].strip().startswith("Cats are small domesticated")
    assert re.fullmatch(r" 2\. -?\d\.\d{3}  \S+", lines[2])


@pytest.mark.parametrize(
    "flt, expected",
    [
        ({"topic": "ir"}, {i for i, _, m in SMALL_CORPUS if m["topic"] == "ir"}),
        ({"year": {"gte": 2000}}, {i for i, _, m in SMALL_CORPUS if m["year"] >= 2000}),
        ({"topic": {"in": ["db", "code"]}, "year": {"lt": 2000}}, {i for i, _, m in SMALL_CORPUS if m["topic"] in ("db", "code") and m["year"] < 2000}),
    ],
)
def test_query_filter(small_index: Path, flt: dict[str, Any], expected: set[str]) -> None:
    # k above the corpus size: the dense branch returns every matching document, so the hits are exactly the filter's matches.
    result = run("query", "ranking documents", "--index", small_index, "--k", 20, "--json", "--filter", json.dumps(flt))
    assert result.exit_code == 0, result.output
    assert {h["id"] for h in json.loads(result.stdout)} == expected


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--filter", "{topic: ir}"], ["--filter is not valid JSON"]),
        (["--filter", '["ir"]'], ["--filter must be a JSON object"]),
        (["--filter", '{"colour": "red"}'], ["colour", "no stored document has", "known fields"]),
        (["--filter", '{"year": {"between": [1, 2]}}'], ["unknown filter operator 'between'"]),
    ],
)
def test_query_bad_filter_exits_2(small_index: Path, args: list[str], fragments: list[str]) -> None:
    assert_one_line_error(run("query", "anything", "--index", small_index, *args), *fragments)


def test_query_missing_index_exits_2(tmp_path: Path) -> None:
    assert_one_line_error(run("query", "anything", "--index", tmp_path / "nope"), "no index at", "hybrid-retriever index SOURCE")


def test_query_empty_text_exits_2(small_index: Path) -> None:
    assert_one_line_error(run("query", "   ", "--index", small_index), "query is empty")


def test_index_bad_sources_exit_2(tmp_path: Path) -> None:
    assert_one_line_error(run("index", tmp_path / "missing.jsonl", "--index", tmp_path / "i"), "does not exist")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "txt": "typo"}\n', encoding="utf-8")
    assert_one_line_error(run("index", bad, "--index", tmp_path / "i"), "bad.jsonl, line 2", "no 'text' field")
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": "x"\n', encoding="utf-8")
    assert_one_line_error(run("index", bad, "--index", tmp_path / "i"), "line 2: not valid JSON")
    dupes = write_jsonl(tmp_path / "dupes.jsonl", [{"id": "a", "text": "one"}, {"id": "a", "text": "two"}])
    assert_one_line_error(run("index", dupes, "--index", tmp_path / "i"), "duplicate document id 'a'")


def test_index_bad_config_exits_2(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "s.jsonl", SMALL_ROWS)
    typo = tmp_path / "typo.yaml"
    typo.write_text("fusion:\n  methd: rrf\nruntime:\n  k: 0\n", encoding="utf-8")
    # Two problems, folded onto one line.
    assert_one_line_error(run("index", source, "--index", tmp_path / "i", "--config", typo), "unknown key 'fusion.methd'", "'runtime.k'")
    server = tmp_path / "server.json"
    server.write_text(json.dumps({"store": {"kind": "qdrant", "url": "http://localhost:6333"}}), encoding="utf-8")
    assert_one_line_error(run("index", source, "--index", tmp_path / "i", "--config", server), "names a 'qdrant' store")
    assert_one_line_error(run("index", source, "--index", tmp_path / "i", "--config", tmp_path / "none.yaml"), "does not exist")
    assert not (tmp_path / "i").exists()


# ------------------------------------------------- config files, adding, formats


def test_index_with_config_file_adds_to_an_existing_index(tmp_path: Path) -> None:
    """A BM25-only RRF configuration (YAML), then more documents from a folder, then a mismatching config."""
    cfg = tmp_path / "bm25.yaml"
    cfg.write_text(yaml.safe_dump(BM25_ONLY), encoding="utf-8")
    index = tmp_path / "index"
    first = write_jsonl(tmp_path / "first.jsonl", SMALL_ROWS[:5])
    result = run("index", first, "--index", index, "--config", cfg, "--batch-size", 2)
    assert result.exit_code == 0, result.output
    assert "Indexed 5 documents" in result.stdout and "holds 5 documents" in result.stdout

    texts = tmp_path / "texts"
    (texts / "sub").mkdir(parents=True)
    (texts / "tea.txt").write_text("Green tea is steeped briefly in water below boiling.", encoding="utf-8")
    (texts / "sub" / "coffee.md").write_text("Espresso forces hot water through finely ground coffee.", encoding="utf-8")
    result = run("index", texts, "--index", index)  # no --config: reopens with the stored one
    assert result.exit_code == 0, result.output
    # Files are chunked by default; without a dense model the chunk size counts characters.
    assert "Indexed 2 chunks" in result.stdout and "at most 1000 characters" in result.stdout and "holds 7 entries" in result.stdout

    result = run("query", "espresso coffee", "--index", index, "--json")
    hits = json.loads(result.stdout)
    coffee = "Espresso forces hot water through finely ground coffee."
    assert hits[0]["id"] == "sub/coffee.md#0" and hits[0]["text"] == coffee
    assert hits[0]["metadata"] == {"source": "sub/coffee.md", "chunk": 0, "chunks": 1, "char_start": 0, "char_end": len(coffee)}
    assert set(hits[0]["provenance"]) == {"bm25"}
    assert hits[0]["score"] == pytest.approx(1 / 61)  # RRF, one branch, rank 1, k = 60

    explain = run("query", "espresso coffee", "--index", index, "--explain").stdout
    assert "bm25" in explain and "dense" not in explain and "fusion: rrf (k=60)" in explain

    other = tmp_path / "other.json"
    other.write_text(json.dumps({**BM25_ONLY, "branches": [{"kind": "bm25", "k1": 2.0}]}), encoding="utf-8")
    assert_one_line_error(run("index", first, "--index", index, "--config", other), "built with other settings", "k1 is 0.9 in the index, 2.0")


def test_config_prints_the_defaults() -> None:
    result = run("config")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# hybrid-retriever configuration")
    assert RetrieverConfig.from_yaml(result.stdout) == RetrieverConfig()
    as_json = run("config", "--json")
    assert RetrieverConfig.from_json(as_json.stdout) == RetrieverConfig()


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("index", "query", "demo", "config"):
        assert re.search(rf"│ {command}\s", result.stdout), command


# -------------------------------------------------------------------------- demo


def test_demo(tmp_path: Path) -> None:
    index = tmp_path / "demo-index"
    result = run("demo", "--index", index)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"indexed 200 documents in [\d.]+ s", out)
    for q in DEMO_QUERIES:
        assert q.text in out and q.expected in out
    assert f"--index {index} --explain" in out

    # What each query is there to show, checked on the index the demo built.
    with HybridRetriever.open(str(index)) as r:
        found = {q.text: r.search(q.text, k=5, filter=q.filter or None) for q in DEMO_QUERIES}
        unfiltered_flight = r.search(DEMO_QUERIES[3].text, k=1)
    for q in DEMO_QUERIES:
        assert found[q.text][0].id == q.expected, q.text
    name, paraphrase, mixed, filtered = (found[q.text][0].provenance for q in DEMO_QUERIES)
    assert name["bm25"].rank == 1 and (name["dense"].rank is None or name["dense"].rank > 5)
    assert paraphrase["bm25"].rank is None and paraphrase["dense"].rank == 1
    assert mixed["bm25"].rank > 1 and mixed["dense"].rank == 1
    assert all(h.id.startswith("kb-qt200") for h in found[DEMO_QUERIES[2].text][:3])
    assert all(h.metadata["year"] >= 2000 for h in found[DEMO_QUERIES[3].text])
    assert unfiltered_flight[0].id == "hist-wright"


# ------------------------------------------------------------------------ README


def _load_script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_readme_config_reference_is_current() -> None:
    ref = _load_script("config_reference")
    text = README.read_text(encoding="utf-8")
    assert ref.update(text) == text, "README.md's configuration reference is stale: run `make reference`"
    for section, model in RetrieverConfig.model_fields.items():
        assert f"| `{section}` |" in text


def test_readme_commands_and_ci() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
    assert "set -euo pipefail" in ci and re.search(r"^make test$", ci, re.M)


def test_readme_python_quick_start_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    quick_start, _sources, langchain = blocks[0], blocks[1], blocks[2]
    monkeypatch.chdir(tmp_path)
    exec(compile(quick_start, "README quick start", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("1 axolotl ")
    assert any(line.startswith("qdrant ") for line in lines)
    pytest.importorskip("hybrid_retriever_langchain")
    exec(compile(langchain, "README LangChain snippet", "exec"), {})
    assert capsys.readouterr().out.startswith("axolotl ")


def test_query_with_a_config_file_uses_its_fusion(small_index: Path, tmp_path: Path) -> None:
    cfg = RetrieverConfig.model_validate({"fusion": {"method": "rrf", "rrf_k": 10}, "runtime": {"show_progress": False}})
    cfg_file = tmp_path / "tuned.yaml"
    cfg.save(cfg_file)
    result = run("query", "vector database written in Rust", "--index", small_index, "--k", 3, "--json", "--config", cfg_file)
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    # RRF with k=10 and equal weights: the top hit is ranked 1 by both branches -> 2 * 0.5 / (10 + 1).
    assert hits[0]["id"] == "qdrant"
    assert hits[0]["score"] == pytest.approx(1 / 11)


def test_query_with_a_config_file_of_other_branches_exits_2(small_index: Path, tmp_path: Path) -> None:
    cfg_file = tmp_path / "other.yaml"
    RetrieverConfig.model_validate({"branches": [{"kind": "bm25", "k1": 2.0}, {"kind": "dense"}]}).save(cfg_file)
    result = run("query", "cats", "--index", small_index, "--config", cfg_file)
    assert_one_line_error(result, "k1")


def test_readme_explain_sample_is_a_real_run(tmp_path: Path) -> None:
    """The README's `query --explain` sample is generated (scripts/explain_sample.py) and current."""
    sample = _load_script("explain_sample")
    text = README.read_text(encoding="utf-8")
    block = sample.render(tmp_path / "demo-index")
    assert sample.update(text, block) == text, "README.md's --explain sample is stale: run python scripts/explain_sample.py"
    assert "dbsf" in block and "can exceed 1" in text
