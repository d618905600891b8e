"""The dense encoder's backends: ONNX Runtime against torch on the real MiniLM, the export cache, threads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import torch  # noqa: E402

from hybrid_retriever import HybridRetriever, RetrieverConfig  # noqa: E402
from hybrid_retriever.errors import ConfigError, ModelCacheError  # noqa: E402
from hybrid_retriever.models import resolve_model_path  # noqa: E402
from hybrid_retriever.models.onnx_backend import (  # noqa: E402
    cached_export,
    export,
    export_folder,
    load_onnx_transformer,
    weights_fingerprint,
)
from hybrid_retriever.models.sentence_encoder import SentenceEncoder, build_sentence_encoder, resolve_backend  # noqa: E402
from hybrid_retriever.models.threads import intra_op_threads, set_intra_op_threads  # noqa: E402

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SENTENCES = [
    "What causes cancer in mice?",
    "  Leading and trailing spaces are stripped by the tokenizer.  ",
    "x",
    "Qdrant stores dense, sparse and multi-vector representations of every document. " * 20,  # > 256 tokens
    "Mitochondria are the powerhouse of the cell; they make ATP by oxidative phosphorylation.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def encoders(dense_branch, cache: Path) -> dict[str, SentenceEncoder]:
    """torch, ONNX fp32 and ONNX int8 encoders over the session's one loaded MiniLM."""
    st = dense_branch.model
    name = resolve_model_path(MINILM)
    inputs = tuple(k for k in st.preprocess(["a"]) if k != "modality")
    out = {"torch": SentenceEncoder(st)}
    for variant, label in (("fp32", "onnx"), ("int8", "onnx-int8")):
        onnx = load_onnx_transformer(st[0].auto_model, name, inputs, variant, threads=1, cache_dir=cache)
        out[label] = SentenceEncoder(st, onnx, label)
    return out


def test_direct_torch_path_equals_sentence_transformers_encode(dense_branch, encoders) -> None:
    reference = dense_branch.model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(encoders["torch"].encode(SENTENCES), reference, atol=1e-6)
    one_by_one = np.vstack([encoders["torch"].encode([s]) for s in SENTENCES])
    np.testing.assert_allclose(one_by_one, reference, atol=1e-5)


def test_token_budget_slices_give_the_same_vectors(dense_branch, encoders) -> None:
    reference = dense_branch.model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    sliced = SentenceEncoder(dense_branch.model, encoders["onnx"].transformer, "onnx", max_batch_tokens=40)
    assert len(list(sliced._slices(dense_branch.model.preprocess(SENTENCES), len(SENTENCES)))) > 1
    np.testing.assert_allclose(sliced.encode(SENTENCES), reference, atol=1e-5)
    np.testing.assert_allclose(SentenceEncoder(dense_branch.model, max_batch_tokens=40).encode(SENTENCES), reference, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_onnx_fp32_vectors_equal_torch(encoders, batch_size: int) -> None:
    ref = encoders["torch"].encode(SENTENCES)
    got = encoders["onnx"].encode(SENTENCES, batch_size=batch_size)
    assert got.shape == ref.shape == (len(SENTENCES), 384)
    cosine = (got * ref).sum(axis=1)
    assert cosine.min() >= 0.9999, cosine
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_onnx_fp32_rankings_equal_torch(encoders) -> None:
    docs = SENTENCES[1:]
    queries = ["how do cells make energy", "vector database storage", "a fox and a dog", "tumours in rodents"]
    orders = {}
    for name in ("torch", "onnx"):
        enc = encoders[name]
        scores = enc.encode(queries) @ enc.encode(docs).T
        orders[name] = np.argsort(-scores, axis=1).tolist()
    assert orders["onnx"] == orders["torch"]


def test_onnx_int8_is_close_but_not_equal(encoders) -> None:
    ref = encoders["torch"].encode(SENTENCES)
    cosine = (encoders["onnx-int8"].encode(SENTENCES) * ref).sum(axis=1)
    # Per-channel int8 weights: close to float32, yet measurably different (so it is opt-in).
    assert cosine.min() > 0.95 and cosine.mean() < 0.9999, cosine


def test_dense_branch_backend_option_dispatches(dense_branch, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hybrid_retriever.branches import DenseBranch
    from hybrid_retriever.config import DenseBranchConfig

    monkeypatch.setenv("HYBRID_RETRIEVER_CACHE", str(cache))
    onnx = DenseBranch(DenseBranchConfig(backend="onnx"))
    torch_branch = DenseBranch(DenseBranchConfig(backend="torch"))
    assert onnx.encoder.backend == "onnx" and torch_branch.encoder.backend == "torch"
    a, b = np.asarray(onnx.encode_queries(SENTENCES)), np.asarray(torch_branch.encode_queries(SENTENCES))
    assert (a * b).sum(axis=1).min() >= 0.9999


def test_backend_resolution() -> None:
    assert resolve_backend("auto", "cpu") == "onnx"
    assert resolve_backend("auto", "cuda") == "torch"
    assert resolve_backend("torch", "cpu") == "torch"
    assert resolve_backend("onnx-int8", "cpu") == "onnx-int8"
    with pytest.raises(ConfigError, match="backend: torch"):
        resolve_backend("onnx", "cuda")
    with pytest.raises(ConfigError, match="backend"):
        RetrieverConfig.validate_data({"branches": [{"kind": "dense", "backend": "tensorrt"}]})


def test_shared_multivector_forward_pass_on_onnx(dense_branch, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hybrid_retriever.branches import BM25Branch, DenseBranch, MultiVectorBranch
    from hybrid_retriever.branches.late_interaction import load_encoder
    from hybrid_retriever.config import BM25BranchConfig, DenseBranchConfig, MultiVectorBranchConfig

    monkeypatch.setenv("HYBRID_RETRIEVER_CACHE", str(cache))
    cfg = RetrieverConfig.model_validate({
        "store": {"kind": "qdrant", "location": ":memory:", "collection": "onnx-shared"},
        "branches": [{"kind": "bm25"}, {"kind": "dense", "backend": "onnx"}, {"kind": "multivector", "pool_factor": 1}],
        "runtime": {"show_progress": False},
    })
    dense = DenseBranch(DenseBranchConfig(backend="onnx"))
    mv = MultiVectorBranch(MultiVectorBranchConfig(pool_factor=1))
    r = HybridRetriever(cfg, branches=[BM25Branch(BM25BranchConfig()), dense, mv])
    try:
        assert mv.shared is not None and mv.shared.sentence_encoder.backend == "onnx"
        texts = SENTENCES[:3]
        tokens = mv.encode_documents(texts)
        sentences = dense.encode_documents(texts)
        assert mv.shared.forward_passes == 1
        alone = load_encoder(MINILM, format="tokens", backbone=dense_branch.model[0].auto_model).encode(texts, is_query=False)
        for got, ref in zip(tokens, alone):
            assert got.shape == ref.shape
            assert (got * ref).sum(axis=1).min() >= 0.9999
        ref_sent = dense_branch.model.encode(texts, normalize_embeddings=True)
        assert (np.asarray(sentences) * ref_sent).sum(axis=1).min() >= 0.9999
    finally:
        r.close()


# ------------------------------------------------------------------------ the export cache


def _tiny_bert(seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    return BertModel(config).eval()


def _reference_hidden(model, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    token_type_ids=torch.zeros_like(torch.from_numpy(ids)))
    return out.last_hidden_state.numpy()


INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _features() -> dict[str, np.ndarray]:
    ids = np.array([[2, 15, 33, 47, 3, 0, 0], [2, 9, 81, 12, 60, 77, 3]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def test_export_matches_torch_and_is_reused(tmp_path: Path) -> None:
    model = _tiny_bert()
    onnx = load_onnx_transformer(model, "tiny", INPUTS, "fp32", threads=1, cache_dir=tmp_path)
    f = _features()
    real = f["attention_mask"].astype(bool)
    np.testing.assert_allclose(onnx(f)[real], _reference_hidden(model, f["input_ids"], f["attention_mask"])[real], atol=1e-5)
    record = export_folder(tmp_path, "tiny", "fp32") / "export.json"
    made = record.stat().st_mtime_ns
    assert cached_export(model, "tiny", INPUTS, "fp32", tmp_path) == record.parent / "model.onnx"
    assert record.stat().st_mtime_ns == made  # reused, not exported again


def test_an_export_finished_meanwhile_by_another_process_is_kept(tmp_path: Path) -> None:
    """Two processes exporting the same weights at once (two test workers, two servers): the second keeps the first's
    folder, which the first may be loading, instead of deleting it under its reader."""
    model = _tiny_bert()
    path = cached_export(model, "tiny", INPUTS, "fp32", tmp_path)  # the first process's export, done
    first = path.stat().st_ino
    # The second process found no export when it looked, so it exports too and finishes now.
    export(model, INPUTS, path.parent, "fp32", weights_fingerprint(model))
    assert path.stat().st_ino == first  # the first export's file, not replaced
    assert sorted(p.name for p in path.parent.parent.iterdir()) == ["fp32"]  # the second's work folder is gone
    f = _features()
    real = f["attention_mask"].astype(bool)
    onnx = load_onnx_transformer(model, "tiny", INPUTS, "fp32", threads=1, cache_dir=tmp_path)
    np.testing.assert_allclose(onnx(f)[real], _reference_hidden(model, f["input_ids"], f["attention_mask"])[real], atol=1e-5)


def test_export_is_rebuilt_when_the_weights_change(tmp_path: Path) -> None:
    import json

    model = _tiny_bert()
    cached_export(model, "tiny", INPUTS, "fp32", tmp_path)
    record = export_folder(tmp_path, "tiny", "fp32") / "export.json"
    before = json.loads(record.read_text())["source_sha256"]
    with torch.no_grad():
        model.encoder.layer[0].output.dense.weight.add_(0.05)
    assert weights_fingerprint(model) != before
    onnx = load_onnx_transformer(model, "tiny", INPUTS, "fp32", threads=1, cache_dir=tmp_path)
    assert json.loads(record.read_text())["source_sha256"] == weights_fingerprint(model)
    f = _features()
    real = f["attention_mask"].astype(bool)
    np.testing.assert_allclose(onnx(f)[real], _reference_hidden(model, f["input_ids"], f["attention_mask"])[real], atol=1e-5)


def test_tampered_export_is_refused(tmp_path: Path) -> None:
    model = _tiny_bert()
    path = cached_export(model, "tiny", INPUTS, "fp32", tmp_path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # one flipped byte in the weights
    path.write_bytes(bytes(data))
    with pytest.raises(ModelCacheError, match="Delete the folder"):
        load_onnx_transformer(model, "tiny", INPUTS, "fp32", threads=1, cache_dir=tmp_path)


def test_int8_export_of_tiny_model(tmp_path: Path) -> None:
    model = _tiny_bert()
    onnx = load_onnx_transformer(model, "tiny", INPUTS, "int8", threads=1, cache_dir=tmp_path)
    f = _features()
    got, ref = onnx(f)[0, 0], _reference_hidden(model, f["input_ids"], f["attention_mask"])[0, 0]
    assert np.dot(got, ref) / (np.linalg.norm(got) * np.linalg.norm(ref)) > 0.9
    import json

    assert json.loads((export_folder(tmp_path, "tiny", "int8") / "export.json").read_text())["variant"] == "int8"


# ------------------------------------------------------------------------------- threads


def test_runtime_threads_are_applied_to_torch_and_onnx(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        for n in (2, 1):
            r = HybridRetriever(RetrieverConfig.validate_data({
                "store": {"kind": "qdrant", "location": ":memory:", "collection": f"threads{n}"},
                "branches": [{"kind": "bm25"}],
                "runtime": {"threads": n, "show_progress": False},
            }))
            r.close()
            assert torch.get_num_threads() == n and intra_op_threads() == n
            onnx = load_onnx_transformer(_tiny_bert(), "tiny", INPUTS, "fp32", threads=intra_op_threads(), cache_dir=tmp_path)
            assert onnx.session.get_session_options().intra_op_num_threads == n
        assert RetrieverConfig().runtime.threads == 1
    finally:
        set_intra_op_threads(before)


def test_build_sentence_encoder_uses_the_thread_setting(dense_branch, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_RETRIEVER_CACHE", str(cache))
    before = torch.get_num_threads()
    try:
        set_intra_op_threads(2)
        enc = build_sentence_encoder(dense_branch.model, resolve_model_path(MINILM), "onnx")
        assert enc.transformer.session.get_session_options().intra_op_num_threads == 2
    finally:
        set_intra_op_threads(before)


def test_int8_index_is_not_reopened_with_float32_queries(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hybrid_retriever.errors import IndexMismatchError

    monkeypatch.setenv("HYBRID_RETRIEVER_CACHE", str(cache))

    def config(backend: str) -> RetrieverConfig:
        return RetrieverConfig.validate_data({
            "store": {"kind": "edge", "path": str(tmp_path / "index")},
            "branches": [{"kind": "dense", "backend": backend}],
            "runtime": {"show_progress": False},
        })

    r = HybridRetriever(config("onnx-int8"))
    r.add_texts(["int8 vectors differ slightly from float32 ones"], ids=["a"])
    r.close()
    with pytest.raises(IndexMismatchError, match="weights"):
        HybridRetriever(config("onnx"))
    reopened = HybridRetriever.open(str(tmp_path / "index"))
    assert reopened.config.branches[0].backend == "onnx-int8"
    reopened.close()
