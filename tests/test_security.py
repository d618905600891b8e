"""An index folder, a config file and a model folder are data: opening them never runs code.

Each attack is built for real (a model folder whose custom code writes a marker file, a
pickle whose unpickling writes one) and the test checks that the marker is absent after
the library refused it, and present when the caller explicitly grants trust, so the
attack itself is shown to work.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hybrid_retriever import HybridRetriever, RetrieverConfig
from hybrid_retriever.errors import ConfigError, IndexMismatchError, IndexPathError, RemoteCodeError
from hybrid_retriever.models import allow_remote_code, weights_sha256
from hybrid_retriever.stores.edge import MANIFEST_FILE

sys.path.insert(0, str(Path(__file__).parent))
from multivector_fixtures import _bert, _tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["Qdrant stores vectors.", "BM25 ranks by terms.", "Cats sleep a lot."]

EVIL_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("code from the model folder ran")
from transformers import BertConfig, BertModel
class EvilConfig(BertConfig):
    model_type = "bert"
class EvilModel(BertModel):
    config_class = EvilConfig
"""


def tiny_dense(folder: Path, seed: int = 3) -> Path:
    """A tiny randomly initialised sentence-transformers model (BERT + mean pooling) saved to ``folder``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules

    raw = folder.parent / (folder.name + "-raw")
    _tokenizer(raw)
    _bert(seed).save_pretrained(str(raw))
    SentenceTransformer(modules=[modules.Transformer(str(raw)), modules.Pooling(32)], device="cpu").save(str(folder))
    shutil.rmtree(raw)
    return folder


def make_evil(folder: Path, source: Path, marker: Path) -> Path:
    """A copy of ``source`` whose config asks transformers to import a module that writes ``marker``."""
    shutil.copytree(source, folder)
    (folder / "evil_modeling.py").write_text(EVIL_MODULE.format(marker=str(marker)), encoding="utf-8")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "evil_modeling.EvilConfig", "AutoModel": "evil_modeling.EvilModel"}
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return folder


def build_index(path: Path, model: Path) -> None:
    cfg = RetrieverConfig.model_validate(
        {
            "store": {"kind": "edge", "path": str(path)},
            "branches": [{"kind": "bm25", "weight": 0.5}, {"kind": "dense", "model": str(model), "weight": 0.5}],
            "runtime": {"show_progress": False},
        }
    )
    with HybridRetriever(cfg) as r:
        r.add_texts(TEXTS, ids=["a", "b", "c"])


def rewrite_manifest(index: Path, model: Path, *, trust: bool, sha: str | None = None) -> None:
    """What an attacker with write access to the folder does: point the dense branch at ``model``, ask for trust."""
    f = index / MANIFEST_FILE
    m = json.loads(f.read_text())
    dense = next(b for b in m["config"]["branches"] if b["kind"] == "dense")
    dense["model"] = str(model)
    dense["trust_remote_code"] = trust
    m["branches"]["dense"]["model"] = str(model)
    if sha is not None:
        m["branches"]["dense"]["weights_sha256"] = sha
    f.write_text(json.dumps(m))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dense(tmp_path_factory.mktemp("models") / "tiny-dense")


@pytest.fixture(autouse=True)
def no_process_grant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYBRID_RETRIEVER_TRUST_REMOTE_CODE", raising=False)
    allow_remote_code(False)
    yield
    allow_remote_code(False)


def test_model_folder_inside_the_index_is_never_loaded(tmp_path: Path, tiny_model: Path) -> None:
    index, marker = tmp_path / "index", tmp_path / "marker"
    build_index(index, tiny_model)
    evil = make_evil(index / "model", tiny_model, marker)
    rewrite_manifest(index, evil, trust=True, sha=weights_sha256(evil))
    with pytest.raises(IndexPathError, match="inside the index folder"):
        HybridRetriever.open(str(index))
    # Not even when the caller grants trust: models are never loaded from an index folder.
    with pytest.raises(IndexPathError):
        HybridRetriever.open(str(index), trust_remote_code=True)
    proc = subprocess.run(
        [sys.executable, "-m", "hybrid_retriever.cli", "query", "vectors", "--index", str(index)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "inside the index folder" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_trust_stored_in_a_manifest_is_never_a_grant(tmp_path: Path, tiny_model: Path) -> None:
    index, marker = tmp_path / "index", tmp_path / "marker"
    build_index(index, tiny_model)
    evil = make_evil(tmp_path / "elsewhere" / "model", tiny_model, marker)
    rewrite_manifest(index, evil, trust=True, sha=weights_sha256(evil))
    with pytest.raises(RemoteCodeError, match="trust_remote_code"):
        HybridRetriever.open(str(index))
    assert not marker.exists()
    # Without the request, the folder loads as the plain BERT its config also describes: its code is ignored.
    rewrite_manifest(index, evil, trust=False)
    with HybridRetriever.open(str(index)) as r:
        assert r.count() == 3
    assert not marker.exists()
    # The caller's explicit grant is what lets it run: the attack is real, the refusals above are the defence.
    rewrite_manifest(index, evil, trust=True)
    try:
        with HybridRetriever.open(str(index), trust_remote_code=True) as r:
            r.search("vectors")  # models load on first use
    except Exception:
        pass  # the evil model need not load; its code ran on import
    assert marker.exists()


def test_config_file_cannot_grant_trust(tmp_path: Path) -> None:
    f = tmp_path / "cfg.yaml"
    f.write_text("branches:\n  - kind: dense\n    trust_remote_code: true\n", encoding="utf-8")
    with pytest.raises(RemoteCodeError, match="configuration file cannot grant"):
        RetrieverConfig.from_file(f)
    assert RetrieverConfig.from_file(f, trust_remote_code=True).branches[0].trust_remote_code
    allow_remote_code(True)  # the per-process grant (the CLI's --trust-remote-code)
    assert RetrieverConfig.from_file(f).branches[0].trust_remote_code


def test_foreign_module_type_in_modules_json_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    from hybrid_retriever.branches import DenseBranch
    from hybrid_retriever.config import DenseBranchConfig

    folder = shutil.copytree(tiny_model, tmp_path / "m")
    modules = json.loads((folder / "modules.json").read_text())
    modules[-1]["type"] = "subprocess.Popen"
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="outside sentence-transformers"):
        _ = DenseBranch(DenseBranchConfig(model=str(folder))).model


def test_swapped_model_is_detected_before_it_loads(tmp_path: Path, tiny_model: Path) -> None:
    model = shutil.copytree(tiny_model, tmp_path / "model")
    index = tmp_path / "index"
    build_index(index, model)
    # The same files at another place open fine through models= (e.g. a moved model folder).
    moved = shutil.copytree(model, tmp_path / "moved")
    with HybridRetriever.open(str(index), models={"dense": str(moved)}) as r:
        assert r.search("vectors", k=1)[0].id == "a"
    # Other weights under the same path: the recorded hash no longer matches.
    shutil.rmtree(model)
    tiny_dense(model, seed=99)
    with pytest.raises(IndexMismatchError, match="weights_sha256"):
        HybridRetriever.open(str(index))
    # A model that cannot even load is reported as a mismatch first (no load attempted).
    with pytest.raises(IndexMismatchError, match="model"):
        HybridRetriever.open(str(index), models={"dense": str(tmp_path / "no-such-model")})


def test_relative_model_path_in_manifest_is_refused(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "index"
    build_index(index, tiny_model)
    shutil.copytree(tiny_model, tmp_path / "rel-model")
    monkeypatch.chdir(tmp_path)
    rewrite_manifest(index, Path("rel-model"), trust=False)
    with pytest.raises(IndexPathError, match="relative path"):
        HybridRetriever.open(str(index))


def test_built_index_records_absolute_model_path(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(tiny_model, tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    build_index(tmp_path / "index", Path("m"))
    m = json.loads((tmp_path / "index" / MANIFEST_FILE).read_text())
    assert m["branches"]["dense"]["model"] == str((tmp_path / "m").resolve())
    assert m["branches"]["dense"]["weights_sha256"] == weights_sha256(tmp_path / "m")
    monkeypatch.chdir(REPO)  # another working folder: the recorded path still names the same model
    with HybridRetriever.open(str(tmp_path / "index")) as r:
        assert r.count() == 3


def test_pickled_colbert_weights_never_run_code(tmp_path: Path) -> None:
    import torch

    from hybrid_retriever.branches.late_interaction.checkpoint import load_state_dict

    marker = tmp_path / "marker"

    class Evil:
        def __reduce__(self):  # unpickling this object calls Path.touch(marker)
            return (Path.touch, (marker,))

    torch.save({"linear.weight": Evil()}, str(tmp_path / "pytorch_model.bin"))
    with pytest.raises(ConfigError, match="cannot read the weights"):
        load_state_dict(tmp_path / "pytorch_model.bin")
    assert not marker.exists()


def test_no_pickle_in_the_library() -> None:
    """No module unpickles: the index format is JSON and Qdrant's own files; weights are safetensors or weights_only."""
    for f in (REPO / "hybrid_retriever").rglob("*.py"):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "dill", "joblib", "cloudpickle"} & set(names), f"{f} imports a pickle module"
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" and getattr(node.func.value, "id", None) == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in kw and getattr(kw["weights_only"], "value", None) is True, f"{f}: torch.load without weights_only=True"


def test_missing_model_fails_at_once_offline() -> None:
    from hybrid_retriever.branches import DenseBranch
    from hybrid_retriever.config import DenseBranchConfig

    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE is set") as info:
        _ = DenseBranch(DenseBranchConfig(model="example-org/not-on-this-machine")).model
    assert "local model folder" in str(info.value)


def test_missing_model_fails_fast_when_the_hub_is_unreachable(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a loopback port that is closed once this block ends
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "from hybrid_retriever.branches import DenseBranch\n"
        "from hybrid_retriever.config import DenseBranchConfig\n"
        "DenseBranch(DenseBranchConfig(model='example-org/not-on-this-machine')).model\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0
    assert "ConfigError" in proc.stderr and "did not answer" in proc.stderr, proc.stderr[-2000:]
    assert elapsed < 120, f"took {elapsed:.0f} s: the loader retried instead of failing at once"


def test_bad_query_and_filter_are_refused_before_any_model_loads(tmp_path: Path, tiny_model: Path) -> None:
    from hybrid_retriever.errors import FilterError, InvalidInputError

    index = tmp_path / "index"
    build_index(index, tiny_model)
    with HybridRetriever.open(str(index)) as r:
        dense = r.branches["dense"]
        with pytest.raises(FilterError, match="no stored document has"):
            r.search("vectors", filter={"nope": 1})
        with pytest.raises(InvalidInputError):
            r.search("   ")
        assert dense._model is None  # opening and refusing loaded nothing
        assert r.search("vectors", k=1)[0].id == "a"
        assert dense._model is not None
