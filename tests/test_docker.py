"""docker-compose.yml and the Dockerfile, checked statically (no Docker engine here).

The compose file is validated against the Compose Specification's JSON schema
(tests/data/compose-spec.schema.json, see its NOTICE), then its services are checked for what
issue 11 asks: pinned images, ports, healthchecks, depends_on conditions, the cluster profile.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from hybrid_retriever.config import QdrantStoreConfig
from hybrid_retriever.errors import StoreUnavailableError
from hybrid_retriever.stores import QdrantStore
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
    assert "${QDRANT_PUBLISH_ADDRESS:-127.0.0.1}:6333:6333" in qdrant["ports"] and qdrant["volumes"] == ["qdrant-storage:/qdrant/storage"]
    assert "/readyz" in " ".join(qdrant["healthcheck"]["test"])
    assert retriever["depends_on"] == {"qdrant": {"condition": "service_healthy"}}
    assert retriever["ports"] == ["${HYBRID_RETRIEVER_PUBLISH_ADDRESS:-127.0.0.1}:8000:8000"]
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
    assert client["ports"] == ["${HYBRID_RETRIEVER_PUBLISH_ADDRESS:-127.0.0.1}:8001:8000"]  # beside the default retriever


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


# ------------------------------------------- closed by default (issue 19, section 6)

QDRANT_SERVICES = ["qdrant", *CLUSTER_NODES]
RETRIEVERS = ["retriever", "retriever-cluster"]
_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """``value`` with compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` filled from ``env``
    (as `docker compose` does); a missing required variable raises ValueError with its message."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def fill(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == "?":
            raise ValueError(f"{name}: {arg}")
        return arg if op == "-" else ""

    return _VARIABLE.sub(fill, value)


def published(compose: dict[str, Any], env: Mapping[str, str]) -> dict[str, list[tuple[str, str, str]]]:
    """Each service's published ports as (host address, host port, container port), as compose reads them."""
    out = {}
    for name, service in interpolate(compose["services"], env).items():
        ports = []
        for p in service.get("ports", []):
            parts = str(p).split(":")
            assert len(parts) == 3, f"{name} publishes {p!r} without a host address: that is every interface"
            ports.append((parts[0], parts[1], parts[2]))
        out[name] = ports
    return out


def test_every_port_is_published_on_loopback_by_default(compose: dict[str, Any]) -> None:
    ports = published(compose, {"QDRANT_API_KEY": "k"})
    assert {n for n, p in ports.items() if p} == {"qdrant", "retriever", "qdrant-node1", "retriever-cluster"}
    assert all(addr == "127.0.0.1" for p in ports.values() for addr, _, _ in p), ports
    assert ("127.0.0.1", "6334", "6334") in ports["qdrant"] and ("127.0.0.1", "8000", "8000") in ports["retriever"]
    # The check can fail: the old file's "8000:8000" (every interface) is refused.
    old = json.loads(json.dumps(compose))
    old["services"]["retriever"]["ports"] = ["8000:8000"]
    with pytest.raises(AssertionError, match="every interface"):
        published(old, {"QDRANT_API_KEY": "k"})


def test_exposing_on_purpose_opens_only_what_is_named(compose: dict[str, Any]) -> None:
    ports = published(compose, {"QDRANT_API_KEY": "k", "HYBRID_RETRIEVER_PUBLISH_ADDRESS": "0.0.0.0"})
    assert all(addr == "0.0.0.0" for n in RETRIEVERS for addr, _, _ in ports[n])
    assert all(addr == "127.0.0.1" for n in QDRANT_SERVICES for addr, _, _ in ports[n])  # Qdrant stays closed
    qdrant_too = published(compose, {"QDRANT_API_KEY": "k", "QDRANT_PUBLISH_ADDRESS": "10.0.0.5"})
    assert qdrant_too["qdrant"][0][0] == "10.0.0.5" and qdrant_too["retriever"][0][0] == "127.0.0.1"


def test_qdrant_requires_the_key_and_every_retriever_gets_it(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in QDRANT_SERVICES:
        assert services[name]["environment"]["QDRANT__SERVICE__API_KEY"].startswith("${QDRANT_API_KEY:?"), name
    for name in RETRIEVERS:
        assert services[name]["environment"]["QDRANT_API_KEY"].startswith("${QDRANT_API_KEY:?"), name
        assert services[name]["environment"]["HYBRID_RETRIEVER_ALLOWED_HOSTS"] == "${HYBRID_RETRIEVER_ALLOWED_HOSTS:-}"
    # Without the key the stack does not start (compose stops at the first missing required variable).
    with pytest.raises(ValueError, match="QDRANT_API_KEY"):
        interpolate(services, {})
    filled = interpolate(services, {"QDRANT_API_KEY": "s3cret"})
    assert {filled[n]["environment"]["QDRANT__SERVICE__API_KEY"] for n in QDRANT_SERVICES} == {"s3cret"}
    assert {filled[n]["environment"]["QDRANT_API_KEY"] for n in RETRIEVERS} == {"s3cret"}
    # Qdrant answers /readyz without a key, so the healthchecks still work (its API-key whitelist).
    assert all("/readyz" in " ".join(services[n]["healthcheck"]["test"]) for n in QDRANT_SERVICES)
    assert ".env" in (ROOT / ".gitignore").read_text().split() and ".env" in (ROOT / ".dockerignore").read_text().split()


class _Gate(http.server.BaseHTTPRequestHandler):
    """A Qdrant-like API-key gate on loopback: records each request's api-key header, answers 401."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/":  # qdrant-client's background version probe
            self.server.keys.append(self.headers.get("api-key"))  # type: ignore[attr-defined]
        body = b'{"status": {"error": "Must provide an API key or an Authorization bearer token"}}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.filterwarnings("ignore::UserWarning")  # qdrant-client: an API key over plain http, and its version probe
@pytest.mark.parametrize("file", ["retriever.yaml", "cluster.yaml"])
def test_the_retrievers_store_sends_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch, file: str) -> None:
    gate = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gate)
    gate.keys = []  # type: ignore[attr-defined]
    threading.Thread(target=gate.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{gate.server_address[1]}"
    try:
        for key in ("s3cret", None):  # the key the compose file passes; then, as a control, none
            if key is None:
                monkeypatch.delenv("QDRANT_API_KEY", raising=False)
            else:
                monkeypatch.setenv("QDRANT_API_KEY", key)
            gate.keys.clear()  # type: ignore[attr-defined]
            cfg = _config(None, url, None, ROOT / "deploy" / file)  # what `serve` builds in the container
            assert isinstance(cfg.store, QdrantStoreConfig) and cfg.store.api_key_env == "QDRANT_API_KEY"
            with pytest.raises(StoreUnavailableError):
                QdrantStore(cfg.store.model_copy(update={"retries": 0})).count()
            assert gate.keys and set(gate.keys) == {key}, gate.keys  # type: ignore[attr-defined]
    finally:
        gate.shutdown()
        gate.server_close()


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
