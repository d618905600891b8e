"""Writes tests/data/fused_rankings.json: fused rankings of a fixed corpus under several fusion settings.

Run with the code whose rankings are the reference (e.g. before a speed change):

    python tests/rankings_reference.py tests/data/fused_rankings.json

tests/test_rankings.py builds the same index and checks that today's code ranks every query
identically (same ids in the same order, same scores). The corpus is the bundled demo corpus; the
queries are its demo queries plus the first words of every fifth document's text.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from hybrid_retriever import FusionConfig, HybridRetriever, RetrieverConfig
from hybrid_retriever.branches import DenseBranch, build_branch
from hybrid_retriever.config import DenseBranchConfig

#: Fusion settings compared (the default first).
FUSIONS: dict[str, dict] = {
    "default": {},
    "dbsf-floor": {"method": "interpolation", "normalization": "dbsf", "missing": "floor"},
    "minmax-exact": {"method": "interpolation", "normalization": "minmax"},
    "zscore-clamp": {"method": "interpolation", "normalization": "zscore", "completed": "clamp"},
    "minmax-raw": {"method": "interpolation", "normalization": "minmax", "completed": "raw"},
    "rank": {"method": "interpolation", "normalization": "rank"},
    "rrf": {"method": "rrf"},
    "adaptive-signals": {"method": "adaptive", "clarity_weight": 0.5, "support_weight": 3.0, "sparse_clarity_offset": 0.2},
    "adaptive-floor-value": {"method": "adaptive", "missing": "floor", "floor_value": 0.1},
}
WEIGHTS = {"bm25": 0.4, "dense": 0.6}


def rows() -> list[dict]:
    from hybrid_retriever.cli import demo_corpus_path

    return [json.loads(line) for line in demo_corpus_path().read_text(encoding="utf-8").splitlines() if line.strip()]


def queries() -> list[str]:
    from hybrid_retriever.cli import DEMO_QUERIES

    return [q.text for q in DEMO_QUERIES] + [" ".join(r["text"].split()[:6]) for r in rows()[::5]] + ["the", "zzzz"]


def build(path: Path, dense: DenseBranch) -> HybridRetriever:
    cfg = RetrieverConfig.model_validate({"store": {"kind": "edge", "path": str(path)}, "runtime": {"show_progress": False}})
    r = HybridRetriever(cfg, branches=[build_branch(cfg.branches[0]), dense])
    r.add_texts([x["title"] + "\n" + x["text"] for x in rows()], ids=[x["id"] for x in rows()],
                metadatas=[{"topic": x.get("topic", "")} for x in rows()])
    return r


def rankings(r: HybridRetriever, qs: list[str]) -> dict[str, list[list]]:
    """Top 20 (id, score) per query for every fusion setting, with the default and with other weights."""
    out = {}
    for name, fusion in FUSIONS.items():
        for weights in (None, WEIGHTS):
            view = r.with_fusion(FusionConfig.model_validate({**r.config.fusion.model_dump(), **fusion}), weights)
            out[name + ("+weights" if weights else "")] = [[[h.id, h.score] for h in hits] for hits in view.search_batch(qs, k=20)]
    return out


def main() -> None:
    dense = DenseBranch(DenseBranchConfig())
    _ = dense.model  # sentence-transformers' own encoder (the reference path)
    with tempfile.TemporaryDirectory() as tmp:
        r = build(Path(tmp) / "index", dense)
        try:
            data = {"queries": queries(), "rankings": rankings(r, queries())}
        finally:
            r.close()
    # One line per setting: a reviewable diff when a ranking changes.
    rows = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in data["rankings"].items())
    text = '{"queries": ' + json.dumps(data["queries"]) + ',\n "rankings": {\n' + rows + "\n }\n}\n"
    Path(sys.argv[1]).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
