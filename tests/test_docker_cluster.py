"""The Qdrant store's cluster settings (shards, replication, consistency, shard key) reach Qdrant.

qdrant-client's :memory: mode has one process and no shards: it accepts these arguments and
ignores them, so a real :memory: client that also records what create_collection received
shows the settings arrive, and a search through it shows they do not break the local mode.
"""

from __future__ import annotations

from typing import Any

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as m

from hybrid_retriever import HybridRetriever, RetrieverConfig
from hybrid_retriever.errors import ConfigError
from hybrid_retriever.stores.qdrant import QdrantStore


class RecordingClient(QdrantClient):
    """The real in-process client, keeping the keyword arguments of each call the store makes
    (create_collection's in ``created``, every read's and write's in ``calls``) and running it."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.created: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def create_collection(self, collection_name: str, **kwargs: Any) -> bool:
        self.created.append(kwargs)
        return super().create_collection(collection_name, **kwargs)

    def upsert(self, collection_name: str, **kwargs: Any) -> Any:
        self.calls.append(("upsert", kwargs))
        return super().upsert(collection_name, **kwargs)

    def delete(self, collection_name: str, **kwargs: Any) -> Any:
        self.calls.append(("delete", kwargs))
        return super().delete(collection_name, **kwargs)

    def retrieve(self, collection_name: str, **kwargs: Any) -> Any:
        self.calls.append(("retrieve", kwargs))
        return super().retrieve(collection_name, **kwargs)

    def scroll(self, collection_name: str, **kwargs: Any) -> Any:
        self.calls.append(("scroll", kwargs))
        return super().scroll(collection_name, **kwargs)

    def count(self, collection_name: str, **kwargs: Any) -> Any:
        self.calls.append(("count", kwargs))
        return super().count(collection_name, **kwargs)

    def query_points(self, collection_name: str, **kwargs: Any) -> Any:
        self.calls.append(("query_points", kwargs))
        return super().query_points(collection_name, **kwargs)

    def query_batch_points(self, collection_name: str, **kwargs: Any) -> Any:
        self.calls.append(("query_batch_points", kwargs))
        return super().query_batch_points(collection_name, **kwargs)

    def called(self, name: str) -> list[dict[str, Any]]:
        return [kw for n, kw in self.calls if n == name]


def retriever_on(client: QdrantClient, store: dict[str, Any], dense_branch: Any) -> HybridRetriever:
    from hybrid_retriever.branches import build_branch

    cfg = RetrieverConfig.model_validate(
        {"store": {"kind": "qdrant", "location": ":memory:", **store}, "runtime": {"show_progress": False}}
    )
    branches = [dense_branch if c.kind == "dense" else build_branch(c) for c in cfg.branches]
    return HybridRetriever(cfg, store=QdrantStore(cfg.store, client=client), branches=branches)


def test_cluster_settings_reach_create_collection_and_search_still_works(dense_branch: Any) -> None:
    client = RecordingClient()
    settings = {"shard_number": 6, "replication_factor": 2, "write_consistency_factor": 2, "read_consistency": "majority"}
    r = retriever_on(client, settings, dense_branch)
    r.add_texts(["Qdrant shards a collection across nodes.", "Cats sleep."], ids=["q", "c"])
    assert len(client.created) == 1
    created = client.created[0]
    assert (created["shard_number"], created["replication_factor"], created["write_consistency_factor"]) == (6, 2, 2)
    assert created["sharding_method"] is None
    assert r.search("how is a collection split over nodes", k=1)[0].id == "q"  # reads with consistency=majority
    assert [d.id for d in r.get(["c"])] == ["c"] and r.count() == 2
    r.close()


def test_defaults_leave_qdrant_to_choose(dense_branch: Any) -> None:
    client = RecordingClient()
    r = retriever_on(client, {}, dense_branch)
    r.add_texts(["one document"], ids=["a"])
    created = client.created[0]
    assert created["shard_number"] is None and created["replication_factor"] is None
    assert created["write_consistency_factor"] is None and created["sharding_method"] is None
    r.close()


def test_shard_key_asks_for_custom_sharding(dense_branch: Any) -> None:
    client = RecordingClient()
    r = retriever_on(client, {"shard_key": "tenant-a", "shard_number": 1}, dense_branch)
    r.add_texts(["a tenant's document"], ids=["t"])
    assert client.created[0]["sharding_method"] == m.ShardingMethod.CUSTOM
    assert r.search("tenant document", k=1)[0].id == "t"  # the local mode has no shards: it ignores the key
    r.close()


READS = ("retrieve", "scroll", "query_points", "query_batch_points")


@pytest.mark.parametrize("fusion", [{}, {"method": "rrf", "server_side": True}])
def test_every_read_and_write_carries_the_cluster_settings(dense_branch: Any, fusion: dict[str, Any]) -> None:
    """Read consistency and the shard key on every search (per branch, score completion, Qdrant-side
    fusion), get, scroll and count; write ordering and the shard key on every upsert and delete."""
    client = RecordingClient()
    settings = {"shard_key": "tenant-a", "shard_number": 1, "replication_factor": 2, "write_consistency_factor": 2,
                "read_consistency": "majority", "write_ordering": "strong"}
    r = retriever_on(client, settings, dense_branch)
    if fusion:
        r = r.with_fusion(fusion=r.config.fusion.model_copy(update=fusion))
    r.add_texts(["Qdrant shards a collection across nodes.", "Cats sleep all day.", "Replicas copy each shard."],
                ids=["q", "c", "rep"])
    assert r.search("how is a collection split over nodes", k=2)[0].id == "q"
    assert [d.id for d in r.get(["c"])] == ["c"] and r.count() == 3
    assert sorted(d.id for d in r.documents()) == ["c", "q", "rep"]
    r.delete(["c"])
    assert r.count() == 2
    searched = "query_points" if fusion else "query_batch_points"
    assert client.called(searched) and client.called("retrieve") and client.called("scroll") and client.called("count")
    for name in READS:
        for kw in client.called(name):
            assert kw["consistency"] == m.ReadConsistencyType.MAJORITY, name
            assert name == "query_batch_points" or kw["shard_key_selector"] == "tenant-a", name
    for kw in client.called("query_batch_points"):  # a batch names the shard key in each request
        assert kw["requests"] and all(q.shard_key == "tenant-a" for q in kw["requests"])
    for kw in client.called("count"):  # Qdrant's count takes no read consistency
        assert kw["shard_key_selector"] == "tenant-a"
    writes = client.called("upsert") + client.called("delete")
    assert client.called("upsert") and client.called("delete")
    for kw in writes:
        assert kw["ordering"] == m.WriteOrdering.STRONG and kw["shard_key_selector"] == "tenant-a" and kw["wait"] is True
    r.close()


def test_without_cluster_settings_nothing_is_forced(dense_branch: Any) -> None:
    client = RecordingClient()
    r = retriever_on(client, {}, dense_branch)
    r.add_texts(["one document"], ids=["a"])
    r.search("document", k=1)
    r.get(["a"])
    for name, kw in client.calls:
        assert kw.get("consistency") is None and kw.get("shard_key_selector") is None and kw.get("ordering") is None, name
    r.close()


@pytest.mark.parametrize(
    "store, problem",
    [
        ({"shard_number": 0}, "shard_number"),
        ({"replication_factor": -1}, "replication_factor"),
        ({"write_consistency_factor": 0}, "write_consistency_factor"),
        ({"read_consistency": "most"}, "read_consistency"),
        ({"read_consistency": 0}, "read_consistency"),
        ({"write_ordering": "eventual"}, "write_ordering"),
    ],
)
def test_bad_cluster_settings_are_config_errors(store: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        RetrieverConfig.validate_data({"store": {"kind": "qdrant", "url": "http://localhost:6333", **store}})


@pytest.mark.parametrize("value", [1, 3, "all", "majority", "quorum"])
def test_read_consistency_round_trips(value: Any) -> None:
    cfg = RetrieverConfig.validate_data({"store": {"kind": "qdrant", "url": "http://q:6333", "read_consistency": value}})
    assert RetrieverConfig.from_yaml(cfg.to_yaml()) == cfg
    assert cfg.store.read_consistency == value
