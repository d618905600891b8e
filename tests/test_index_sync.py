"""A folder index follows its folder: sync removes what the source no longer holds, files in other
encodings are read, unreadable files are skipped and counted (or stop the run with --strict); and
`index` fills a Qdrant collection (qdrant-client's local mode) and a served index (`serve` on loopback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from hybrid_retriever import HybridRetriever, RetrieverConfig
from hybrid_retriever.cli import app
from hybrid_retriever.sync import UNRECORDED, decide, source_key
from tests.test_server_browser import serving

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
BM25 = {"branches": [{"kind": "bm25"}]}
LATIN = "Crème brûlée is a French dessert: a rich custard with caramelised sugar."


def invoke(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def make_folder(root: Path) -> Path:
    folder = root / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "rivers.md").write_text("# Rivers\n\nRivers carve valleys over time.", encoding="utf-8")
    (folder / "glaciers.txt").write_text("Glaciers move slowly down mountains.", encoding="utf-8")
    (folder / "sub" / "deserts.txt").write_text("Deserts receive little rain.", encoding="utf-8")
    return folder


def bm25_config(root: Path, store: dict[str, Any] | None = None) -> Path:
    path = root / "bm25.yaml"
    path.write_text(yaml.safe_dump({**BM25, **({"store": store} if store else {})}), encoding="utf-8")
    return path


def stored_ids(index: Path) -> list[str]:
    with HybridRetriever.open(str(index)) as r:
        return sorted(d.id for d in r.documents())


# ------------------------------------------------------------------------- sync


def test_a_deleted_file_is_removed_and_counted(tmp_path: Path) -> None:
    folder, index = make_folder(tmp_path), tmp_path / "index"
    first = invoke("index", folder, "--index", index, "--config", bm25_config(tmp_path), "--no-progress")
    assert first.exit_code == 0, first.output
    assert stored_ids(index) == ["glaciers.txt#0", "rivers.md#0", "sub/deserts.txt#0"]
    (folder / "sub" / "deserts.txt").unlink()
    again = invoke("index", folder, "--index", index, "--no-progress")
    assert again.exit_code == 0, again.output
    assert "0 new, 0 changed, 2 unchanged (skipped), 1 removed (no longer in the source)" in again.stdout
    assert "holds 2 entries (chunks or whole documents)" in again.stdout
    assert stored_ids(index) == ["glaciers.txt#0", "rivers.md#0"]
    with HybridRetriever.open(str(index)) as r:
        assert r.sources == [source_key(folder)]
        assert [h.id for h in r.search("desert rain", k=5)] == []  # nothing of the deleted file answers


def test_a_second_source_is_kept_until_sync_is_asked_for(tmp_path: Path) -> None:
    folder, index = make_folder(tmp_path), tmp_path / "index"
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "o1", "text": "Volcanoes erupt lava."}) + "\n", encoding="utf-8")
    assert invoke("index", folder, "--index", index, "--config", bm25_config(tmp_path), "--no-progress").exit_code == 0
    added = invoke("index", other, "--index", index, "--no-progress")
    # The folder's 3 chunks are not in other.jsonl: kept, and a note says so.
    assert added.exit_code == 0 and "removed" not in added.stdout, added.output
    assert "3 stored documents are not in this source and were kept" in added.stderr and str(folder.resolve()) in added.stderr
    (folder / "glaciers.txt").unlink()
    kept = invoke("index", folder, "--index", index, "--no-progress")  # two sources: nothing removed automatically
    assert kept.exit_code == 0 and "removed" not in kept.stdout and "2 stored documents are not in this source" in kept.stderr
    quiet = invoke("index", folder, "--index", index, "--no-progress", "--no-sync")
    assert quiet.exit_code == 0 and "note:" not in quiet.stderr
    assert len(stored_ids(index)) == 4
    synced = invoke("index", folder, "--index", index, "--no-progress", "--sync")
    assert synced.exit_code == 0 and "2 removed (no longer in the source)" in synced.stdout, synced.output
    assert stored_ids(index) == ["rivers.md#0", "sub/deserts.txt#0"]
    with HybridRetriever.open(str(index)) as r:
        assert r.sources == [source_key(folder)]  # the index mirrors the folder again: later runs sync by default


def test_an_index_built_before_sources_were_recorded_is_not_synced_by_default() -> None:
    """The rule itself (hybrid_retriever.sync.decide), case by case."""
    key = "/data/docs"
    assert decide(None, [], key, 0).remove and decide(None, [key], key, 5).remove
    old = decide(None, [UNRECORDED], key, 4)
    assert not old.remove and "built before sources were" in (old.note or "") and old.sources == [UNRECORDED, key]
    assert decide(True, [UNRECORDED, "/other"], key, 4) == decide(True, [], key, 0).__class__(True, [key], None)
    off = decide(False, ["/other"], key, 4)
    assert not off.remove and off.note is None and off.sources == ["/data/docs", "/other"]


def test_a_stopped_or_failed_run_removes_nothing(tmp_path: Path) -> None:
    folder, index = make_folder(tmp_path), tmp_path / "index"
    assert invoke("index", folder, "--index", index, "--config", bm25_config(tmp_path), "--no-progress").exit_code == 0
    (folder / "rivers.md").unlink()
    (folder / "bad.txt").write_bytes(b"\x00\x01binary\xff")
    failed = invoke("index", folder, "--index", index, "--no-progress", "--strict")
    assert failed.exit_code == 2 and "bad.txt cannot be read" in failed.output and "--strict" in failed.output
    assert stored_ids(index) == ["glaciers.txt#0", "rivers.md#0", "sub/deserts.txt#0"]  # nothing removed


# ------------------------------------------------------------------ encodings


def test_other_encodings_are_read_and_unreadable_files_skipped_and_counted(tmp_path: Path) -> None:
    folder, index = make_folder(tmp_path), tmp_path / "index"
    (folder / "latin1.txt").write_bytes(LATIN.encode("latin-1"))
    (folder / "image.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x10")
    result = invoke("index", folder, "--index", index, "--config", bm25_config(tmp_path), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "4 new, 0 changed, 0 unchanged (skipped), 1 unreadable file skipped" in result.stdout
    assert "not UTF-8 with their detected encoding: latin1.txt (cp1252)" in result.stderr
    assert "skipped 1 file(s)" in result.stderr and "image.md: binary data" in result.stderr
    with HybridRetriever.open(str(index)) as r:
        assert r.get(["latin1.txt#0"])[0].text == LATIN
        assert r.search("creme brulee custard", k=1)[0].id == "latin1.txt#0"
    # A file that became unreadable keeps its stored chunks (it is still in the folder).
    (folder / "glaciers.txt").write_bytes(b"\x00\x00broken\xff\xfe")
    again = invoke("index", folder, "--index", index, "--no-progress")
    assert again.exit_code == 0 and "removed" not in again.stdout and "2 unreadable files skipped" in again.stdout, again.output
    assert "glaciers.txt#0" in stored_ids(index)


# -------------------------------------------------------------- a Qdrant store


def test_index_into_a_qdrant_collection_from_a_config(tmp_path: Path) -> None:
    """store.kind qdrant in --config (qdrant-client's local mode, on disk): chunking, skip-unchanged, sync, summary."""
    folder = make_folder(tmp_path)
    store = {"kind": "qdrant", "path": str(tmp_path / "qdrant"), "collection": "notes"}
    cfg = bm25_config(tmp_path, store)
    first = invoke("index", folder, "--config", cfg, "--no-progress")
    assert first.exit_code == 0, first.output
    assert "Indexed 3 chunks" in first.stdout and "3 new, 0 changed, 0 unchanged (skipped)" in first.stdout
    assert "collection 'notes' at" in first.stdout and "holds 3 entries" in first.stdout
    (folder / "glaciers.txt").unlink()
    (folder / "rivers.md").write_text("# Rivers\n\nRivers carve deep valleys over time.", encoding="utf-8")
    again = invoke("index", folder, "--config", cfg, "--no-progress")
    assert again.exit_code == 0, again.output
    assert "0 new, 1 changed, 1 unchanged (skipped), 1 removed (no longer in the source)" in again.stdout
    assert "docs/s" not in again.stdout and "chunks/s" not in again.stdout  # one chunk encoded: too few for a rate
    with HybridRetriever(RetrieverConfig.from_file(cfg)) as r:
        assert sorted(d.id for d in r.documents()) == ["rivers.md#0", "sub/deserts.txt#0"]
        assert r.search("deep valleys", k=1)[0].id == "rivers.md#0"
        assert r.sources == [source_key(folder)]


def test_index_target_options_are_checked(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    both = invoke("index", folder, "--index", tmp_path / "i", "--qdrant-url", "http://127.0.0.1:9")
    assert both.exit_code == 2 and "not both --index and --qdrant-url" in both.output
    none = invoke("index", folder)
    assert none.exit_code == 2 and "--qdrant-url URL" in none.output and "--server URL" in none.output
    down = invoke("index", folder, "--qdrant-url", "http://127.0.0.1:9", "--no-progress")
    assert down.exit_code == 2 and "127.0.0.1:9" in down.output and "Traceback" not in down.output


# ------------------------------------------------------------------ a service


def test_index_through_the_service_chunks_like_a_local_index_and_syncs(tmp_path: Path) -> None:
    """`index SOURCE --server URL` against `serve` on loopback: the service chunks with its dense model's
    tokenizer, so the stored chunks equal a local index's; re-runs skip, sync and count as locally."""
    folder = make_folder(tmp_path)
    (folder / "long.md").write_text("\n\n".join(f"## Part {i}\n\n" + f"Paragraph {i} about rivers and the sea. " * 12 for i in range(12)),
                                    encoding="utf-8")
    local = tmp_path / "local"
    assert invoke("index", folder, "--index", local, "--no-progress").exit_code == 0
    served = tmp_path / "served"
    with serving(tmp_path, ["--index", str(served)], key="k3y") as url:
        no_key = invoke("index", folder, "--server", url, "--no-progress")
        assert no_key.exit_code == 2 and "401" in no_key.output
        first = invoke("index", folder, "--server", url, "--api-key", "k3y", "--no-progress")
        assert first.exit_code == 0, first.output
        n = len(stored_ids(local))
        assert f"Indexed {n} chunks" in first.stdout and "chunked by the service to its dense model's window" in first.stdout
        assert f"{n} new, 0 changed, 0 unchanged (skipped)" in first.stdout and f"holds {n} entries" in first.stdout
        (folder / "sub" / "deserts.txt").unlink()
        again = invoke("index", folder, "--server", url, "--api-key", "k3y", "--no-progress")
        assert again.exit_code == 0, again.output
        assert f"0 new, 0 changed, {n - 1} unchanged (skipped), 1 removed (no longer in the source)" in again.stdout
        hits = json.loads(invoke("query", "Paragraph 7 about rivers", "--server", url, "--api-key", "k3y", "--json").stdout)
        assert hits and hits[0]["metadata"]["source"] == "long.md"
        readme_docker_path(url, "k3y", folder)
        eval_through_the_service_by_source(url, "k3y", tmp_path)
    with HybridRetriever.open(str(local)) as a, HybridRetriever.open(str(served)) as b:
        mine = {d.id: (d.text, d.metadata) for d in a.documents() if d.metadata["source"] != "sub/deserts.txt"}
        theirs = {d.id: (d.text, d.metadata) for d in b.documents()}
        assert theirs == mine and len(theirs) > 5


def readme_docker_path(url: str, key: str, folder: Path) -> None:
    """The README's steps from `docker compose up` to a searched folder, each that can run here, against `url`
    (the compose file itself is checked in tests/test_docker.py; there is no Docker engine here)."""
    import re
    import shlex
    import urllib.request

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"From a fresh clone to a searched folder.*?```bash\n(.*?)```", text, re.S).group(1)
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0].startswith("docker compose up")
    commands = [shlex.split(line) for line in lines[1:]]
    assert [c[:2] for c in commands] == [["hybrid-retriever", "index"], ["hybrid-retriever", "query"]]
    for c in commands:
        args = [url if a == "http://localhost:8000" else str(folder) if a == "./my-docs" else a for a in c[1:]]
        result = invoke(*args, "--api-key", key, *(["--no-progress"] if c[1] == "index" else []))
        assert result.exit_code == 0, (c, result.output)
    page = re.search(r"# the demo page: (\S+)", block).group(1)
    assert page == "http://localhost:8000/"
    with urllib.request.urlopen(url + "/", timeout=10) as res:  # noqa: S310 (loopback)
        assert res.status == 200 and b"hybrid-retriever" in res.read()


def eval_through_the_service_by_source(url: str, key: str, root: Path) -> None:
    """`eval --server` with judgements naming files: scored at each file's best chunk, as `query --server --group-by`
    ranks it; a judged id matching nothing the service holds is counted and warned about on the console."""
    queries = {"q1": ("Paragraph 7 about rivers and the sea", "long.md"), "q2": ("glaciers mountains", "glaciers.txt")}
    judged = root / "judged.jsonl"
    rows = [{"id": q, "text": t, "relevant": [f]} for q, (t, f) in queries.items()]
    rows.append({"id": "q3", "text": "rivers", "relevant": ["no-such-file.md"]})
    judged.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    expected = []
    for text, f in queries.values():
        hits = json.loads(invoke("query", text, "--server", url, "--api-key", key, "--group-by", "source", "-k", "10", "--json").stdout)
        ranks = [h["rank"] for h in hits if h["metadata"]["source"] == f]
        expected.append(1 / ranks[0] if ranks else 0.0)
    assert sum(expected) > 0
    out = root / "eval-served"
    result = invoke("eval", judged, "--server", url, "--api-key", key, "--metrics", "mrr@10", "--out", out, "--no-plots", "--no-progress")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert report["systems"]["fused"]["metrics"]["mrr@10"] == pytest.approx(sum(expected) / 3)
    assert report["data"]["unknown_docs"] == 1 and "WARNING: 1 judged document id(s) match nothing" in result.stderr
    assert any("scored by source" in w for w in report["warnings"])


def test_ctrl_c_into_a_qdrant_collection_keeps_what_was_written_and_a_rerun_goes_on(tmp_path: Path) -> None:
    """A real SIGINT to `index --config` with a qdrant store (local mode on disk), as for an Edge folder."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    source = tmp_path / "corpus.jsonl"
    words = "rivers glaciers deserts forests volcanoes oceans".split()
    n = 400
    source.write_text("".join(json.dumps({"id": f"d{i}", "text": f"Document {i} is about {words[i % 6]} and what lives there. " * 5})
                              + "\n" for i in range(n)), encoding="utf-8")
    store = {"kind": "qdrant", "path": str(tmp_path / "qdrant"), "collection": "stop"}
    cfg = tmp_path / "qdrant.yaml"
    cfg.write_text(yaml.safe_dump({"store": store}), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "hybrid_retriever.cli", "index", str(source), "--config", str(cfg), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "qdrant" / "collection" / "stop").exists():  # the first batch is being written
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    written = int(re.search(r"stopped: (\d+) documents written", err).group(1))
    assert 0 < written < n and "collection 'stop'" in err
    with HybridRetriever(RetrieverConfig.from_file(cfg)) as r:
        assert r.count() == written
    again = invoke("index", source, "--config", cfg, "--no-progress")
    assert again.exit_code == 0, again.output
    assert f"{n - written} new, 0 changed, {written} unchanged (skipped)" in again.stdout
