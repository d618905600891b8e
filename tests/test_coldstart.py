"""Cold start: a query on the default backend (ONNX Runtime, cached export) imports no torch.

A real index is built by the real CLI in a subprocess (which exports the model to ONNX
into a fresh cache); a second, fresh subprocess then queries it and reports which
modules it imported. Its hits are compared with the same index searched through
sentence-transformers (torch tokeniser and pooling) in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")

from hybrid_retriever import HybridRetriever  # noqa: E402
from hybrid_retriever.cli import DEMO_QUERIES, demo_corpus_path  # noqa: E402
from hybrid_retriever.errors import ModelCacheError  # noqa: E402
from hybrid_retriever.models import locate_model, resolve_model_path  # noqa: E402
from hybrid_retriever.models.onnx_backend import export_folder, read_record  # noqa: E402
from hybrid_retriever.models.onnx_encoder import load_light_encoder  # noqa: E402
from hybrid_retriever.models.sentence_encoder import CPU_BATCH_TOKENS, build_sentence_encoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
HEAVY = ("torch", "transformers", "sentence_transformers")
QUERIES = [q.text for q in DEMO_QUERIES] + ["how do vaccines work", "Quill", "x"]
TEXTS = [
    "What causes cancer in mice?",
    "  Leading and trailing spaces, \t tabs\nand newlines.  ",
    "x",
    "",
    "Qdrant stores dense, sparse and multi-vector representations of every document. " * 30,  # > 256 tokens
    "Der schnelle braune Fuchs springt über den faulen Hund. Ça coûte 5 € à Zürich!",
    "東京は日本の首都です。 Emoji 🙂 and accents: naïve café résumé.",
    "UPPER case AND MiXeD, hyphen-ated words, e-mail@example.com, 3.14159, C++ & C#.",
]

#: Runs the CLI's ``app`` with the given arguments, then prints (to stderr) which heavy modules got imported.
_RUN_CLI = """
import json, sys
from hybrid_retriever.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    heavy = [m for m in ("torch", "transformers", "sentence_transformers", "qdrant_client") if m in sys.modules]
    print("HEAVY=" + json.dumps(heavy), file=sys.stderr)
"""


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(HYBRID_RETRIEVER_CACHE=str(cache), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "adapters"), env.get("PYTHONPATH", "")])
    return env


def _cli(args: list[str], cache: Path, cwd: Path) -> tuple[str, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_CLI, *args], env=_env(cache), cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    marker = [line for line in proc.stderr.splitlines() if line.startswith("HEAVY=")]
    assert marker, proc.stderr[-3000:]
    return proc.stdout, json.loads(marker[-1][len("HEAVY="):])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(index, ONNX cache): 60 demo documents indexed by the CLI in a subprocess, exporting into a fresh cache."""
    root = tmp_path_factory.mktemp("coldstart")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(demo_corpus_path().read_text(encoding="utf-8").splitlines(keepends=True)[:60]), encoding="utf-8")
    cache, index = root / "cache", root / "index"
    _cli(["index", str(corpus), "--index", str(index)], cache, root)
    return index, cache


def test_cold_query_imports_no_torch_and_ranks_as_sentence_transformers(built: tuple[Path, Path], monkeypatch) -> None:
    index, cache = built
    cold = []
    for q in QUERIES[:3]:
        out, heavy = _cli(["query", q, "--index", str(index), "--json", "--k", "10"], cache, index.parent)
        assert heavy == [], f"a query on the default backend imported {heavy}"
        cold.append(json.loads(out))
    # Reference: the same index, encoded by sentence-transformers (loaded first, so the branch uses it).
    monkeypatch.setenv("HYBRID_RETRIEVER_CACHE", str(cache))
    with HybridRetriever.open(str(index)) as r:
        assert r.branches["dense"].model is not None and r.branches["dense"].light is None
        for q, got in zip(QUERIES, cold):
            ref = [h.as_dict() for h in r.search(q, k=10)]
            assert [h["id"] for h in got] == [h["id"] for h in ref], q
            np.testing.assert_allclose([h["score"] for h in got], [h["score"] for h in ref], rtol=1e-5, atol=1e-6)


def test_help_imports_no_torch_nor_qdrant_client(tmp_path: Path) -> None:
    out, heavy = _cli(["--help"], tmp_path / "cache", tmp_path)
    assert "query" in out and heavy == []


@pytest.fixture(scope="module")
def light_and_reference(dense_branch, built: tuple[Path, Path]):
    """The torch-free encoder and sentence-transformers' own path over the same cached export."""
    _, cache = built
    folder = locate_model(MINILM)
    name = resolve_model_path(MINILM)
    light = load_light_encoder(folder, name, "fp32", 1, max_batch_tokens=CPU_BATCH_TOKENS, cache_dir=cache)
    assert light is not None
    os.environ["HYBRID_RETRIEVER_CACHE"], before = str(cache), os.environ.get("HYBRID_RETRIEVER_CACHE")
    try:
        reference = build_sentence_encoder(dense_branch.model, name, "onnx", folder)
    finally:
        if before is None:
            del os.environ["HYBRID_RETRIEVER_CACHE"]
        else:
            os.environ["HYBRID_RETRIEVER_CACHE"] = before
    return light, reference


def test_light_tokens_equal_sentence_transformers(dense_branch, light_and_reference) -> None:
    light, _ = light_and_reference
    st = dense_branch.model
    for batch in ([t] for t in TEXTS), [TEXTS]:
        for texts in batch:
            ref = st.preprocess(texts)
            got = light._features(texts)
            for key in ("input_ids", "attention_mask", "token_type_ids"):
                np.testing.assert_array_equal(got[key], ref[key].numpy(), err_msg=f"{key} for {texts[0][:40]!r}")
    assert light.max_seq_length == st.max_seq_length and light.dimension == st.get_embedding_dimension()


def test_light_vectors_equal_sentence_transformers(light_and_reference) -> None:
    light, reference = light_and_reference
    texts = TEXTS * 6  # several batches and token slices
    for prompt in (None, "query: "):
        got, ref = light.encode(texts, prompt=prompt, batch_size=16), reference.encode(texts, prompt=prompt, batch_size=16)
        np.testing.assert_allclose(got, ref, atol=2e-6)
        one = np.vstack([light.encode([t], prompt=prompt) for t in TEXTS])
        np.testing.assert_allclose(one, ref[: len(TEXTS)], atol=2e-6)


def test_light_encoder_needs_a_current_export(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, cache = built
    folder, name = locate_model(MINILM), resolve_model_path(MINILM)
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    export = export_folder(copy, name, "fp32")
    record = read_record(export)
    assert record is not None and record["source_files_sha256"]
    # No int8 export yet: sentence-transformers must load to make it.
    assert load_light_encoder(folder, name, "int8", 1, cache_dir=copy) is None
    # A record of other model files (e.g. an export from before they were recorded): not trusted without torch.
    (export / "export.json").write_text(json.dumps({**record, "source_files_sha256": None}), encoding="utf-8")
    assert load_light_encoder(folder, name, "fp32", 1, cache_dir=copy) is None
    # An edited model.onnx is refused, as on the torch path.
    (export / "export.json").write_text(json.dumps(record), encoding="utf-8")
    with open(export / "model.onnx", "r+b") as f:
        f.seek(-16, os.SEEK_END)
        f.write(b"\0" * 16)
    with pytest.raises(ModelCacheError, match="does not match the hash"):
        load_light_encoder(folder, name, "fp32", 1, cache_dir=copy)
