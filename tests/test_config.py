"""RetrieverConfig: YAML/JSON round trips and every validation error naming its key."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml

from hybrid_retriever import ConfigError, RetrieverConfig
from hybrid_retriever.branches import build_branch
from hybrid_retriever.config import BM25BranchConfig, DenseBranchConfig, FusionConfig, QdrantStoreConfig

CUSTOM = {
    "store": {"kind": "qdrant", "location": ":memory:", "collection": "docs", "timeout": 3.5},
    "branches": [
        {"kind": "bm25", "name": "lexical", "weight": 0.3, "depth": 50, "k1": 0.9, "b": 0.4, "avg_len": 42.5,
         "language": "german", "stemmer": False, "min_token_len": 2},
        {"kind": "dense", "weight": 0.7, "depth": 80, "model": "/models/e5", "batch_size": 8,
         "query_prompt_name": "query", "max_seq_length": 256},
    ],
    "fusion": {"method": "rrf", "rrf_k": 20, "missing": "floor", "floor_value": -0.5, "server_side": True},
    "runtime": {"k": 7, "max_workers": 2, "ingest_batch_size": 64, "show_progress": False},
}


def custom() -> RetrieverConfig:
    return RetrieverConfig.validate_data(CUSTOM)


@pytest.mark.parametrize("cfg", [RetrieverConfig(), custom()], ids=["default", "custom"])
def test_yaml_and_json_round_trip(cfg, tmp_path):
    assert RetrieverConfig.from_yaml(cfg.to_yaml()) == cfg
    assert RetrieverConfig.from_json(cfg.to_json()) == cfg
    # The text forms are plain YAML / JSON that other tools read.
    assert yaml.safe_load(cfg.to_yaml()) == json.loads(cfg.to_json())
    for name in ("cfg.yaml", "cfg.yml", "cfg.json"):
        cfg.save(tmp_path / name, header="built by test\nsecond line")
        assert RetrieverConfig.from_file(tmp_path / name) == cfg
    assert (tmp_path / "cfg.yaml").read_text().startswith("# built by test\n# second line\n")


def test_custom_values_survive_the_round_trip():
    cfg = RetrieverConfig.from_yaml(custom().to_yaml())
    lexical = cfg.branch("lexical")
    assert isinstance(lexical, BM25BranchConfig)
    assert (lexical.k1, lexical.b, lexical.avg_len, lexical.language, lexical.stemmer) == (0.9, 0.4, 42.5, "german", False)
    assert isinstance(cfg.branch("dense"), DenseBranchConfig) and cfg.branch("dense").max_seq_length == 256
    assert isinstance(cfg.store, QdrantStoreConfig) and cfg.store.collection == "docs"
    assert cfg.fusion.server_side and cfg.fusion.rrf_k == 20 and cfg.runtime.k == 7
    assert cfg.weights() == pytest.approx({"lexical": 0.3, "dense": 0.7})


def test_partial_yaml_fills_defaults():
    cfg = RetrieverConfig.from_yaml("fusion:\n  method: rrf\n")
    assert cfg.fusion.method == "rrf" and cfg.fusion.rrf_k == 60
    assert cfg.branch_names == ["bm25", "dense"] and cfg.weights() == {"bm25": 0.5, "dense": 0.5}
    assert RetrieverConfig.from_yaml("") == RetrieverConfig()


def error_of(data) -> str:
    with pytest.raises(ConfigError) as info:
        RetrieverConfig.validate_data(data)
    return str(info.value)


@pytest.mark.parametrize(
    "data, key",
    [
        ({"fusion": {"methd": "rrf"}}, "fusion.methd"),
        ({"stores": {"kind": "edge"}}, "stores"),
        ({"runtime": {"top_k": 3}}, "runtime.top_k"),
        ({"branches": [{"kind": "bm25", "k3": 1.0}]}, "k3"),
        ({"store": {"kind": "edge", "path": "x", "url": "http://h"}}, "url"),
    ],
)
def test_unknown_keys_are_errors_naming_the_key(data, key):
    msg = error_of(data)
    assert "unknown key" in msg and key in msg


@pytest.mark.parametrize(
    "data, key",
    [
        ({"runtime": {"k": "ten"}}, "runtime.k"),
        ({"runtime": {"show_progress": "sometimes"}}, "runtime.show_progress"),
        ({"fusion": {"rrf_k": "sixty"}}, "fusion.rrf_k"),
        ({"branches": [{"kind": "bm25", "k1": [1.2]}]}, "k1"),
        ({"branches": [{"kind": "dense", "depth": 0}]}, "depth"),
        ({"branches": "bm25"}, "branches"),
        ({"store": {"kind": "qdrant", "location": ":memory:", "timeout": -1}}, "timeout"),
    ],
)
def test_wrong_types_and_values_name_the_key(data, key):
    assert f"{key}" in error_of(data)


def test_unknown_branch_kind_fusion_method_and_normalization():
    msg = error_of({"branches": [{"kind": "splade"}]})
    assert "splade" in msg and "bm25" in msg and "dense" in msg
    msg = error_of({"fusion": {"method": "combsum"}})
    assert "fusion.method" in msg and "interpolation" in msg and "rrf" in msg
    msg = error_of({"fusion": {"normalization": "l2"}})
    assert "fusion.normalization" in msg and "dbsf" in msg
    msg = error_of({"fusion": {"missing": "guess"}})
    assert "fusion.missing" in msg
    msg = error_of({"store": {"kind": "mongo"}})
    assert "store" in msg and "edge" in msg and "qdrant" in msg
    # The branch factory refuses a kind it has no implementation for.
    with pytest.raises(ConfigError, match="unknown branch kind 'splade'"):
        build_branch(SimpleNamespace(kind="splade"))


def test_weights():
    msg = error_of({"branches": [{"kind": "bm25", "weight": -0.1}, {"kind": "dense"}]})
    assert "branches.0" in msg and "weight" in msg and "greater than or equal to 0" in msg
    msg = error_of({"branches": [{"kind": "bm25", "weight": 0}, {"kind": "dense", "weight": 0.0}]})
    assert "all zero" in msg
    # Non-finite weights would turn the normalised weights into NaN.
    for bad in (float("inf"), float("nan")):
        assert "weight" in error_of({"branches": [{"kind": "bm25", "weight": bad}, {"kind": "dense"}]})
    with pytest.raises(ConfigError, match="weight"):
        RetrieverConfig.from_yaml("branches:\n- kind: bm25\n  weight: .inf\n")
    # One zero weight is fine; weights are normalised to sum to one.
    cfg = RetrieverConfig.validate_data({"branches": [{"kind": "bm25", "weight": 0}, {"kind": "dense", "weight": 3}]})
    assert cfg.weights() == {"bm25": 0.0, "dense": 1.0}
    assert cfg.with_weights({"bm25": 1.0}).weights() == {"bm25": 0.25, "dense": 0.75}
    with pytest.raises(ConfigError, match="unknown branch"):
        cfg.with_weights({"colbert": 1.0})
    with pytest.raises(ConfigError, match="all zero"):
        cfg.with_weights({"dense": 0.0})


def test_non_finite_fusion_numbers_rejected():
    assert "fusion.rrf_k" in error_of({"fusion": {"rrf_k": float("inf")}})
    assert "fusion.rrf_k" in error_of({"fusion": {"rrf_k": 0}})
    assert "fusion.floor_value" in error_of({"fusion": {"missing": "floor", "floor_value": float("nan")}})


def test_branch_names_must_be_unique():
    msg = error_of({"branches": [{"kind": "bm25"}, {"kind": "bm25", "k1": 2.0}]})
    assert "unique" in msg and "'bm25'" in msg
    msg = error_of({"branches": [{"kind": "bm25", "name": "x"}, {"kind": "dense", "name": "x"}]})
    assert "'x'" in msg
    cfg = RetrieverConfig.validate_data({"branches": [{"kind": "bm25"}, {"kind": "bm25", "name": "bm25_strict", "b": 1.0}]})
    assert cfg.branch_names == ["bm25", "bm25_strict"]
    assert "at least one branch" in error_of({"branches": []})
    with pytest.raises(ConfigError, match="unknown branch 'nope'"):
        cfg.branch("nope")


@pytest.mark.parametrize(
    "fusion, ok",
    [
        ({"method": "rrf"}, True),
        ({"method": "interpolation", "normalization": "dbsf"}, True),
        ({"method": "interpolation", "normalization": "minmax"}, False),
        ({"method": "interpolation", "normalization": "zscore"}, False),
        ({"method": "interpolation", "normalization": "rank"}, False),
    ],
)
def test_server_side_constraints(fusion, ok):
    data = {"fusion": {**fusion, "server_side": True}}
    if ok:
        assert RetrieverConfig.validate_data(data).fusion.server_side
    else:
        msg = error_of(data)
        assert "fusion" in msg and "server_side" in msg and "rrf" in msg and "dbsf" in msg
    # Without server_side every combination is fine.
    assert not FusionConfig(**fusion).server_side


def test_qdrant_store_needs_exactly_one_target():
    assert "exactly one of url, location" in error_of({"store": {"kind": "qdrant"}})
    assert "exactly one of url, location" in error_of({"store": {"kind": "qdrant", "url": "http://h:6333", "location": ":memory:"}})
    cfg = RetrieverConfig.validate_data({"store": {"kind": "qdrant", "url": "http://h:6333"}})
    assert cfg.store.url == "http://h:6333"


def test_bad_text_and_files(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        RetrieverConfig.from_yaml("fusion: [unclosed")
    with pytest.raises(ConfigError, match="mapping at its top level"):
        RetrieverConfig.from_yaml("- just\n- a list\n")
    with pytest.raises(ConfigError, match="not valid JSON"):
        RetrieverConfig.from_json("{'single': 'quotes'}")
    with pytest.raises(ConfigError, match="does not exist"):
        RetrieverConfig.from_file(tmp_path / "missing.yaml")
    (tmp_path / "bad.json").write_text(json.dumps({"fusion": {"method": "nope"}}))
    with pytest.raises(ConfigError, match="fusion.method"):
        RetrieverConfig.from_file(tmp_path / "bad.json")


def test_every_problem_is_reported_at_once():
    msg = error_of({"fusion": {"method": "nope", "rrf_k": -1}, "runtime": {"k": 0}})
    assert "fusion.method" in msg and "fusion.rrf_k" in msg and "runtime.k" in msg


def test_assignment_errors_are_config_errors_naming_the_key():
    cfg = RetrieverConfig()
    with pytest.raises(ConfigError, match="normalization"):
        cfg.fusion.normalization = "softmax"
    with pytest.raises(ConfigError, match="fb_docs"):
        cfg.prf.fb_docs = 0
    assert cfg.fusion.normalization == "dbsf" and cfg.prf.fb_docs == 3  # nothing half-applied
    cfg.prf.fb_docs = 5
    assert cfg.prf.fb_docs == 5
