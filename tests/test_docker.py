"""docker-compose.yml and the Dockerfile, checked statically (no Docker engine here).

The compose file is validated against the Compose Specification's JSON schema
(tests/data/compose-spec.schema.json, see its NOTICE), then its services are checked for what
issue 11 asks: pinned images, ports, healthchecks, depends_on conditions, the cluster profile.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from hybrid_retriever.config import QdrantStoreConfig
from hybrid_retriever_server.cli import _config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = Path(__file__).with_name("data") / "compose-spec.schema.json"
QDRANT_IMAGE = re.compile(r"^qdrant/qdrant:v\d+\.\d+\.\d+$")
CLUSTER_NODES = ["qdrant-node1", "qdrant-node2", "qdrant-node3"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    return parser


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    jsonschema.Draft201909Validator(schema).validate(compose)
    # The schema is strict: a misspelt key is caught (the check can fail).
    broken = json.loads(json.dumps(compose))
    broken["services"]["qdrant"]["helthcheck"] = broken["services"]["qdrant"].pop("healthcheck")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft201909Validator(schema).validate(broken)


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ["qdrant", *CLUSTER_NODES]:
        assert QDRANT_IMAGE.match(services[name]["image"]), services[name]["image"]
    assert len({services[n]["image"] for n in ["qdrant", *CLUSTER_NODES]}) == 1  # one Qdrant version everywhere
    for name in ["retriever", "retriever-cluster"]:
        assert services[name]["build"]["context"] == "."
        assert not services[name]["image"].endswith(":latest")


def test_default_stack_qdrant_and_retriever(compose: dict[str, Any]) -> None:
    qdrant, retriever = compose["services"]["qdrant"], compose["services"]["retriever"]
    assert "profiles" not in qdrant and "profiles" not in retriever  # started by a plain `docker compose up`
    assert "6333:6333" in qdrant["ports"] and qdrant["volumes"] == ["qdrant-storage:/qdrant/storage"]
    assert "/readyz" in " ".join(qdrant["healthcheck"]["test"])
    assert retriever["depends_on"] == {"qdrant": {"condition": "service_healthy"}}
    assert retriever["ports"] == ["8000:8000"]
    assert "/ready" in " ".join(retriever["healthcheck"]["test"])
    env = retriever["environment"]
    assert env["HYBRID_RETRIEVER_QDRANT_URL"] == "http://qdrant:6333"
    assert env["HYBRID_RETRIEVER_API_KEY"] == "${HYBRID_RETRIEVER_API_KEY:-}"  # from the caller, never written here
    assert any(v.startswith("model-cache:") for v in retriever["volumes"])
    assert set(compose["volumes"]) >= {"qdrant-storage", "model-cache"}


def test_cluster_profile_has_three_nodes_and_one_bootstrap_peer(compose: dict[str, Any]) -> None:
    services = compose["services"]
    in_profile = {n for n, s in services.items() if "cluster" in s.get("profiles", [])}
    assert in_profile == {*CLUSTER_NODES, "retriever-cluster"}
    bootstraps = []
    for n in CLUSTER_NODES:
        node = services[n]
        assert node["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        cmd = node["command"]
        assert cmd[cmd.index("--uri") + 1] == f"http://{n}:6335"  # the peer-to-peer port
        if "--bootstrap" in cmd:
            bootstraps.append(cmd[cmd.index("--bootstrap") + 1])
            assert node["depends_on"] == {"qdrant-node1": {"condition": "service_healthy"}}
        assert node["volumes"] == [f"{n}:/qdrant/storage"]
        assert node["healthcheck"]["test"] == services["qdrant"]["healthcheck"]["test"]
    assert bootstraps == ["http://qdrant-node1:6335"] * 2  # nodes 2 and 3 join through node 1
    client = services["retriever-cluster"]
    assert client["depends_on"] == {n: {"condition": "service_healthy"} for n in CLUSTER_NODES}
    assert client["environment"]["HYBRID_RETRIEVER_QDRANT_URL"] == "http://qdrant-node1:6333"
    assert client["ports"] == ["8001:8000"]  # beside the default retriever


@pytest.mark.parametrize("service, file", [("retriever", "retriever.yaml"), ("retriever-cluster", "cluster.yaml")])
def test_retrievers_configs_are_valid_and_the_cluster_one_replicates(compose: dict[str, Any], service: str, file: str) -> None:
    env = compose["services"][service]["environment"]
    assert env["HYBRID_RETRIEVER_CONFIG"] == f"/config/{file}"
    assert "./deploy:/config:ro" in compose["services"][service]["volumes"]
    # What `serve` builds from the container's environment (the mounted file plus the URL).
    cfg = _config(None, env["HYBRID_RETRIEVER_QDRANT_URL"], None, ROOT / "deploy" / file)
    assert isinstance(cfg.store, QdrantStoreConfig) and cfg.store.url == env["HYBRID_RETRIEVER_QDRANT_URL"]
    if service == "retriever-cluster":
        assert (cfg.store.shard_number, cfg.store.replication_factor, cfg.store.write_consistency_factor) == (3, 2, 2)
        assert cfg.store.read_consistency == "majority"


def test_dockerfile_base_is_pinned_slim_and_runs_as_non_root(dockerfile: DockerfileParser) -> None:
    args = {i["value"].split("=", 1)[0]: i["value"].split("=", 1)[1] for i in dockerfile.structure if i["instruction"] == "ARG" and "=" in i["value"]}
    base = dockerfile.baseimage.replace("${PYTHON_IMAGE}", args.get("PYTHON_IMAGE", ""))
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim(-\w+)?", base), base
    users = [i["value"] for i in dockerfile.structure if i["instruction"] == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any("useradd" in i["value"] and users[-1] in i["value"] for i in dockerfile.structure if i["instruction"] == "RUN")
    cmd = json.loads(next(i["value"] for i in dockerfile.structure if i["instruction"] == "CMD"))
    assert cmd[:2] == ["hybrid-retriever", "serve"] and "0.0.0.0" in cmd
    assert any(i["instruction"] == "HEALTHCHECK" and "/ready" in i["value"] for i in dockerfile.structure)


def test_dockerfile_installs_cpu_torch_by_default_and_bakes_the_model(dockerfile: DockerfileParser) -> None:
    args = {i["value"].split("=", 1)[0]: i["value"].split("=", 1)[1] for i in dockerfile.structure if i["instruction"] == "ARG" and "=" in i["value"]}
    assert args["TORCH_VARIANT"] == "cpu" and re.fullmatch(r"\d+\.\d+\.\d+", args["TORCH_VERSION"])
    runs = [i["value"] for i in dockerfile.structure if i["instruction"] == "RUN"]
    assert any('torch==${TORCH_VERSION}' in r and "${TORCH_VARIANT}" in r for r in runs)
    assert any('".[${EXTRAS}]"' in r for r in runs)
    # The model ships in the [minilm] extra; the service chunks files sent by `index --server` ([chunking]).
    assert set(args["EXTRAS"].split(",")) == {"server", "minilm", "chunking"}
    assert dockerfile.envs["HF_HUB_OFFLINE"] == "1"  # the container never downloads a model


def test_dockerignore_keeps_the_build_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "benchmarks", "tests"} <= set(ignored)
    assert "hybrid_retriever" not in ignored and "adapters" not in ignored


def test_dockerfile_can_add_the_rerank_extra_and_bake_a_reranker(dockerfile: DockerfileParser, compose: dict[str, Any]) -> None:
    """What the README's rerank section needs: the [rerank] extra and a cross-encoder on disk (the container is offline)."""
    args = {i["value"].split("=", 1)[0]: i["value"].split("=", 1)[1] for i in dockerfile.structure if i["instruction"] == "ARG" and "=" in i["value"]}
    assert args["RERANK_MODEL"] == ""  # none by default: the image stays small
    bake = next(i["value"] for i in dockerfile.structure if i["instruction"] == "RUN" and "RERANK_MODEL" in i["value"])
    assert 'if [ -n "${RERANK_MODEL}" ]' in bake and "HF_HUB_OFFLINE=0" in bake and "snapshot_download" in bake
    assert ".backend()" in bake  # loaded once offline at build time: a bad download fails the build
    build = compose["x-retriever"]["build"]["args"]
    assert build["EXTRAS"] == "${HYBRID_RETRIEVER_EXTRAS:-server,minilm,chunking}"
    assert build["RERANK_MODEL"] == "${HYBRID_RETRIEVER_RERANK_MODEL:-}"
