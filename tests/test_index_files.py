"""An Edge index folder's files: a corrupt or missing manifest, an interrupted creation,
repair, and a second process opening a folder that is in use.

Every case ends in one of the library's errors naming the file and the fix (the CLI: one
line, exit 2), and the stored documents survive: after repair the index answers exactly as
before. Real Qdrant Edge shards and real processes throughout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import qdrant_edge as qe

from crash_child import crash_config
from crash_harness import make_corpus, marker
from hybrid_retriever import Document, HybridRetriever, RetrieverConfig
from hybrid_retriever.errors import IndexCorruptError, IndexLockedError, IndexMismatchError, IndexPathError, InvalidInputError
from hybrid_retriever.repair import repair_index
from hybrid_retriever.stores.edge import MANIFEST_FILE, SHARD_DIR, EdgeStore
from test_cli import assert_one_line_error, run

QUERIES = ["kalo mine", marker(7), f"{marker(3)} {marker(250)} suta"]


def build(path: Path, n: int = 300) -> list[list[tuple[str, float]]]:
    """A BM25 index of ``n`` documents with metadata at ``path``; returns the answers to :data:`QUERIES`."""
    docs = [Document(text=d["text"], id=d["id"], metadata={"n": i, "even": i % 2 == 0}) for i, d in enumerate(make_corpus(n))]
    with HybridRetriever(crash_config(str(path))) as r:
        r.add_documents(docs)
        return answers(r)


def answers(r: HybridRetriever) -> list[list[tuple[str, float]]]:
    return [[(h.id, round(h.score, 4)) for h in r.search(q, k=5)] for q in QUERIES] + [
        [(h.id, round(h.score, 4)) for h in r.search("kalo", k=5, filter={"even": True, "n": {"gte": 100}})]
    ]


def write_config(path: Path, config: RetrieverConfig) -> Path:
    config.save(path)
    return path


# ----------------------------------------------------------------- corrupt manifest


def _corruptions(good: dict[str, Any]) -> dict[str, bytes]:
    text = json.dumps(good, indent=2)

    def changed(**kv: Any) -> bytes:
        return json.dumps({**good, **kv}).encode()

    return {
        "not JSON": b"{not json",
        "truncated": text[: len(text) // 2].encode(),
        "empty": b"",
        "binary": b"\xff\xfe\x00\x81garbage",
        "an array": b"[1, 2]",
        "missing branches": json.dumps({k: v for k, v in good.items() if k != "branches"}).encode(),
        "missing config": json.dumps({k: v for k, v in good.items() if k != "config"}).encode(),
        "branches a string": changed(branches="bm25"),
        "branch not an object": changed(branches={"bm25": 3}),
        "metadata_fields a string": changed(metadata_fields="n"),
        "metadata_fields with numbers": changed(metadata_fields=[1, 2]),
        "config null": changed(config=None),
        "schema_version a string": changed(schema_version="1"),
        "schema_version true": changed(schema_version=True),
    }


CORRUPTIONS = list(_corruptions({"schema_version": 1, "library_version": "0", "branches": {}, "metadata_fields": [], "config": {}}))


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_manifest_is_an_index_corrupt_error_and_repair_restores_the_index(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "index"
    before = build(path)
    manifest = path / MANIFEST_FILE
    good = json.loads(manifest.read_text())
    manifest.write_bytes(_corruptions(good)[kind])
    for opening in (lambda: HybridRetriever.open(str(path)), lambda: HybridRetriever(crash_config(str(path)))):
        with pytest.raises(IndexCorruptError) as err:
            opening()
        assert str(manifest) in str(err.value) and "hybrid-retriever repair" in str(err.value)
    # The failed opens released the shard, and the documents are untouched.
    store = EdgeStore(path, check=False)
    assert store.count() == 300
    store.close()
    corrupt = manifest.read_bytes()
    report = repair_index(path, crash_config(str(path)))
    assert report.action == "rebuilt" and report.documents == 300 and report.metadata_fields == ["even", "n"]
    assert Path(report.set_aside).read_bytes() == corrupt  # kept, never deleted
    rebuilt = json.loads(manifest.read_text())
    assert rebuilt["metadata_fields"] == good["metadata_fields"]
    assert rebuilt["branches"]["bm25"]["avg_len"] == pytest.approx(good["branches"]["bm25"]["avg_len"], rel=1e-6)
    with HybridRetriever.open(str(path)) as r:
        assert r.count() == 300
        assert answers(r) == before


def test_cli_reports_a_corrupt_manifest_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "index"
    build(path, n=50)
    (path / MANIFEST_FILE).write_text('{"schema_version": 1, "branches": {"bm25"')
    result = run("query", "kalo", "--index", path)
    assert_one_line_error(result, "is not valid JSON", str(path / MANIFEST_FILE), "hybrid-retriever repair")
    (path / MANIFEST_FILE).write_text('{"schema_version": 1}')
    corpus = tmp_path / "more.jsonl"
    corpus.write_text(json.dumps({"_id": "new", "text": "one more document"}) + "\n")
    assert_one_line_error(run("index", corpus, "--index", path), "corrupt", "'branches' is missing")


def test_manifest_without_shard_says_the_data_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "index"
    build(path, n=20)
    os.replace(path / SHARD_DIR, tmp_path / "moved-shard")
    with pytest.raises(IndexCorruptError, match="index data .* is missing"):
        HybridRetriever(crash_config(str(path)))
    with pytest.raises(IndexCorruptError, match="move or delete"):
        HybridRetriever.open(str(path))
    assert (path / MANIFEST_FILE).is_file()  # left for the user to decide


# ------------------------------------------------------------------ missing manifest


def test_missing_manifest_with_data_is_refused_then_repaired_by_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "index"
    before = build(path)
    good = json.loads((path / MANIFEST_FILE).read_text())
    (path / MANIFEST_FILE).unlink()
    # A new build here must not overwrite or fail confusingly: it names repair.
    with pytest.raises(IndexCorruptError, match=r"holds 300 documents but its manifest.json is missing.*repair"):
        HybridRetriever(crash_config(str(path)))
    corpus = tmp_path / "more.jsonl"
    corpus.write_text(json.dumps({"_id": "new", "text": "one more document"}) + "\n")
    config = write_config(tmp_path / "built-with.yaml", crash_config(str(path)))
    assert_one_line_error(run("index", corpus, "--index", path, "--config", config), "300 documents", "hybrid-retriever repair")
    # `query` (and `index` without --config) name repair too, not "build one first".
    assert_one_line_error(run("query", "anything", "--index", path), "300 documents", "hybrid-retriever repair")
    assert_one_line_error(run("index", corpus, "--index", path), "300 documents", "hybrid-retriever repair")
    result = run("repair", "--index", path, "--config", config)
    assert result.exit_code == 0, result.output
    assert "rebuilt manifest.json (it was missing); 300 documents kept" in result.stdout
    rebuilt = json.loads((path / MANIFEST_FILE).read_text())
    assert rebuilt["branches"]["bm25"]["avg_len"] == pytest.approx(good["branches"]["bm25"]["avg_len"], rel=1e-6)
    with HybridRetriever.open(str(path)) as r:
        assert answers(r) == before
    assert "nothing to repair" in run("repair", "--index", path).stdout


def test_repair_refuses_a_configuration_that_does_not_reproduce_the_stored_vectors(tmp_path: Path) -> None:
    path = tmp_path / "index"
    build(path, n=40)
    (path / MANIFEST_FILE).unlink()
    wrong = {
        "k1": {"branches": [{"kind": "bm25", "k1": 2.0, "avg_len": 40.0}]},
        "stemmer": {"branches": [{"kind": "bm25", "stemmer": False}]},
        "branch name": {"branches": [{"kind": "bm25", "name": "sparse"}]},
    }
    for what, data in wrong.items():
        with pytest.raises(IndexMismatchError, match="not rebuilt") as err:
            repair_index(path, RetrieverConfig.validate_data(data))
        assert "built with" in str(err.value), what
        assert not (path / MANIFEST_FILE).exists(), what
    assert repair_index(path, crash_config(str(path))).action == "rebuilt"


def test_repair_of_a_dense_index_checks_the_model(tmp_path: Path, make_retriever: Any, small_docs: list[Document]) -> None:
    r = make_retriever()  # the defaults: BM25 + all-MiniLM-L6-v2
    r.add_documents(small_docs)
    before = [[h.id for h in r.search(q, k=4)] for q in ("vector database", "fluffy pets")]
    path = Path(r.store.location)
    r.close()
    (path / MANIFEST_FILE).unlink()
    with pytest.raises(IndexMismatchError, match="'dense': re-encoding stored document"):
        repair_index(path, RetrieverConfig.validate_data({"branches": [{"kind": "bm25"}, {"kind": "dense", "max_seq_length": 4}]}))
    report = repair_index(path)  # the defaults built it
    assert set(report.checks) == {"bm25", "dense"}
    with HybridRetriever.open(str(path)) as again:
        assert [[h.id for h in again.search(q, k=4)] for q in ("vector database", "fluffy pets")] == before


def test_repair_without_index_data_or_documents(tmp_path: Path) -> None:
    with pytest.raises(IndexPathError, match="nothing to repair"):
        repair_index(tmp_path / "nothing")
    empty = tmp_path / "empty"
    qe.EdgeShard.create(str(empty / SHARD_DIR), qe.EdgeConfig(sparse_vectors={"bm25": qe.EdgeSparseVectorParams()})).close()
    assert repair_index(empty).action == "none"
    (empty / MANIFEST_FILE).write_text("{")
    report = repair_index(empty)
    assert report.action == "set-aside" and Path(report.set_aside).read_text() == "{"
    build(empty, n=10)  # the next build starts afresh


# ------------------------------------------------------------ interrupted creation


def test_a_creation_killed_before_its_manifest_is_replaced_on_the_next_index(tmp_path: Path) -> None:
    """A kill between the shard's creation and the manifest's write leaves an empty shard."""
    path = tmp_path / "index"
    qe.EdgeShard.create(str(path / SHARD_DIR), qe.EdgeConfig(vectors={"other": qe.EdgeVectorParams(size=3, distance=qe.Distance.Cosine)})).close()
    with pytest.raises(InvalidInputError, match="no index"):
        HybridRetriever.open(str(path))
    before = build(path, n=30)  # the leftover (released by the failed open) is replaced
    with HybridRetriever.open(str(path)) as r:
        assert r.count() == 30 and answers(r) == before


def test_an_unloadable_leftover_shard_is_moved_aside_not_deleted(tmp_path: Path) -> None:
    path = tmp_path / "index"
    (path / SHARD_DIR).mkdir(parents=True)
    (path / SHARD_DIR / "keep-me").write_text("whatever was here")
    build(path, n=10)
    aside = [p for p in path.iterdir() if p.name.startswith(f"{SHARD_DIR}.interrupted-")]
    assert len(aside) == 1 and (aside[0] / "keep-me").read_text() == "whatever was here"
    with HybridRetriever.open(str(path)) as r:
        assert r.count() == 10


# ------------------------------------------------------------ a folder in use


HOLDER = textwrap.dedent(
    """
    import sys
    from hybrid_retriever import HybridRetriever
    with HybridRetriever.open(sys.argv[1]) as r:
        print("open", r.count(), flush=True)
        sys.stdin.readline()
    """
)


def test_a_second_process_gets_a_lock_error_naming_the_alternatives(tmp_path: Path) -> None:
    path = tmp_path / "index"
    build(path, n=20)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().split() == ["open", "20"]
        for opening in (lambda: HybridRetriever.open(str(path)), lambda: HybridRetriever(crash_config(str(path))), lambda: repair_index(path)):
            with pytest.raises(IndexLockedError) as err:
                opening()
            message = str(err.value)
            assert str(path / ".hybrid-retriever.lock") in message, message  # the library's lock, taken before the shard
            assert "hybrid-retriever serve" in message and "Qdrant server" in message
            assert isinstance(err.value, IndexPathError)
        assert_one_line_error(run("query", "kalo", "--index", path), "already open", "lock")
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    with HybridRetriever.open(str(path)) as r:  # released when the holder closed
        assert r.count() == 20
        with pytest.raises(IndexLockedError):  # and in one process, a second open is refused the same way
            HybridRetriever.open(str(path))


def test_a_corrupt_manifest_in_a_server_collection_is_an_index_corrupt_error(small_docs: list[Document]) -> None:
    from hybrid_retriever.stores.qdrant import MANIFEST_KEY

    config = RetrieverConfig.validate_data({"store": {"kind": "qdrant", "location": ":memory:"}, "branches": [{"kind": "bm25"}]})
    r = HybridRetriever(config)
    r.add_documents(small_docs)
    r.store.client.update_collection(r.store.collection, metadata={MANIFEST_KEY: {"schema_version": 1, "branches": []}})
    with pytest.raises(IndexCorruptError, match=r"manifest stored in collection .* is corrupt: .*'branches' is an array, expected an object"):
        HybridRetriever(config, store=r.store)
    assert r.count() == len(small_docs)
    r.close()


# --------------------------------------------------------------- BM25's k1 default

def _config_with_k1(path: Path, k1: float | None) -> RetrieverConfig:
    data = crash_config(str(path)).model_dump(mode="json")
    data["branches"][0]["k1"] = k1
    return RetrieverConfig.validate_data(data)


def test_a_new_index_records_the_default_k1_and_an_older_one_keeps_its_own(tmp_path: Path) -> None:
    from hybrid_retriever.branches.bm25 import DEFAULT_K1, PREVIOUS_DEFAULT_K1

    new, old = tmp_path / "new", tmp_path / "old"
    build(new, n=60)
    assert json.loads((new / MANIFEST_FILE).read_text())["branches"]["bm25"]["k1"] == DEFAULT_K1 == 0.9
    # An index built when the default was Qdrant's 1.2 (its configuration and manifest say 1.2) ...
    with HybridRetriever(_config_with_k1(old, PREVIOUS_DEFAULT_K1)) as r:
        r.add_documents([Document(text=d["text"], id=d["id"]) for d in make_corpus(60)])
        before = [[h.id for h in r.search(q, k=5)] for q in QUERIES]
    # ... reopens with today's default configuration (k1 unset) and keeps 1.2: no mismatch, same answers.
    with HybridRetriever(crash_config(str(old))) as r:
        assert r.branches["bm25"].k1 == PREVIOUS_DEFAULT_K1
        assert [[h.id for h in r.search(q, k=5)] for q in QUERIES] == before
    # A k1 given explicitly is the caller's: another value than the index's is a mismatch.
    with pytest.raises(IndexMismatchError, match="k1 is 1.2 in the index, 0.9 in the configuration"):
        HybridRetriever(_config_with_k1(old, 0.9))


@pytest.mark.parametrize("built_with", [None, 1.2])
def test_repair_with_k1_unset_finds_the_k1_the_index_was_built_with(tmp_path: Path, built_with: float | None) -> None:
    path = tmp_path / "index"
    with HybridRetriever(_config_with_k1(path, built_with)) as r:
        r.add_documents([Document(text=d["text"], id=d["id"]) for d in make_corpus(80)])
        k1 = r.branches["bm25"].k1
        before = [[(h.id, round(h.score, 4)) for h in r.search(q, k=5)] for q in QUERIES]
    (path / MANIFEST_FILE).unlink()
    report = repair_index(path, crash_config(str(path)))  # k1 unset
    assert report.action == "rebuilt" and ("k1 1.2" in report.checks["bm25"]) == (built_with == 1.2)
    assert json.loads((path / MANIFEST_FILE).read_text())["branches"]["bm25"]["k1"] == k1
    with HybridRetriever.open(str(path)) as r:
        assert [[(h.id, round(h.score, 4)) for h in r.search(q, k=5)] for q in QUERIES] == before
