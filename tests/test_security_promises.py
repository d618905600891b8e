"""Issue 19's attacks, each built for real: the promises of docs/security.md hold at the mechanism.

* Every configuration field that loads a model or grants running code, in every section,
  is found through the schema (a new field without a marker fails here), and no such field
  read from an index folder or a configuration file runs code without the caller's grant.
* A refused second open of an index folder, from this process or another, changes no file.
* Damaged store files are detected (the library's error, naming ``repair``), not served.

Each attack has a positive control showing that it works when the defence is not in the way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hybrid_retriever import HybridRetriever, RetrieverConfig
from hybrid_retriever.config import DenseBranchConfig, MultiVectorBranchConfig, RerankConfig
from hybrid_retriever.config_security import MARKER, marked_fields, marker, model_classes
from hybrid_retriever.errors import IndexCorruptError, IndexLockedError, IndexMismatchError, IndexPathError, RemoteCodeError
from hybrid_retriever.models import allow_remote_code, weights_sha256
from hybrid_retriever.stores.edge import MANIFEST_FILE, SHARD_DIR
from hybrid_retriever.stores.stored_config import stored_config

sys.path.insert(0, str(Path(__file__).parent))
from rerank_fixtures import build_tiny_cross_encoder  # noqa: E402
# The tiny dense model and the autouse fixture withdrawing any process-wide grant, shared with test_security.
from test_security import build_index, make_evil, no_process_grant, rewrite_manifest, tiny_dense, tiny_model  # noqa: E402,F401

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
ENV.pop("HYBRID_RETRIEVER_TRUST_REMOTE_CODE", None)


@pytest.fixture
def evil_reranker(tmp_path: Path) -> tuple[Path, Path]:
    """A cross-encoder folder whose config makes transformers import a module that writes a marker file.

    One per test: the module's source names its own marker, so each test's positive control
    imports a new module (Python runs a module's code only at its first import in a process).
    """
    root = tmp_path / "rerankers"
    marker_file = root / "marker"
    return make_evil(root / "evil-ce", build_tiny_cross_encoder(root / "ce"), marker_file), marker_file


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hybrid_retriever.cli", *args], capture_output=True, text=True, env=env or ENV, timeout=600
    )


def edit_manifest(index: Path, change: Any) -> None:
    f = index / MANIFEST_FILE
    m = json.loads(f.read_text())
    change(m)
    f.write_text(json.dumps(m))


# ------------------------------------------------------------ 1. model references and grants


#: Field names that suggest loading something or granting code; each such field must carry a marker.
SUSPICIOUS = re.compile(r"model|trust|code|path|url|location|checkpoint|tokenizer|module|class|file|dir", re.I)

#: Every configuration class with a model or grant field, and the test below that attacks it.
ATTACKED = {
    DenseBranchConfig: "test_security.py::test_trust_stored_in_a_manifest_is_never_a_grant, test_process_grant_checks_the_hash_first",
    MultiVectorBranchConfig: "test_stored_multivector_model_and_grant_are_checked",
    RerankConfig: "test_rerank_named_by_an_index_never_loads, test_config_file_cannot_grant_rerank_trust",
}


def test_every_field_that_loads_or_grants_is_marked_and_attacked() -> None:
    """Walk the whole schema: a new model/trust field must be marked, and its section attacked in a test here."""
    unmarked, with_model = [], set()
    for cls in model_classes(RetrieverConfig):
        for name, info in cls.model_fields.items():
            kind = marker(cls, name)
            if SUSPICIOUS.search(name) and kind is None:
                unmarked.append(f"{cls.__name__}.{name}")
            if kind in ("model", "trust"):
                with_model.add(cls)
            if kind == "trust":
                assert info.annotation in (bool, "bool"), f"{cls.__name__}.{name}: a grant is a boolean"
    assert not unmarked, f"fields without a {MARKER} marker (model / trust / inert): {unmarked}"
    assert with_model == set(ATTACKED), f"sections with model or grant fields and no attack test: {with_model ^ set(ATTACKED)}"


def test_marked_fields_find_every_grant_in_every_section() -> None:
    data = RetrieverConfig.model_validate(
        {
            "branches": [
                {"kind": "bm25"},
                {"kind": "dense", "trust_remote_code": True},
                {"kind": "multivector", "model": "/m", "trust_remote_code": True},
            ],
            "rerank": {"enabled": True, "model": "/r", "trust_remote_code": True},
        }
    ).model_dump(mode="json")
    grants = {f.dotted() for f in marked_fields(RetrieverConfig, data) if f.kind == "trust" and f.value}
    assert grants == {"branches.1.trust_remote_code", "branches.2.trust_remote_code", "rerank.trust_remote_code"}
    # A branch whose kind is unknown gets every candidate's markers: nothing slips through untyped.
    odd = {"branches": [{"kind": "nope", "model": "/x", "trust_remote_code": True}]}
    assert {f.dotted() for f in marked_fields(RetrieverConfig, odd)} == {"branches.0.model", "branches.0.trust_remote_code"}


def test_rerank_named_by_an_index_never_loads(tmp_path: Path, tiny_model: Path, evil_reranker: tuple[Path, Path]) -> None:
    evil, marker_file = evil_reranker
    index = tmp_path / "index"
    build_index(index, tiny_model)
    stage = {"enabled": True, "model": str(evil), "trust_remote_code": True, "depth": 3}
    edit_manifest(index, lambda m: m["config"].update(rerank=stage, prf={"enabled": True}))
    # Python API: the query-time stages of a folder are dropped; searching loads no reranker.
    with HybridRetriever.open(str(index)) as r:
        assert not r.config.rerank.enabled and not r.config.prf.enabled and r.reranker is None
        assert r.search("vectors", k=1)[0].id == "a"
    # The CLI's query and the service's start-up open it the same way.
    proc = cli("query", "vectors", "--index", str(index))
    assert proc.returncode == 0, proc.stderr
    from hybrid_retriever_server.cli import _config, open_retriever

    with open_retriever(_config(index, None, None, None)) as r:
        assert r.reranker is None and r.search("vectors", k=1)
    assert not marker_file.exists()
    # Even with the process-wide grant: an index folder cannot switch a stage on.
    allow_remote_code(True)
    with HybridRetriever.open(str(index)) as r:
        r.search("vectors", k=1)
    assert not marker_file.exists()
    # Positive control: the caller's own configuration with its own grant does load it, and its code runs.
    with HybridRetriever.open(str(index), rerank=stage) as r:
        r.search("vectors", k=2)
    assert marker_file.exists()
    marker_file.unlink()


def test_config_file_cannot_grant_rerank_trust(tmp_path: Path, tiny_model: Path, evil_reranker: tuple[Path, Path]) -> None:
    evil, marker_file = evil_reranker
    index = tmp_path / "index"
    build_index(index, tiny_model)
    f = tmp_path / "cfg.yaml"
    data = RetrieverConfig.model_validate(
        {
            "branches": [{"kind": "bm25", "weight": 0.5}, {"kind": "dense", "model": str(tiny_model), "weight": 0.5}],
            "rerank": {"enabled": True, "model": str(evil), "trust_remote_code": True, "depth": 3},
        }
    )
    data.save(f)
    with pytest.raises(RemoteCodeError, match=r"rerank\.trust_remote_code"):
        RetrieverConfig.from_file(f)
    proc = cli("query", "vectors", "--index", str(index), "--config", str(f))
    assert proc.returncode == 2 and "rerank.trust_remote_code" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not marker_file.exists()
    # Positive control: granted in the call, the same file's reranker runs its code.
    cfg = RetrieverConfig.from_file(f, trust_remote_code=True).model_dump()
    cfg["store"] = {"kind": "edge", "path": str(index)}
    with HybridRetriever(RetrieverConfig.model_validate(cfg)) as r:
        r.search("vectors", k=2)
    assert marker_file.exists()
    marker_file.unlink()


def test_stored_multivector_model_and_grant_are_checked(tmp_path: Path) -> None:
    """The multivector branch's model and grant go through the same schema-driven checks as the dense one's."""
    index = tmp_path / "index"
    index.mkdir()
    inside = index / "colbert"
    manifest = {
        "branches": {"mv": {"kind": "multivector"}},
        "config": {"branches": [{"kind": "multivector", "name": "mv", "model": str(inside)}]},
    }
    with pytest.raises(IndexPathError, match="inside the index folder"):
        stored_config(manifest, index)
    manifest["config"]["branches"][0].update(model=str(tmp_path / "elsewhere"), trust_remote_code=True)
    with pytest.raises(RemoteCodeError, match="cannot grant"):
        stored_config(manifest, index)
    granted = stored_config(manifest, index, trust_remote_code=True)
    assert granted["branches"][0]["trust_remote_code"] is True
    manifest["config"]["branches"][0]["trust_remote_code"] = False
    assert "trust_remote_code" not in stored_config(manifest, index)["branches"][0]


def test_process_grant_checks_the_hash_first(tmp_path: Path, tiny_model: Path) -> None:
    """With HYBRID_RETRIEVER_TRUST_REMOTE_CODE=1, a model swapped under an index is refused before it loads."""
    index = tmp_path / "index"
    build_index(index, tiny_model)
    marker_file = tmp_path / "marker"
    evil = make_evil(tmp_path / "evil", tiny_model, marker_file)
    rewrite_manifest(index, evil, trust=True)  # the recorded hash stays the honest model's
    env = {**ENV, "HYBRID_RETRIEVER_TRUST_REMOTE_CODE": "1"}
    proc = cli("query", "vectors", "--index", str(index), env=env)
    assert proc.returncode == 2 and "weights_sha256" in proc.stderr, proc.stderr
    allow_remote_code(True)
    with pytest.raises(IndexMismatchError, match="weights_sha256"):
        HybridRetriever.open(str(index))
    assert not marker_file.exists()
    # Positive control: with its own hash recorded the granted model loads, and its code runs.
    rewrite_manifest(index, evil, trust=True, sha=weights_sha256(evil))
    try:
        with HybridRetriever.open(str(index)) as r:
            r.search("vectors")
    except Exception:
        pass  # the model itself need not work; its module ran on import
    assert marker_file.exists()


# ------------------------------------------------------------ 2. a refused second open changes nothing


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.rglob("*")) if f.is_file()}


def bm25_config(path: Path) -> RetrieverConfig:
    return RetrieverConfig.model_validate(
        {"store": {"kind": "edge", "path": str(path)}, "branches": [{"kind": "bm25", "language": "english"}], "runtime": {"show_progress": False}}
    )


TEXTS = [f"document {i} about topic {i % 7} and theme {i % 11}" for i in range(300)]


def test_refused_second_open_changes_nothing_and_the_holder_keeps_writing(tmp_path: Path) -> None:
    index = tmp_path / "index"
    holder = HybridRetriever(bm25_config(index))
    try:
        holder.add_texts(TEXTS[:100], ids=[str(i) for i in range(100)])
        before = tree_hashes(index)
        journals = sorted(index.rglob("tracker_journal.dat"))
        assert journals
        # The same process, through the API and a bare store.
        with pytest.raises(IndexLockedError, match="already open"):
            HybridRetriever.open(str(index))
        from hybrid_retriever.stores.edge import EdgeStore

        with pytest.raises(IndexLockedError):
            EdgeStore(index)
        # Another process, through the API and through the CLI.
        other = subprocess.run(
            [sys.executable, "-c", f"from hybrid_retriever import HybridRetriever; HybridRetriever.open({str(index)!r})"],
            capture_output=True, text=True, env=ENV, timeout=300,
        )
        assert other.returncode != 0 and "IndexLockedError" in other.stderr
        proc = cli("query", "document", "--index", str(index))
        assert proc.returncode == 2 and "already open" in proc.stderr and "Traceback" not in proc.stderr
        assert tree_hashes(index) == before, "a refused open changed the index's files"
        assert all(j.is_file() for j in journals)
        # The holder is unharmed: it writes, deletes and closes cleanly.
        holder.add_texts(TEXTS[100:200], ids=[str(i) for i in range(100, 200)])
        holder.delete(["0", "1"])
    finally:
        holder.close()
    with HybridRetriever.open(str(index)) as r:
        assert r.count() == 198
        assert r.get(["150"])[0].text == TEXTS[150]


PROBER = """
import sys, time
from pathlib import Path
from hybrid_retriever import HybridRetriever
from hybrid_retriever.errors import IndexLockedError
index, done = Path(sys.argv[1]), Path(sys.argv[2])
refused = 0
while not done.exists():
    if (index / "manifest.json").is_file():
        try:
            HybridRetriever.open(str(index)).close()
        except IndexLockedError:
            refused += 1
    time.sleep(0.05)
print(refused)
"""


def test_second_open_while_the_cli_indexes(tmp_path: Path) -> None:
    """Another process opening the folder again and again while `index` runs never disturbs it."""
    source, index, cfg, done = tmp_path / "docs.jsonl", tmp_path / "index", tmp_path / "bm25.yaml", tmp_path / "done"
    n = 4000
    source.write_text("".join(json.dumps({"id": str(i), "text": f"text {i} on subject {i % 13}"}) + "\n" for i in range(n)))
    cfg.write_text("branches:\n  - kind: bm25\n    language: english\n")
    prober = subprocess.Popen([sys.executable, "-c", PROBER, str(index), str(done)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        indexing = subprocess.run(
            [sys.executable, "-m", "hybrid_retriever.cli", "index", str(source), "--index", str(index), "--config", str(cfg),
             "--batch-size", "20"],
            capture_output=True, text=True, env=ENV, timeout=600,
        )
    finally:
        done.touch()
        refused = int(prober.communicate(timeout=120)[0].strip() or 0)
    assert indexing.returncode == 0, indexing.stderr[-2000:]
    assert refused >= 1, "the prober never tried while the index was open (make the source bigger)"
    with HybridRetriever.open(str(index)) as r:
        assert r.count() == n


def test_qdrant_local_folder_is_locked_before_it_is_read(tmp_path: Path) -> None:
    from hybrid_retriever.config import QdrantStoreConfig
    from hybrid_retriever.stores.qdrant import QdrantStore

    folder = tmp_path / "qdrant"
    cfg = RetrieverConfig.model_validate(
        {"store": {"kind": "qdrant", "path": str(folder)}, "branches": [{"kind": "bm25", "language": "english"}], "runtime": {"show_progress": False}}
    )
    with HybridRetriever(cfg) as r:
        r.add_texts(TEXTS[:20])
        before = tree_hashes(folder)
        with pytest.raises(IndexLockedError, match="Qdrant local-mode folder"):
            QdrantStore(QdrantStoreConfig(path=str(folder)))
        assert tree_hashes(folder) == before
        assert r.count() == 20


# ------------------------------------------------------------ 4. damaged store files


@pytest.fixture
def built(tmp_path: Path, tiny_model: Path) -> Path:
    """A closed bm25 + dense index of 200 documents, as a user leaves one."""
    index = tmp_path / "index"
    cfg = RetrieverConfig.model_validate(
        {
            "store": {"kind": "edge", "path": str(index)},
            "branches": [{"kind": "bm25", "language": "english"}, {"kind": "dense", "model": str(tiny_model)}],
            "runtime": {"show_progress": False},
        }
    )
    with HybridRetriever(cfg) as r:
        r.add_texts(TEXTS[:200], ids=[str(i) for i in range(200)])
    cfg.save(tmp_path / "built-with.yaml")
    return index


def test_lost_points_are_detected_and_repair_recounts(built: Path) -> None:
    assert json.loads((built / MANIFEST_FILE).read_text())["documents"] == [200, 200]
    # The id tracker loses its tail after Qdrant checkpointed its write-ahead log (removed here).
    f = next(built.rglob("mutable_id_tracker.mappings"))
    f.write_bytes(f.read_bytes()[:1000])
    shutil.rmtree(built / SHARD_DIR / "wal")
    with pytest.raises(IndexCorruptError, match=r"should hold 200 documents.*repair"):
        HybridRetriever.open(str(built))
    proc = cli("query", "topic", "--index", str(built))
    assert proc.returncode == 2 and "repair" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = cli("repair", "--index", str(built))
    assert proc.returncode == 0 and re.search(r"records 200 documents.*hold (\d+) readable.*were lost", proc.stdout), proc.stdout
    kept = int(re.search(r"hold (\d+) readable", proc.stdout).group(1))
    assert 0 < kept < 200
    with HybridRetriever.open(str(built)) as r:
        assert r.count() == kept and r.search("topic", k=3)


def test_a_write_cut_short_is_not_mistaken_for_damage(built: Path) -> None:
    """A crash between the count's bracket and the write leaves a range: the index opens."""
    edit_manifest(built, lambda m: m.update(documents=[200, 264]))
    with HybridRetriever.open(str(built)) as r:
        assert r.count() == 200
        r.add_texts(["one more"], ids=["x"])
    assert json.loads((built / MANIFEST_FILE).read_text())["documents"] == [201, 201]


def test_damaged_payloads_are_the_librarys_error(built: Path) -> None:
    page = next(built.rglob("payload_storage/page_0.dat"))
    data = bytearray(page.read_bytes())
    data[: 20000 : 7] = b"\xff" * len(data[: 20000 : 7])
    page.write_bytes(bytes(data))
    with HybridRetriever.open(str(built)) as r:
        with pytest.raises(IndexCorruptError, match="repair"):
            r.search("topic")
        with pytest.raises(IndexCorruptError, match="damaged"):
            r.get([str(i) for i in range(200)])
    proc = cli("query", "topic", "--index", str(built))
    assert proc.returncode == 2 and "damaged" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    before = tree_hashes(built)
    proc = cli("repair", "--index", str(built))
    assert proc.returncode == 2 and "Nothing was changed" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert tree_hashes(built) == before


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda m: m["branches"]["bm25"].update(k1="NaN"), "k1 is 'NaN'"),
        (lambda m: m["branches"]["bm25"].update(avg_len=0), "avg_len is 0"),
        (lambda m: m["branches"]["bm25"].update(avg_len=float("inf")), "avg_len is inf"),
        (lambda m: m.update(documents=[5, 1]), "'documents'"),
    ],
)
def test_unsound_manifest_numbers_are_refused_and_repaired(built: Path, damage: Any, expected: str) -> None:
    edit_manifest(built, damage)
    with pytest.raises(IndexCorruptError, match=re.escape(expected)):
        HybridRetriever.open(str(built))
    proc = cli("query", "topic", "--index", str(built))
    assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = cli("repair", "--index", str(built), "--config", str(built.parent / "built-with.yaml"))
    assert proc.returncode == 0 and "rebuilt" in proc.stdout, proc.stdout + proc.stderr
    with HybridRetriever.open(str(built)) as r:
        assert r.branches["bm25"].avg_len > 1
        assert r.search("document 7 about topic 0", k=1)[0].id == "7"


def test_deeply_nested_manifest_is_the_librarys_error(built: Path) -> None:
    (built / MANIFEST_FILE).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(IndexCorruptError, match="nested too deeply"):
        HybridRetriever.open(str(built))
    for args in (("query", "topic"), ("repair",)):
        proc = cli(*args, "--index", str(built), *(("--config", str(built.parent / "built-with.yaml")) if args == ("repair",) else ()))
        assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr, proc.stderr
    assert proc.returncode == 0 and "rebuilt" in proc.stdout  # repair set the nested one aside and rebuilt it
    with HybridRetriever.open(str(built)) as r:
        assert r.count() == 200


def test_planted_symlinks_in_an_index_folder_write_nothing_outside_it(built: Path, tmp_path: Path) -> None:
    """A folder someone sent, with `manifest.json.tmp` and the lock file pointing at the user's files."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (built / "manifest.json.tmp").symlink_to(victim)
    with HybridRetriever.open(str(built)) as r:
        r.add_texts(["a new document"], ids=["new"])  # rewrites the manifest
    assert victim.read_text() == "precious"
    lock = built / ".hybrid-retriever.lock"
    lock.unlink()
    lock.symlink_to(tmp_path / "not-there")
    with pytest.raises(IndexPathError, match="symbolic link"):
        HybridRetriever.open(str(built))
    assert not (tmp_path / "not-there").exists()


# ------------------------------------------------------------ 5. the ONNX export cannot be swapped silently


def test_a_swapped_onnx_export_is_caught_by_the_probe_and_exported_again(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever can write the export cache replaces model.onnx and the hash export.json records for it."""
    from hybrid_retriever.models.onnx_backend import default_cache_dir, export_folder, file_sha256
    from hybrid_retriever.models.probe import PROBE_TEXT, cosine, recorded_vector
    from hybrid_retriever.models.resolve import resolve_model_path

    monkeypatch.setenv("HYBRID_RETRIEVER_CACHE", str(tmp_path / "cache"))
    index, other = tmp_path / "index", tiny_dense(tmp_path / "other", seed=99)
    cfg = {
        "store": {"kind": "edge", "path": str(index)},
        "branches": [{"kind": "bm25", "language": "english", "weight": 0.5}, {"kind": "dense", "model": str(tiny_model), "backend": "onnx"}],
        "runtime": {"show_progress": False},
    }
    with HybridRetriever(RetrieverConfig.model_validate(cfg)) as r:
        r.add_texts(TEXTS[:40], ids=[str(i) for i in range(40)])
        honest = [h.id for h in r.search("document 7 about topic 0", k=5)]
    recorded = recorded_vector(json.loads((index / MANIFEST_FILE).read_text())["branches"]["dense"]["probe"])
    assert recorded is not None
    # The attacker's export: another model's graph, with the record's hash rewritten to match it.
    with HybridRetriever(RetrieverConfig.model_validate({**cfg, "store": {"kind": "edge", "path": str(tmp_path / "i2")},
                                                          "branches": [{"kind": "dense", "model": str(other), "backend": "onnx"}]})) as r:
        r.add_texts(["x"])
    victim = export_folder(default_cache_dir(), resolve_model_path(str(tiny_model)), "fp32")
    planted = export_folder(default_cache_dir(), resolve_model_path(str(other)), "fp32")
    shutil.copyfile(planted / "model.onnx", victim / "model.onnx")
    rec = json.loads((victim / "export.json").read_text())
    rec["model_sha256"] = file_sha256(victim / "model.onnx")
    (victim / "export.json").write_text(json.dumps(rec))
    # Positive control: the planted export loads without complaint and gives other vectors.
    from hybrid_retriever.branches import DenseBranch
    from hybrid_retriever.config import DenseBranchConfig

    planted_vector = DenseBranch(DenseBranchConfig(model=str(tiny_model), backend="onnx")).encode_documents([PROBE_TEXT])[0]
    assert cosine(planted_vector, recorded) < 0.99
    # The library: the first encoding finds the probe off, exports again from the weights, and serves honest results.
    with HybridRetriever.open(str(index)) as r:
        assert [h.id for h in r.search("document 7 about topic 0", k=5)] == honest
    assert file_sha256(victim / "model.onnx") != file_sha256(planted / "model.onnx")
    # A probe nothing reproduces (the model, its export or the library changed) is refused, not served.
    edit_manifest(index, lambda m: m["branches"]["dense"]["probe"].update(vector=[1.0] + [0.0] * (len(recorded) - 1)))
    with HybridRetriever.open(str(index)) as r:
        with pytest.raises(IndexMismatchError, match="probe text"):
            r.search("document")
